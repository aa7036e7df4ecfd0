"""Notebook helpers: quiet set-up, computed sentences, the data views of the first chapter, and the
runs of a profile's grids as frames for the findings.

- :func:`notebook_setup`, :func:`show`: one style, no progress bars or known warnings in the book;
  :func:`glue_figure`: a figure shown here and on another page of the book (the scorecard);
- :func:`data_overview`, :func:`length_frame`, :func:`length_summary`, :func:`isa_frame`,
  :func:`mixture_table`, :func:`subset_profile`, :func:`side_by_side`: the data sets and what ISA sees in them;
- :func:`track_runs`, :func:`design_track_runs`, :func:`profile_runs`, :func:`profile_findings`: stored
  (or, in the experiment chapters, newly trained) runs of a track's grids (legacy or the profile's
  design) as :class:`~effalign.findings.TrackRuns`, and the findings of a whole profile (the findings
  chapter and the README headline use the same calls); :func:`missing_cells` /
  :func:`missing_statements`: which cells and seeds the store lacks, stored runs made from other
  data (not used), how to train the missing ones, and answers cut by the tokenisation settings;
- :func:`refuse_profile_file` (called by :func:`notebook_setup`), :func:`availability_note`,
  :func:`truncation_note`: what a reader or a user re-running a chapter needs to know (a profile
  given to papermill's ``-f``, runs that are not stored, answers cut by the tokenisation settings).
"""

from __future__ import annotations

import warnings

# tqdm.auto (imported with the experiment code below) warns once per kernel that ipywidgets is missing
# and falls back to text bars: harmless, and not for the book's outputs
warnings.filterwarnings("ignore", message="IProgress not found")

from collections.abc import Iterable, Mapping, Sequence  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .book import load_profile  # noqa: E402
from .design import analysis_plan, arm_sizes, design_grids, pilot_rule, planned_grids, runs_cells, track_design_grids  # noqa: E402
from .design import equal_compute_arms as design_equal_compute_arms  # noqa: E402
from .experiment import LegacyCheck, StaleRunWarning, availability, collect, expand_grid  # noqa: E402
from .findings import AnalysisPlan, TrackFindings, TrackRuns, track_findings, truncation_statements  # noqa: E402
from .grids import arm_of, equal_compute_arms, track_grids  # noqa: E402
from .scaling import MIN_FIT_SIZES  # noqa: E402
from .tables import items_frame, runs_frame  # noqa: E402
from .verdicts import NOT_DESIGNED  # noqa: E402

__all__ = [
    "ablation_frame", "availability_note", "data_overview", "design_track_runs", "eval_length_groups", "glue_figure",
    "isa_frame", "length_frame", "length_summary", "missing_cells", "missing_statements", "mixture_table",
    "notebook_setup", "parameters_profile", "profile_findings", "profile_runs", "refuse_profile_file", "show",
    "side_by_side", "subset_profile", "track_runs", "truncation_note", "truncation_statements",
]

_QUIET = (r".*gradient_checkpointing.*", r".*torch_dtype.*deprecated.*", r".*`resume_download` is deprecated.*",
          r".*TypedStorage is deprecated.*", r".*padding_side.*", r".*generation flags are not valid.*",
          r".*does not have many workers.*", r".*To copy construct from a tensor.*")


def _quiet_libraries() -> None:
    """No per-model progress bars, loggers at errors only."""
    import logging
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass
    for name in ("transformers", "datasets", "trl", "peft", "accelerate", "sentence_transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def notebook_setup(threads: int | None = None, *, style: str = "whitegrid", dpi: int = 110) -> None:
    """Quiet, consistent notebook output: no per-model progress bars, the training stack's known
    harmless warnings filtered, one seaborn style and pandas display. ``threads`` sets torch's CPU
    threads (None: all cores; one is much faster for tiny models on a busy machine).

    Called from a notebook (its namespace ``__main__``), it first stops a notebook that papermill's
    ``-f`` gave a whole profile (:func:`refuse_profile_file`)."""
    import inspect

    caller = inspect.currentframe()
    namespace = caller.f_back.f_globals if caller is not None and caller.f_back is not None else {}
    if namespace.get("__name__") == "__main__":
        refuse_profile_file(namespace)
    _quiet_libraries()
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft|accelerate)\b.*")
    # stated in the chapters instead (missing_statements, availability_note, truncation_note), not as warning text
    from .logps import TruncationWarning

    warnings.filterwarnings("ignore", category=StaleRunWarning)
    warnings.filterwarnings("ignore", category=TruncationWarning)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    import matplotlib
    import seaborn as sns

    sns.set_theme(style=style, context="notebook", palette="colorblind")
    matplotlib.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "figure.autolayout": False})
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_colwidth", 120)
    pd.set_option("display.width", 160)


def show(lines: str | Iterable[str], title: str | None = None) -> None:
    """Display computed sentences as a Markdown bullet list."""
    from IPython.display import Markdown, display

    items = [lines] if isinstance(lines, str) else list(lines)
    display(Markdown((f"**{title}**\n\n" if title else "") + "\n".join(f"- {s}" for s in items)))


def glue_figure(name: str, figure: Any) -> None:
    """Show ``figure`` and store it in the notebook under ``name`` (myst-nb's ``glue``), so that other
    pages of the book show the same figure, generated by this build: ``{glue} name`` with the option
    ``:doc: executed/<notebook>.ipynb``. Without myst-nb the figure is only shown."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    try:
        from myst_nb import glue
    except ImportError:  # pragma: no cover - the book extra is not installed
        display(figure)
    else:
        glue(name, figure, display=True)
    plt.close(figure)


def refuse_profile_file(namespace: Mapping[str, Any], notebook: str | None = None) -> None:
    """Stop a notebook that papermill's ``-f`` gave a profile (papermill injects its ``common`` and
    ``notebooks`` sections as two unknown parameters), naming the commands that read profiles
    (``notebook``: the chapter's name for them; :func:`notebook_setup` does not know it)."""
    given = sorted({"common", "notebooks", "base"} & set(namespace))
    if given:
        notebook = notebook or "NOTEBOOK"
        raise ValueError(f"papermill -f was given a profile ({', '.join(given)} injected), which papermill cannot "
                         f"read; run `python -m effalign book --profile FILE --only {notebook}`, or write this "
                         f"notebook's parameters with `python -m effalign parameters --profile FILE {notebook} > "
                         f"params.yaml` and pass -f params.yaml")


def availability_note(specs: Mapping[str, Sequence[Any]], store: Any, run_missing: bool) -> pd.DataFrame:
    """:func:`~effalign.experiment.availability` of a chapter's grids, with a note when runs are
    missing: how many, stored runs made from other data (not used), and how to train them."""
    check = LegacyCheck()
    frame = availability(specs, store, check=check)
    runs, stored = (int(x) for x in frame.loc["all (distinct runs)", ["runs", "stored"]]) if len(frame) else (0, 0)
    lines = []
    if check.stale:
        lines.append(f"{check.stale} stored run(s) were made from other data than this profile's now (their recorded "
                     "pool or evaluation pairs differ), so they are not used.")
    if stored < runs:
        if run_missing:
            lines.append(f"{runs - stored} of {runs} runs are not stored in `{store}` yet; they are trained now "
                         "(resumable: an interrupted build keeps every finished run).")
        else:
            lines.append(f"{runs - stored} of {runs} runs are not stored in `{store}`, so the tables and figures "
                         "below leave them out. To train them, set `run_missing: true`: "
                         "`python -m effalign book --profile PROFILE -p run_missing true` (a profile of your own "
                         "trains into its own store), or papermill's `-p run_missing true -p store DIR`.")
    if lines:
        show(lines, title="Runs of this chapter")
    return frame


def truncation_note(records: Any, threshold: float = 0.25) -> None:
    """:func:`effalign.findings.truncation_statements`, shown under the title "Truncation" (nothing when none)."""
    lines = truncation_statements(records, threshold)
    if lines:
        show(lines, title="Truncation")


# ----------------------------------------------------------------------------- runs of a profile


def track_runs(grids: Mapping[str, Mapping[str, Any]], store: Any, metric: str, *, run: bool = False,
               progress: bool = False) -> TrackRuns:
    """The runs of one track's grids (:func:`effalign.grids.track_grids`) as frames; with ``run=True``
    the missing ones are trained first (:func:`effalign.experiment.collect`)."""
    records = {name: collect(expand_grid(g), store, run=run, progress=progress) for name, g in grids.items()}
    frames = {name: runs_frame(recs) for name, recs in records.items()}
    every = list({r["key"]: r for recs in records.values() for r in recs}.values())
    return TrackRuns(scaling={arm_of(n): f for n, f in frames.items() if arm_of(n)},
                     samplers=frames.get("samplers", runs_frame([])), full=frames.get("full"),
                     items=items_frame(every, metric), records=every, grids=frames)


def parameters_profile(profile: str, **common: Any) -> dict[str, Any]:
    """A profile mapping from a notebook's parameters (the values papermill injected), for the
    functions that take a profile (:func:`profile_runs`, :func:`effalign.grids.notebook_grids`)."""
    return {"profile": profile, "common": common}


def design_track_runs(grids: Mapping[str, Mapping[str, Any]], store: Any, metric: str, *, run: bool = False,
                      progress: bool = False) -> TrackRuns:
    """The runs of one track's design grids (:func:`effalign.design.track_design_grids`: ``primary``,
    ``full_pool``, ``samplers``, ``scaling_*``, ...) as frames: the scaling runs of each arm are the
    random and whole-pool runs of every grid in that arm (in the primary arm: ``scaling_steps``, the
    primary grid's random runs and ``full_pool``); ``samplers``: the ``primary`` and ``samplers`` grids;
    ``full``: ``full_pool``. With ``run=True`` the missing runs are trained first."""
    records = {name: collect(expand_grid(g), store, run=run, progress=progress) for name, g in grids.items()}
    frames = {name: runs_frame(recs) for name, recs in records.items()}
    every = list({r["key"]: r for recs in records.values() for r in recs}.values())

    def union(names: Iterable[str], labels: Sequence[str] | None = None) -> pd.DataFrame:
        parts = [frames[n] for n in names if n in frames and len(frames[n])]
        if not parts:
            return runs_frame([])
        out = pd.concat(parts, ignore_index=True).drop_duplicates("key")
        return out[out["label"].isin(labels)].reset_index(drop=True) if labels else out.reset_index(drop=True)

    arms = list(dict.fromkeys(g["arm"] for g in grids.values()))
    scaling = {arm: union([n for n, g in grids.items() if g["arm"] == arm], ["random", "full"]) for arm in arms
               if any(n.startswith("scaling") for n, g in grids.items() if g["arm"] == arm)}
    return TrackRuns(scaling=scaling, samplers=union(["primary", "samplers"]),
                     full=union(["full_pool"]), items=items_frame(every, metric), records=every, grids=frames)


def ablation_frame(runs: TrackRuns, plan: AnalysisPlan) -> pd.DataFrame:
    """The design's ISA variants (grid ``ablation``) with the baseline and the default sampler at the same
    share of the pool and arm (from the primary grid); empty when the design has no ablation grid."""
    ablation = runs.grids.get("ablation")
    if ablation is None or not len(ablation):
        return runs_frame([])
    fractions = set(ablation["fraction"])
    ref = runs.samplers[runs.samplers["label"].isin([plan.baseline, plan.sampler]) & runs.samplers["fraction"].isin(fractions)]
    return pd.concat([ref, ablation], ignore_index=True).drop_duplicates("key").reset_index(drop=True)


def profile_runs(profile: str | Mapping[str, Any], store: Any, root: Path | None = None, *, run: bool = False
                 ) -> dict[str, TrackRuns]:
    """Per track of a profile: the stored runs of its grids (the design's when it has one, else the
    scaling arms, sampler grid and whole pool of :func:`effalign.grids.track_grids`); with ``run=True``
    the missing ones are trained first."""
    prof = load_profile(profile, root) if isinstance(profile, str) else profile
    c = prof["common"]
    plan = analysis_plan(c)
    if c.get("design"):
        built = planned_grids(prof, store)
        return {name: design_track_runs(track_design_grids(built, name), store, plan.metric(name), run=run)
                for name in c["tracks"]}
    return {name: track_runs(track_grids(name, track, model=c["model"], train=c["train"], seeds=c["seeds"],
                                         scaling_seeds=c["scaling_seeds"], scaling_fractions=c["scaling_fractions"],
                                         samplers=c["samplers"], budgets=c["budgets"],
                                         scaling_arms=c.get("scaling_arms")), store, plan.metric(name), run=run)
            for name, track in c["tracks"].items()}


def profile_findings(profile: str | Mapping[str, Any], store: Any, *, n_boot: int = 200, root: Path | None = None,
                     runs: Mapping[str, TrackRuns] | None = None) -> tuple[AnalysisPlan, dict[str, TrackFindings]]:
    """The plan and the findings of every track of a profile, from its stored runs (``runs``: from
    :func:`profile_runs`, when already read). With a design: the primary arm is the design's, the
    equal-compute arms those with ``budget: steps``, and each track carries its pilot rule
    (:func:`effalign.design.pilot_rule`, on the primary grid's stored runs)."""
    prof = load_profile(profile, root) if isinstance(profile, str) else profile
    c = prof["common"]
    plan = analysis_plan(c)
    runs = dict(runs) if runs is not None else profile_runs(prof, store, root)
    if not c.get("design"):
        equal = equal_compute_arms(c.get("scaling_arms"))
        exact = equal_compute_arms(c.get("scaling_arms"), exact=True)
        return plan, {name: track_findings(name, plan, r, n_boot=n_boot, equal_compute=equal, exact_steps=exact)
                      for name, r in runs.items()}
    equal = design_equal_compute_arms(c["tracks"])
    exact = design_equal_compute_arms(c["tracks"], exact=True)
    built = design_grids(prof)
    out = {}
    for name, r in runs.items():
        f = track_findings(name, plan, r, n_boot=n_boot, equal_compute=equal, primary_arm=plan.plateau_arm,
                           exact_steps=exact)
        f.pilot = pilot_rule(c, name, r.primary_records())
        _not_designed(f, track_design_grids(built, name), plan.plateau_arm)
        out[name] = f
    return plan, out


def _not_designed(f: TrackFindings, grids: Mapping[str, Mapping[str, Any]], primary_arm: str) -> None:
    """Say so where a claim has no runs because the design leaves its cells out of this track (rather than
    because they are not run yet), and where an arm's curve cannot be fitted because the design gives it
    too few sizes (rather than because they are not all stored yet)."""
    cut = "the design has no {what} on this track (its grids' `tracks`; see the design's amendments)"
    for arm, v in f.plateau.items():
        if v.estimate is None or not np.isfinite(v.estimate.value):
            if not runs_cells(grids, arm, [0.5, 1.0]):
                f.plateau[arm] = replace(v, detail=NOT_DESIGNED, caveats=[],
                                         reason=cut.format(what=f"{arm}-arm runs at half and all of the pool"))
    v = f.subset
    if (v.estimate is None or not np.isfinite(v.estimate.value)) and not runs_cells(grids, primary_arm, [1.0]):
        f.subset = replace(v, detail=NOT_DESIGNED, reason=cut.format(what="whole-pool runs"), caveats=[])
    for arm, outcome in f.scaling.items():
        sizes = arm_sizes(grids, arm)
        if not outcome.ok and len(sizes) < MIN_FIT_SIZES:
            shares = ", ".join("the whole pool" if s == 1 else f"{s:.0%}" for s in sizes)
            f.scaling[arm] = replace(outcome, reason=(
                f"the design gives this arm {len(sizes)} subset size{'s' if len(sizes) != 1 else ''} ({shares}) "
                f"and comparing the forms needs {MIN_FIT_SIZES}, so in this arm the plateau is judged by rule P alone"))


def missing_cells(grids: Mapping[str, Mapping[str, Any]], store: Any) -> pd.DataFrame:
    """Per grid and cell (sampler and subset size): the seeds stored and the seeds still missing, so a
    chapter says exactly which runs it lacks. Columns ``grid``, ``arm``, ``sampler``, ``pairs`` (None:
    the whole pool), ``stored``, ``missing`` (e.g. ``"4–15"``), ``runs``. Its ``attrs`` hold the
    distinct runs stored and in all (``distinct``), the stored runs made from other data than the
    grids' now and so not used (``stale``, :class:`~effalign.experiment.LegacyCheck`), the store
    and the truncation sentences of the stored runs (``truncation``) for :func:`missing_statements`."""
    from .runs import ResultStore, find_records

    store_ = store if isinstance(store, ResultStore) else ResultStore(store)
    check = LegacyCheck()
    rows, every, absent_all, found = [], set(), set(), {}
    for name, grid in grids.items():
        specs = expand_grid(grid)
        have = find_records(specs, store_, check)
        found.update(have)
        absent = {s.key for s in specs if s.key not in have}
        every |= {s.key for s in specs}
        absent_all |= absent
        cells: dict[tuple[str, Any], dict[str, list[int]]] = {}
        for s in specs:
            label = s.sampler if not s.sampler_params else f"{s.sampler} {dict(s.sampler_params)}"
            cell = cells.setdefault((label, s.budget), {"stored": [], "missing": []})
            cell["missing" if s.key in absent else "stored"].append(int(s.seed))
        for (label, budget), seeds in cells.items():
            rows.append({"grid": name, "arm": grid.get("arm", ""), "sampler": label,
                         "pairs": "whole pool" if budget is None else int(budget), "runs": sum(map(len, seeds.values())),
                         "stored": len(seeds["stored"]), "missing": _ranges(seeds["missing"])})
    out = pd.DataFrame(rows, columns=["grid", "arm", "sampler", "pairs", "runs", "stored", "missing"])
    out.attrs["distinct"] = (len(every) - len(absent_all), len(every))  # grids may share runs: count each once
    out.attrs["stale"] = check.stale
    out.attrs["store"] = str(store_.path)
    out.attrs["truncation"] = truncation_statements(list(found.values()))
    check.refused.clear()  # said by missing_statements, not as a warning
    return out


def missing_statements(cells: pd.DataFrame, notes: bool = True) -> list[str]:
    """Sentences on what the store lacks: one per grid with missing seeds (or that nothing is missing).
    With ``notes`` (the chapters), also the stored runs not used because they were made from other
    data, how to train the missing runs, and a truncation note (see :func:`missing_cells`)."""
    if cells.empty:
        return ["No grid is defined."]
    stored, total = cells.attrs.get("distinct", (int(cells["stored"].sum()), int(cells["runs"].sum())))
    lacking = cells[cells["stored"] < cells["runs"]]
    stale = [f"{cells.attrs['stale']} stored run(s) were made from other data than this profile's now (their "
             "recorded pool, evaluation or validation pairs differ), so they are not used."
             ] if notes and cells.attrs.get("stale") else []
    truncation = list(cells.attrs.get("truncation") or []) if notes else []
    if lacking.empty:
        return [f"All {total} distinct runs of the {cells['grid'].nunique()} grids are stored.", *stale, *truncation]
    out = [f"{stored} of the {total} distinct runs of the {cells['grid'].nunique()} grids are stored; the statements "
           "below use those and name what they lack.", *stale]
    for grid, g in lacking.groupby("grid", sort=False):
        parts = [f"{r['sampler']} on {r['pairs']}{'' if r['pairs'] == 'whole pool' else ' pairs'}: seeds {r['missing']}"
                 for _, r in g.iterrows()]
        out.append(f"Missing in {grid}: " + "; ".join(parts) + ".")
    if notes:
        where = f" in `{cells.attrs['store']}`" if cells.attrs.get("store") else ""
        out.append(f"The chapter trains the missing runs{where} when its parameter `run_missing` is true: "
                   "`python -m effalign book --profile PROFILE -p run_missing true` (a profile of your own trains "
                   "into its own store), or papermill's `-p run_missing true -p store DIR`; the committed runs are "
                   "trained by `make experiments`.")
    return out + truncation


def _ranges(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0–2, 5"`` (empty: ``""``)."""
    out, seeds = [], sorted(seeds)
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        out.append(str(seeds[i]) if i == j else f"{seeds[i]}–{seeds[j]}")
        i = j + 1
    return ", ".join(out)


# ----------------------------------------------------------------------------- data views (first chapter)


def data_overview(splits: Mapping[str, tuple[Sequence[Any], Sequence[Any]]]) -> pd.DataFrame:
    """One row per track: source, detected format, rows read/kept/dropped, pool and evaluation
    pairs, and distinct prompts in the pool (``splits``: track -> (pool, evaluation pairs))."""
    from .data import normalise_prompt

    rows = {}
    for track, (pool, ev) in splits.items():
        rep = getattr(pool, "report", None)
        rows[track] = {
            "source": Path(rep.source).name if rep else getattr(pool, "name", ""),
            "format": rep.format if rep else "",
            "rows read": rep.rows_read if rep else np.nan,
            "rows kept": rep.rows_kept if rep else np.nan,
            "rows dropped": rep.rows_dropped if rep else np.nan,
            "pool pairs": len(pool),
            "distinct pool prompts": len({normalise_prompt(p) for p in pool}),
            "evaluation pairs": len(ev),
        }
    return pd.DataFrame(rows).T.infer_objects()


def mixture_table(sampler: Any) -> pd.DataFrame:
    """Per mixture component of a fitted ISA sampler: weight, pool share, budget share, mean scores."""
    labels = np.asarray(sampler.labels_)
    budget = np.asarray(sampler.component_budget_)
    rows = []
    for k in range(int(sampler.n_components)):
        members = labels == k
        rows.append({
            "component": f"component {k}", "mixture weight": float(sampler.mixture_.weights_[k]),
            "pool pairs": int(members.sum()), "pool share": float(members.mean()), "ISA budget": int(budget[k]),
            "budget share": float(budget[k] / max(budget.sum(), 1)),
            "mean surprisal (nats)": float(np.mean(sampler.surprisal_[members])) if members.any() else np.nan,
            "mean entropy (nats)": float(np.mean(sampler.entropy_[members])) if members.any() else np.nan,
        })
    return pd.DataFrame(rows).set_index("component")


def length_frame(datasets: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Tidy lengths: one row per pair and part (``track``, ``part``, ``chars``, ``words``)."""
    rows = [{"track": track, "part": part, "chars": len(text), "words": len(text.split())}
            for track, pairs in datasets.items() for p in pairs for part in ("prompt", "chosen", "rejected")
            for text in [getattr(p, f"{part}_text")]]
    return pd.DataFrame(rows)


def length_summary(lengths: pd.DataFrame) -> pd.DataFrame:
    """Per track and part (of :func:`length_frame`): the pairs and the mean, median and longest length
    in characters."""
    chars = lengths.groupby(["track", "part"], sort=False)["chars"]
    return pd.DataFrame({"pairs": chars.size(), "mean (characters)": chars.mean(),
                         "median (characters)": chars.median(), "longest (characters)": chars.max()})


def eval_length_groups(data: Mapping[str, Any], metric: str) -> dict[str, list[str]]:
    """The held-out pairs of a track (its ``data`` settings) split by answer length, as item ids:
    those whose chosen answer is shorter than the rejected one and those whose chosen answer is
    longer (equal lengths in neither). Empty when ``metric``'s items are not pairs (the gold reward
    scores prompts)."""
    from .evaluate import pair_item_id
    from .experiment import load_split
    from .tables import ITEM_FIELDS

    if ITEM_FIELDS.get(metric, ("",))[0] != "pairs":
        return {}
    _, held_out = load_split(data, 0)
    diff = {pair_item_id(p): len(p.chosen_text) - len(p.rejected_text) for p in held_out}
    return {"chosen shorter": [i for i, d in diff.items() if d < 0],
            "chosen longer": [i for i, d in diff.items() if d > 0]}


def isa_frame(sampler: Any, random_idx: Sequence[int] | None = None) -> pd.DataFrame:
    """Per pool pair of a fitted ISA sampler: the first two principal components of its features,
    component, surprisal, entropy, score, and whether ISA (and, if given, random) selected it."""
    from sklearn.decomposition import PCA

    Z = np.asarray(sampler.features_, dtype=float)
    xy = PCA(n_components=2, random_state=0).fit_transform(Z) if Z.shape[1] > 2 else np.pad(Z, ((0, 0), (0, 2 - Z.shape[1])))
    n = Z.shape[0]
    chosen = np.zeros(n, dtype=bool)
    chosen[np.asarray(sampler.selected_)] = True
    frame = pd.DataFrame({"pc1": xy[:, 0], "pc2": xy[:, 1], "component": [f"component {k}" for k in sampler.labels_],
                          "surprisal": sampler.surprisal_, "entropy": sampler.entropy_, "score": sampler.scores_,
                          "isa": chosen})
    if random_idx is not None:
        frame["random"] = np.isin(np.arange(n), np.asarray(random_idx))
    return frame


def subset_profile(pool: Sequence[Any], subsets: Mapping[str, Sequence[int]], sampler: Any | None = None) -> pd.DataFrame:
    """Pool against subsets: size, mean characters of prompt/chosen/rejected, and (with a fitted ISA
    sampler) the share of each mixture component and the mean surprisal."""
    def describe(idx: np.ndarray) -> dict[str, Any]:
        row: dict[str, Any] = {"pairs": int(idx.size)}
        for part in ("prompt", "chosen", "rejected"):
            row[f"{part} (characters)"] = float(np.mean([len(getattr(pool[int(i)], f"{part}_text")) for i in idx]))
        if sampler is not None:
            labels = np.asarray(sampler.labels_)[idx]
            for k in range(int(sampler.n_components)):
                row[f"share in component {k}"] = float(np.mean(labels == k))
            row["mean surprisal (nats)"] = float(np.mean(np.asarray(sampler.surprisal_)[idx]))
        return row

    rows = {"pool": describe(np.arange(len(pool))), **{name: describe(np.asarray(idx, dtype=int))
                                                       for name, idx in subsets.items()}}
    return pd.DataFrame(rows).T


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def side_by_side(pool: Sequence[Any], left: Sequence[int], right: Sequence[int], *, k: int = 3,
                 names: tuple[str, str] = ("ISA", "random"), width: int = 140) -> pd.DataFrame:
    """The first ``k`` pairs of two selections next to each other (prompt, chosen, rejected, clipped)."""
    rows = []
    for j in range(k):
        row = {}
        for name, idx in zip(names, (left, right)):
            if j < len(idx):
                p = pool[int(idx[j])]
                for part in ("prompt", "chosen", "rejected"):
                    row[(name, part)] = _clip(getattr(p, f"{part}_text"), width)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    frame.index = [f"example {j + 1}" for j in range(len(frame))]
    return frame
