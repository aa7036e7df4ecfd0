"""Notebook helpers: quiet set-up, computed sentences, the data views of the first chapter, and the
runs of a profile's grids as frames for the findings.

- :func:`notebook_setup`, :func:`show`: one style, no progress bars or known warnings in the book;
- :func:`data_overview`, :func:`length_frame`, :func:`isa_frame`, :func:`mixture_table`,
  :func:`subset_profile`, :func:`side_by_side`: the data sets and what ISA sees in them;
- :func:`track_runs`, :func:`profile_runs`, :func:`profile_findings`: stored (or, in the experiment
  chapters, newly trained) runs of a track's grids as :class:`~effalign.findings.TrackRuns`, and the
  findings of a whole profile (the findings chapter and the README headline use the same calls);
- :func:`refuse_profile_file`, :func:`availability_note`, :func:`truncation_note`: what a reader or a
  user re-running a chapter needs to know (a profile given to papermill's ``-f``, runs that are not
  stored and how to train them, answers cut by the tokenisation settings).
"""

from __future__ import annotations

import warnings

# tqdm.auto (imported with the experiment code below) warns once per kernel that ipywidgets is missing
# and falls back to text bars: harmless, and not for the book's outputs
warnings.filterwarnings("ignore", message="IProgress not found")

from collections.abc import Iterable, Mapping, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .book import load_profile  # noqa: E402
from .experiment import LegacyCheck, StaleRunWarning, availability, collect, expand_grid  # noqa: E402
from .findings import AnalysisPlan, TrackFindings, TrackRuns, track_findings  # noqa: E402
from .grids import arm_of, equal_compute_arms, track_grids  # noqa: E402
from .tables import items_frame, runs_frame  # noqa: E402

__all__ = [
    "availability_note", "data_overview", "isa_frame", "length_frame", "mixture_table", "notebook_setup",
    "profile_findings", "profile_runs", "refuse_profile_file", "show", "side_by_side", "subset_profile",
    "track_runs", "truncation_note",
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
    threads (None: all cores; one is much faster for tiny models on a busy machine)."""
    _quiet_libraries()
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft|accelerate)\b.*")
    # stated in the chapters instead (availability_note, truncation_note), not as warning text
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


def refuse_profile_file(namespace: Mapping[str, Any], notebook: str) -> None:
    """Stop a notebook that papermill's ``-f`` gave a profile (papermill injects its ``common`` and
    ``notebooks`` sections as two unknown parameters), naming the commands that read profiles."""
    given = sorted({"common", "notebooks", "base"} & set(namespace))
    if given:
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
    """A note when the runs' tokenisation cut more than ``threshold`` of the completion tokens
    (records that counted them: ``extra.truncation.completion_tokens``), naming the setting."""
    from collections.abc import Mapping as _Mapping

    from .train import DPOTrainConfig

    def flat(value: Any) -> list[Any]:
        if isinstance(value, _Mapping) and "key" not in value:
            return [r for v in value.values() for r in flat(v)]
        if isinstance(value, (list, tuple)):
            return [r for v in value for r in flat(v)]
        return [value]

    cut = total = 0
    heavy = set()
    for rec in {r["key"]: r for r in flat(records) if isinstance(r, _Mapping) and "key" in r}.values():
        trunc = ((rec.get("extra") or {}).get("truncation") or {})
        if trunc.get("completion_tokens"):
            cut, total = cut + trunc["completion_tokens_cut"], total + trunc["completion_tokens"]
            if trunc["completion_tokens_cut"] > threshold * trunc["completion_tokens"]:
                heavy.add(rec["spec"].get("train", {}).get("max_completion_tokens", DPOTrainConfig.max_completion_tokens))
    if total and cut > threshold * total:
        show(f"The tokenisation cut {cut / total:.0%} of the completion tokens these runs trained on "
             f"(max_completion_tokens: {', '.join(map(str, sorted(heavy, key=str)))}): the policy learned from the "
             "first tokens of each answer only. Raise `train.max_completion_tokens` in the profile to keep more.",
             title="Truncation")


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
                     items=items_frame(every, metric))


def profile_runs(profile: str | Mapping[str, Any], store: Any, root: Path | None = None) -> dict[str, TrackRuns]:
    """Per track of a profile: the stored runs of its scaling arms, sampler grid and whole pool."""
    prof = load_profile(profile, root) if isinstance(profile, str) else profile
    c = prof["common"]
    plan = AnalysisPlan.from_profile(c.get("analysis"), c["tracks"])
    return {name: track_runs(track_grids(name, track, model=c["model"], train=c["train"], seeds=c["seeds"],
                                         scaling_seeds=c["scaling_seeds"], scaling_fractions=c["scaling_fractions"],
                                         samplers=c["samplers"], budgets=c["budgets"],
                                         scaling_arms=c.get("scaling_arms")), store, plan.metric(name))
            for name, track in c["tracks"].items()}


def profile_findings(profile: str | Mapping[str, Any], store: Any, *, n_boot: int = 200,
                     root: Path | None = None) -> tuple[AnalysisPlan, dict[str, TrackFindings]]:
    """The plan and the findings of every track of a profile, from its stored runs."""
    prof = load_profile(profile, root) if isinstance(profile, str) else profile
    c = prof["common"]
    plan = AnalysisPlan.from_profile(c.get("analysis"), c["tracks"])
    equal = equal_compute_arms(c.get("scaling_arms"))
    return plan, {name: track_findings(name, plan, runs, n_boot=n_boot, equal_compute=equal)
                  for name, runs in profile_runs(prof, store, root).items()}


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
    return pd.DataFrame(rows).T


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
            row[f"{part} chars"] = float(np.mean([len(getattr(pool[int(i)], f"{part}_text")) for i in idx]))
        if sampler is not None:
            labels = np.asarray(sampler.labels_)[idx]
            for k in range(int(sampler.n_components)):
                row[f"share in component {k}"] = float(np.mean(labels == k))
            row["mean surprisal"] = float(np.mean(np.asarray(sampler.surprisal_)[idx]))
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
