"""Analysis helpers for the notebooks: run-store records in, tables and computed sentences out.

The notebooks build grid mappings with :func:`scaling_grid`, :func:`sampler_grid`,
:func:`ablation_grid` and :func:`gpu_dpo_grids` (all through :func:`make_grid`, so that the
notebooks, the findings chapter and :func:`effalign.book.export_grids` ask for the same run keys),
turn them into specs with :func:`effalign.experiment.expand_grid` and obtain their records with
:func:`collect` (which runs only what the store lacks, or, with ``run=False``, reads what is
stored). Everything after that is here:

- :func:`runs_frame`: one row per run with short column names (``label``, ``budget``, ``seed``,
  ``n_train``, ``fraction``, every metric, ``seconds``, ``device_name``);
- :func:`summarize`: per-sampler (per-label) means over seeds with percentile-bootstrap
  intervals;
- :func:`paired_differences`: sampler minus baseline (``random`` by default) on the same seed
  and budget, with a t interval, a paired t-test and a Wilcoxon signed-rank test;
- :func:`scaling_analysis`: the scaling fits (:func:`effalign.scaling.fit_scaling_table`) of a
  metric against the number of training pairs, returned as a :class:`ScalingOutcome` that holds
  either the report or a plain explanation of why there is none (never an exception);
  :func:`empirical_saturation` reads the smallest measured fraction that reaches a share of the
  full-data gain;
- :func:`cost_table`, :func:`loss_curves`, :func:`device_label`: compute and throughput;
- data views for the first notebook: :func:`length_frame`, :func:`isa_frame`,
  :func:`subset_profile`, :func:`side_by_side`;
- sentences: every ``*_statements`` function returns a list of sentences computed from the
  records, shown with :func:`show`. No number in the book is typed by hand.

With few seeds or a random tiny model the statistics may be undefined; the helpers then return
``NaN`` with a ``note`` column (tables) or a sentence saying why (statements).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# tqdm.auto warns once per kernel that ipywidgets is missing and falls back to text bars: harmless
warnings.filterwarnings("ignore", message="IProgress not found")

__all__ = [
    "METRIC_BASELINES",
    "ScalingOutcome",
    "ablation_grid",
    "ablation_samplers",
    "availability",
    "claim_statements",
    "collect",
    "compute_table",
    "concat",
    "cost_statements",
    "cost_table",
    "data_overview",
    "device_label",
    "device_statements",
    "empirical_saturation",
    "full_vs_subset_grids",
    "gpu_dpo_grids",
    "headline_frame",
    "isa_frame",
    "length_frame",
    "loss_curves",
    "make_grid",
    "metric_baseline",
    "metric_table",
    "missing_specs",
    "mixture_table",
    "notebook_setup",
    "paired_differences",
    "paired_statements",
    "profile_frames",
    "runs_frame",
    "sampler_grid",
    "sampler_label",
    "scaling_analysis",
    "scaling_grid",
    "selector_statements",
    "show",
    "side_by_side",
    "stored_records",
    "subset_profile",
    "summarize",
    "track_findings",
]

#: The value of each metric for the untrained policy (``None``: read from the runs, see
#: :func:`metric_baseline`). DPO's implicit reward is zero for the reference policy, so its
#: preference accuracy is exactly one half and its margin zero.
METRIC_BASELINES: dict[str, float | None] = {
    "pref_accuracy": 0.5,
    "pref_margin": 0.0,
    "gen_win_rate": 0.5,
    "gen_kl": 0.0,
    "gen_reward": None,  # the reference policy's mean gold reward, stored as gen_ref_reward
}


# --------------------------------------------------------------------------- notebook set-up


def notebook_setup(threads: int | None = None, *, style: str = "whitegrid", dpi: int = 110) -> None:
    """Quiet, consistent notebook output: no per-model progress bars, one seaborn style.

    ``threads`` sets torch's CPU threads (None: leave the default, all cores). One thread is
    much faster for tiny models on a busy machine, where two threads fight over two cores.

    Turns off the transformers/datasets/huggingface_hub progress bars (one per model load or
    dataset map, which would flood the outputs), lowers their loggers to errors, filters the
    known harmless warnings of the training stack, and sets the seaborn theme and pandas display.
    """
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
    for pattern in (
        r".*gradient_checkpointing.*",
        r".*torch_dtype.*deprecated.*",
        r".*`resume_download` is deprecated.*",
        r".*TypedStorage is deprecated.*",
        r".*padding_side.*",
        r".*generation flags are not valid.*",
        r".*does not have many workers.*",
        r".*To copy construct from a tensor.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft|accelerate)\b.*")

    if threads:
        import torch

        torch.set_num_threads(int(threads))

    import matplotlib
    import pandas as pd
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
    text = (f"**{title}**\n\n" if title else "") + "\n".join(f"- {s}" for s in items)
    display(Markdown(text))


# --------------------------------------------------------------------------- grids and records


def make_grid(
    track: str,
    kind: str,
    spec: Mapping[str, Any],
    *,
    model: str,
    seeds: Sequence[int],
    train: Mapping[str, Any],
    samplers: Sequence[Any] = ("random",),
    fractions: Sequence[float] | None = None,
    budgets: Sequence[Any] | None = None,
    experiment: str | None = None,
    data_overrides: Mapping[str, Any] | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    eval_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A grid mapping for :func:`effalign.experiment.expand_grid`.

    ``spec`` is one track of the profile (``{"data": ..., "eval": ..., "metric": ...}``, and an
    optional ``train`` mapping that updates the profile's common training settings for this
    track); the experiment is ``f"{track}_{kind}"`` unless given. ``*_overrides`` update the data, train and
    eval mappings (a ``None`` value removes a data key, e.g. ``pool_size: None`` for the whole
    pool).
    """
    data = dict(spec["data"])
    for k, v in (data_overrides or {}).items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    grid: dict[str, Any] = {
        "experiment": experiment or f"{track}_{kind}",
        "data": data,
        "model": model,
        "samplers": list(samplers),
        "seeds": [int(s) for s in seeds],
        "train": {**dict(train), **dict(spec.get("train") or {}), **dict(train_overrides or {})},
        "eval": {**dict(spec.get("eval") or {}), **dict(eval_overrides or {})},
    }
    if (fractions is None) == (budgets is None):
        raise ValueError("give exactly one of fractions and budgets")
    if fractions is not None:
        grid["fractions"] = [float(f) for f in fractions]
    else:
        grid["budgets"] = list(budgets or [])
    return grid


def ablation_samplers(variants: Sequence[Mapping[str, Any]], *, base: str = "isa",
                      baseline: str = "random") -> list[Any]:
    """Sampler entries for an ablation grid: the baseline, the default ``base`` and one
    ``{"name": base, "params": variant}`` per variant."""
    return [baseline, base, *({"name": base, "params": dict(v)} for v in variants)]


def full_vs_subset_grids(track: str, spec: Mapping[str, Any], size: Mapping[str, Any], *, train: Mapping[str, Any],
                         seed: int, fraction: float, sampler: str = "isa",
                         experiment: str = "gpu_dpo") -> list[dict[str, Any]]:
    """Two grids for one larger comparison: the whole pool, and ``sampler`` at ``fraction``.

    ``size`` holds ``model`` and optional ``data``/``train``/``eval`` overrides (a profile's
    ``gpu_dpo.cuda`` or ``gpu_dpo.cpu`` block).
    """
    common = dict(model=size["model"], seeds=[seed], train=train, experiment=experiment,
                  data_overrides=size.get("data"), train_overrides=size.get("train"),
                  eval_overrides=size.get("eval"))
    return [make_grid(track, "dpo", spec, samplers=["random"], fractions=[1.0], **common),
            make_grid(track, "dpo", spec, samplers=[sampler], fractions=[fraction], **common)]


def scaling_grid(track: str, spec: Mapping[str, Any], *, model: str, seeds: Sequence[int],
                 train: Mapping[str, Any], fractions: Sequence[float]) -> dict[str, Any]:
    """The scaling grid of a track: random subsets at each fraction (experiment ``<track>_subsets``,
    shared with the sampler grid, so random subsets of the same size are trained once)."""
    return make_grid(track, "subsets", spec, model=model, seeds=seeds, train=train, fractions=fractions)


def sampler_grid(track: str, spec: Mapping[str, Any], *, model: str, seeds: Sequence[int],
                 train: Mapping[str, Any], samplers: Sequence[Any], budgets: Sequence[float]) -> dict[str, Any]:
    """The sampler grid of a track (experiment ``<track>_subsets``): every sampler at each budget (share)."""
    return make_grid(track, "subsets", spec, model=model, seeds=seeds, train=train, samplers=samplers,
                     fractions=budgets)


def ablation_grid(track: str, spec: Mapping[str, Any], *, model: str, seeds: Sequence[int],
                  train: Mapping[str, Any], variants: Sequence[Mapping[str, Any]], budget: float) -> dict[str, Any]:
    """The ISA ablation of a track, in the same experiment as its sampler grid (shared runs)."""
    return make_grid(track, "subsets", spec, model=model, seeds=seeds, train=train,
                     samplers=ablation_samplers(variants), fractions=[budget])


def gpu_dpo_grids(gpu_dpo: Mapping[str, Any], tracks: Mapping[str, Any], *, train: Mapping[str, Any],
                  device: str) -> list[dict[str, Any]]:
    """The larger run of a profile's ``gpu_dpo`` block for a device type (``"cuda"`` or other:
    the ``cpu`` settings): the whole pool and ISA's subset. A size block may name its
    ``experiment`` (default ``gpu_dpo``): with a track's own experiment and no overrides, the two
    runs are that track's stored whole-pool and ISA runs."""
    size = gpu_dpo["cuda" if device == "cuda" else "cpu"]
    track = gpu_dpo["track"]
    return full_vs_subset_grids(track, tracks[track], size, train=train, seed=gpu_dpo["seed"],
                                fraction=gpu_dpo["fraction"], experiment=size.get("experiment", "gpu_dpo"))


def _store(store: Any) -> Any:
    from .runs import ResultStore

    return store if isinstance(store, ResultStore) else ResultStore(store)


def stored_records(specs: Iterable[Any], store: Any) -> list[dict[str, Any]]:
    """The stored records of ``specs`` (grid order; specs without a record are left out)."""
    store = _store(store)
    specs = list(specs)
    by_key: dict[str, dict[str, Any]] = {}
    for exp in {s.experiment for s in specs}:
        for rec in store.records(exp):
            by_key.setdefault(rec["key"], rec)
    seen, out = set(), []
    for s in specs:
        if s.key in by_key and s.key not in seen:
            seen.add(s.key)
            out.append(by_key[s.key])
    return out


def missing_specs(specs: Iterable[Any], store: Any) -> list[Any]:
    """Specs of the grid that have no stored record yet (duplicates once)."""
    specs = list(specs)
    have = {r["key"] for r in stored_records(specs, store)}
    out, seen = [], set()
    for s in specs:
        if s.key not in have and s.key not in seen:
            seen.add(s.key)
            out.append(s)
    return out


def collect(specs: Iterable[Any], store: Any, *, run: bool = True, progress: bool = False) -> list[dict[str, Any]]:
    """Records of ``specs``: runs the missing ones first (``run=True``), else only reads the store.

    Stored runs are never recomputed (:func:`effalign.experiment.run_specs`). With
    ``progress=True`` there is one bar for the grid and one per training run.
    """
    specs = list(specs)
    if run and missing_specs(specs, store):
        from .experiment import run_specs

        with warnings.catch_warnings():
            _quiet_training_warnings()
            run_specs(specs, _store(store), progress=progress)
    return stored_records(specs, store)


def _quiet_training_warnings() -> None:
    """Inside a ``warnings.catch_warnings()`` block: ignore the training stack's known noise."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|trl|peft|accelerate|torch)\b.*")


def sampler_label(sampler: str, params: Mapping[str, Any] | None = None) -> str:
    """``isa`` or ``isa (score=entropy)``: the sampler name with its non-default parameters."""
    if not params:
        return str(sampler)
    inner = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{sampler} ({inner})"


def _device_of(record: Mapping[str, Any]) -> dict[str, Any]:
    return dict((record.get("provenance") or {}).get("device") or {})


def device_label(record: Mapping[str, Any]) -> str:
    """The device that produced a record, in words, from its provenance."""
    d = _device_of(record)
    if d.get("device") == "cuda":
        count = d.get("gpu_count", 1)
        return f"GPU: {d.get('gpu', 'unknown CUDA device')}" + (f" (x{count})" if count and count > 1 else "")
    if d.get("device") == "cpu":
        threads = d.get("torch_threads")
        return f"CPU: {d.get('cpu', 'unknown')}" + (f", {threads} torch thread{'s' if threads != 1 else ''}" if threads else "")
    return "unknown device (no provenance)"


def runs_frame(records: Sequence[Mapping[str, Any]]) -> Any:
    """One row per run with short columns: spec fields, every scalar metric, timings, device.

    Columns: ``key, experiment, model, sampler, label, budget, seed, n_train, pool_size,
    fraction`` (from the metrics), every other scalar metric under its own name, list metrics
    (intervals, ``<name>_ci``) as ``<name>_lo``/``<name>_hi``, ``seconds`` (whole run), ``device_name``.
    """
    import pandas as pd

    rows = []
    for rec in records:
        spec = rec["spec"]
        row: dict[str, Any] = {
            "key": rec["key"],
            "experiment": spec["experiment"],
            "model": spec["model"],
            "sampler": spec["sampler"],
            "label": sampler_label(spec["sampler"], spec.get("sampler_params")),
            "sampler_params": json.dumps(spec.get("sampler_params") or {}, sort_keys=True),
            "budget": spec["budget"],
            "seed": spec["seed"],
        }
        for k, v in (rec.get("metrics") or {}).items():
            if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) or x is None for x in v):
                base = k[: -len("_ci")] if k.endswith("_ci") else k
                row[f"{base}_lo"], row[f"{base}_hi"] = (np.nan if x is None else x for x in v)
            elif isinstance(v, (int, float, str, bool)) or v is None:
                row[k] = np.nan if v is None else v
        row["seconds"] = (rec.get("timings") or {}).get("seconds", np.nan)
        row["device_name"] = device_label(rec)
        rows.append(row)
    cols = ["key", "experiment", "model", "sampler", "label", "sampler_params", "budget", "seed",
            "n_train", "pool_size", "fraction", "seconds", "device_name"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=cols)
    return frame


# --------------------------------------------------------------------------- statistics


def _boot_mean_ci(values: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, float]:
    """:func:`effalign.evaluate.bootstrap_ci`, with no interval for fewer than two values."""
    from .evaluate import bootstrap_ci

    if values.size < 2:
        return math.nan, math.nan
    return bootstrap_ci(values, n_boot=n_boot, level=level, seed=seed)


def summarize(
    frame: Any,
    metric: str,
    by: Sequence[str] = ("label", "budget"),
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Any:
    """Mean of ``metric`` over seeds per group, with a percentile-bootstrap interval of the mean.

    Columns: the ``by`` columns, ``n`` (runs), ``mean``, ``sd``, ``lo``, ``hi``, ``n_train``,
    ``fraction``, ``seconds`` (mean whole-run seconds), ``tokens`` (mean training tokens) and
    ``note`` (why an interval is missing).
    A single run per group has no interval.
    """
    import pandas as pd

    by = list(by)
    if frame is None or len(frame) == 0 or metric not in frame:
        return pd.DataFrame(columns=[*by, "n", "mean", "sd", "lo", "hi", "n_train", "fraction", "seconds", "tokens", "note"])
    rows = []
    for keys, g in frame.groupby(by, dropna=False, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        y = g[metric].to_numpy(dtype=float)
        y = y[np.isfinite(y)]
        lo, hi = _boot_mean_ci(y, n_boot, level, seed)
        rows.append({
            **dict(zip(by, keys)),
            "n": int(y.size),
            "mean": float(y.mean()) if y.size else math.nan,
            "sd": float(y.std(ddof=1)) if y.size > 1 else math.nan,
            "lo": lo,
            "hi": hi,
            "n_train": float(g["n_train"].mean()) if "n_train" in g else math.nan,
            "fraction": float(g["fraction"].mean()) if "fraction" in g else math.nan,
            "seconds": float(g["seconds"].mean()) if "seconds" in g else math.nan,
            "tokens": float(g["tokens"].mean()) if "tokens" in g else math.nan,
            "note": "" if y.size > 1 else "one run: no interval",
        })
    out = pd.DataFrame(rows)
    return out.sort_values([c for c in ("fraction", "label") if c in out]).reset_index(drop=True)


def paired_differences(
    frame: Any,
    metric: str,
    *,
    baseline: str = "random",
    by: str = "budget",
    level: float = 0.95,
) -> Any:
    """Each label minus ``baseline`` on the same seed and ``by`` value (paired over seeds).

    Columns: ``label``, ``by``, ``fraction``, ``n_pairs``, ``mean_diff``, ``sd``, ``lo``/``hi``
    (t interval at ``level``), ``t_p`` (paired t-test), ``wilcoxon_p`` (two-sided signed-rank;
    exact for small samples), ``wins`` (seeds where the label beat the baseline) and ``note``.
    """
    import pandas as pd
    from scipy import stats

    cols = ["label", by, "fraction", "n_pairs", "mean_diff", "sd", "lo", "hi", "t_p", "wilcoxon_p", "wins", "note"]
    if frame is None or len(frame) == 0 or metric not in frame or baseline not in set(frame["label"]):
        return pd.DataFrame(columns=cols)
    base = frame[frame["label"] == baseline][[by, "seed", metric]].rename(columns={metric: "_base"})
    rows = []
    for (label, bval), g in frame[frame["label"] != baseline].groupby(["label", by], sort=True):
        m = g[[by, "seed", metric, "fraction"]].merge(base, on=[by, "seed"], how="inner")
        d = (m[metric] - m["_base"]).to_numpy(dtype=float)
        d = d[np.isfinite(d)]
        row: dict[str, Any] = {"label": label, by: bval, "fraction": float(g["fraction"].mean()), "n_pairs": int(d.size),
                               "mean_diff": float(d.mean()) if d.size else math.nan,
                               "sd": float(d.std(ddof=1)) if d.size > 1 else math.nan,
                               "lo": math.nan, "hi": math.nan, "t_p": math.nan, "wilcoxon_p": math.nan,
                               "wins": int((d > 0).sum()), "note": ""}
        if d.size == 0:
            row["note"] = f"no seed shared with {baseline}"
        elif d.size == 1:
            row["note"] = "one seed: no interval or test"
        elif np.allclose(d, d[0]):
            row["note"] = "identical differences on every seed: no spread to test"
            row["lo"] = row["hi"] = float(d[0])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                se = d.std(ddof=1) / math.sqrt(d.size)
                tq = stats.t.ppf(0.5 + level / 2, d.size - 1)
                row["lo"], row["hi"] = row["mean_diff"] - tq * se, row["mean_diff"] + tq * se
                row["t_p"] = float(stats.ttest_1samp(d, 0.0).pvalue)
                if np.any(d != 0):
                    try:
                        row["wilcoxon_p"] = float(stats.wilcoxon(d).pvalue)
                    except ValueError as err:
                        row["note"] = f"Wilcoxon undefined ({err})"
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["fraction", "label"]).reset_index(drop=True)


def metric_baseline(frame: Any, metric: str) -> float:
    """The metric's value for the untrained policy (:data:`METRIC_BASELINES`; gold reward: the
    stored reference-policy reward ``gen_ref_reward``). NaN when unknown."""
    base = METRIC_BASELINES.get(metric)
    if base is not None:
        return float(base)
    if metric == "gen_reward" and frame is not None and "gen_ref_reward" in frame:
        vals = frame["gen_ref_reward"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        return float(vals.mean()) if vals.size else math.nan
    return math.nan


def concat(frames: Mapping[str, Any], name: str = "track") -> Any:
    """``pandas.concat`` of non-empty frames keyed by track (an empty frame when all are empty);
    text columns that one track lacks are left blank."""
    import pandas as pd

    parts = {k: v for k, v in frames.items() if v is not None and len(v)}
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, names=[name])
    text_cols = [c for c in out.columns
                 if not any(c in v and pd.api.types.is_numeric_dtype(v[c]) for v in parts.values())]
    out[text_cols] = out[text_cols].fillna("")  # metrics a track does not have: blank, not NaN
    return out


def availability(specs: Mapping[str, Sequence[Any]], store: Any) -> Any:
    """Per grid: runs in the grid and runs stored; a last row ``all (distinct runs)`` counts each
    run once (grids share runs, e.g. a random subset in both the scaling and the sampler grid)."""
    import pandas as pd

    rows, every = [], {}
    for name, sp in specs.items():
        sp = list(sp)
        every.update((s.key, s) for s in sp)
        rows.append({"grid": name, "runs": len({s.key for s in sp}), "stored": len(stored_records(sp, store))})
    if not rows:
        return pd.DataFrame(columns=["runs", "stored"])
    rows.append({"grid": "all (distinct runs)", "runs": len(every), "stored": len(stored_records(every.values(), store))})
    return pd.DataFrame(rows).set_index("grid")


# --------------------------------------------------------------------------- scaling


@dataclass
class ScalingOutcome:
    """A scaling fit of one metric, or the reason there is none (``report is None``)."""

    metric: str
    report: Any = None
    reason: str = ""
    n_points: int = 0
    pool_size: float = math.nan
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report is not None

    def table(self) -> Any:
        """The fit table (one row per form; empty when there is no fit)."""
        import pandas as pd

        if not self.ok:
            return pd.DataFrame()
        cols = ["best", "akaike_weight", "aicc", "plateau", "n95", "n95_lo", "n95_hi", "saving95", "note"]
        t = self.report.to_frame()
        return t[[c for c in cols if c in t]]

    def verdict(self) -> str:
        """One sentence: does the exponential plateau win by Akaike weight?"""
        if not self.ok:
            return f"No scaling fit for {self.metric}: {self.reason.rstrip('.')}."
        w = self.report.weights
        exp_w = w.get("exp_plateau", 0.0)
        others = ", ".join(f"{k} {v:.2f}" for k, v in w.items() if k != "exp_plateau")
        if self.report.best == "exp_plateau":
            return (f"For {self.metric} the exponential plateau is favoured, with Akaike weight {exp_w:.2f} "
                    f"({others}; {self.n_points} runs).")
        return (f"For {self.metric} the favoured form is {self.report.best}, not the exponential plateau "
                f"(Akaike weights: exp_plateau {exp_w:.2f}, {others}; {self.n_points} runs).")

    def statements(self, max_extrapolation: float = 10.0) -> list[str]:
        """Computed sentences: favoured form and weights, plateau, n95 and the saving.

        An ``n95`` beyond ``max_extrapolation`` times the pool is reported as not identified
        (the curve has not bent within the data), never as a number.
        """
        if not self.ok:
            return [f"No scaling fit for {self.metric}: {self.reason.rstrip('.')}."]
        r = self.report
        weights = ", ".join(f"{k} {w:.2f}" for k, w in sorted(r.weights.items(), key=lambda kv: -kv[1]))
        out = [f"Akaike weights ({r.criterion}, {self.n_points} runs): {weights}; favoured form: {r.best}."]
        if r.forms[r.best].plateau_param is None:
            out.append(f"The favoured {r.best} grows without bound over the measured range: it has no plateau, "
                       "so no n95 or saving follows from it.")
        limit = max_extrapolation * r.n_full
        plateau_forms = [k for k in ("exp_plateau", "power_law") if k in r.fits and r.fits[k].success]
        for name in sorted(plateau_forms, key=lambda k: k != r.best):
            fit = r.fits[name]
            role = "favoured" if name == r.best else "alternative"
            plateau = r.plateau(name)
            text = f"{name} ({role}, weight {fit.akaike_weight:.2f}): plateau {plateau:.3g}"
            if "a" in fit.ci:
                text += f" (interval {fit.ci['a'][0]:.3g} to {fit.ci['a'][1]:.3g})"
            start = float(r.predict(r.n_min, name))
            if plateau <= start:
                out.append(text + f"; the curve does not rise with more data (its plateau is not above its value "
                           f"at the smallest subset), so it has no n95.")
                continue
            try:
                n95 = r.n_at(0.95, name)
            except Exception as err:  # noqa: BLE001 - a degenerate fit is reported, not raised
                out.append(text + f"; no n95 ({err}).")
                continue
            if not np.isfinite(n95) or n95 > limit:
                out.append(text + f"; its n95 lies beyond {max_extrapolation:g} times the pool: the data do not "
                           "pin down where it levels off.")
                continue
            text += f"; n95 = {n95:,.0f} pairs"
            try:
                lo, hi = r.n_at_interval(0.95, name)
                hi_text = f"{hi:,.0f}" if hi <= limit else f"beyond {max_extrapolation:g} times the pool"
                text += f" (interval {lo:,.0f} to {hi_text})"
            except Exception:  # noqa: BLE001 - no bootstrap samples: no interval
                pass
            text += f", {n95 / r.n_full:.1%} of the pool of {r.n_full:,.0f}; saving {r.saving(0.95, name):.1%}."
            out.append(text)
            if fit.warnings:
                out.append(f"{name} caveats: " + "; ".join(fit.warnings) + ".")
        out.extend(self.notes)
        return out


def scaling_analysis(
    frame: Any,
    metric: str,
    *,
    n_col: str = "n_train",
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> ScalingOutcome:
    """Fit the scaling forms to ``metric`` against ``n_col`` (one point per run, seeds as groups).

    Never raises for data reasons: a :class:`ScalingOutcome` with ``report=None`` carries the
    reason (too few distinct sizes, a constant metric, every form failing...).
    """
    from .scaling import ScalingError, fit_scaling_table

    if frame is None or len(frame) == 0:
        return ScalingOutcome(metric, reason="no runs are stored for this grid yet")
    if metric not in frame:
        return ScalingOutcome(metric, reason=f"the runs do not record {metric!r}")
    df = frame[[n_col, metric, "seed"] + (["pool_size"] if "pool_size" in frame else [])].dropna(subset=[n_col, metric])
    pool = float(df["pool_size"].max()) if "pool_size" in df and len(df) else math.nan
    if df.empty:
        return ScalingOutcome(metric, reason=f"no run has a finite {metric}")
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            rep = fit_scaling_table(df, n_col=n_col, y_col=metric, seed_col="seed",
                                    n_full=pool if np.isfinite(pool) else None, n_boot=n_boot, seed=seed, level=level)
    except ScalingError as err:
        return ScalingOutcome(metric, reason=str(err), n_points=len(df), pool_size=pool)
    notes = []
    n_seeds = df["seed"].nunique()
    if n_seeds < 3:
        notes.append(f"Only {n_seeds} seed(s) per size: the intervals rest on a residual bootstrap and are rough.")
    return ScalingOutcome(metric, report=rep, n_points=len(df), pool_size=pool, notes=notes)


def empirical_saturation(frame: Any, metric: str, share: float = 0.95, baseline: float | None = None) -> dict[str, Any]:
    """The smallest measured training fraction whose mean reaches ``share`` of the full-data gain.

    The gain is measured from ``baseline`` (default: the untrained policy's value,
    :func:`metric_baseline`) to the mean at the largest training set. Returns a dict with
    ``fraction``, ``n_train``, ``full_mean``, ``baseline``, ``gain`` and ``sentence``.
    """
    out: dict[str, Any] = {"metric": metric, "fraction": math.nan, "n_train": math.nan, "full_mean": math.nan,
                           "baseline": math.nan, "gain": math.nan, "sentence": ""}
    if frame is None or len(frame) == 0 or metric not in frame:
        out["sentence"] = f"No runs with {metric} are stored yet."
        return out
    base = metric_baseline(frame, metric) if baseline is None else float(baseline)
    means = frame.groupby("n_train")[metric].mean().sort_index()
    frac = frame.groupby("n_train")["fraction"].mean().sort_index()
    full = float(means.iloc[-1])
    out.update(baseline=base, full_mean=full, gain=full - base)
    if not np.isfinite(base):
        out["sentence"] = f"The untrained value of {metric} is unknown, so the share of the gain is undefined."
        return out
    if not full > base:
        out["sentence"] = (f"Training on the largest set ({frac.iloc[-1]:.0%} of the pool) did not improve {metric} over "
                           f"the untrained policy ({full:.3g} vs {base:.3g}): there is no gain to saturate.")
        return out
    rel = (means - base) / (full - base)
    hit = rel[rel >= share]
    n_hit = float(hit.index[0])
    out.update(fraction=float(frac.loc[n_hit]), n_train=n_hit)
    gain = f"{share:.0%} of the full-data gain in {metric} over the untrained policy ({base:.3g} to {full:.3g})"
    if n_hit == float(means.index[-1]):
        out["sentence"] = (f"Only the largest measured set ({out['fraction']:.0%} of the pool) reaches {gain}; no smaller "
                           "measured subset does (means over seeds).")
    else:
        out["sentence"] = (f"Random subsets reach {gain} from {out['fraction']:.0%} of the pool ({n_hit:,.0f} pairs) "
                           "on, as measured (means over seeds).")
    return out


# --------------------------------------------------------------------------- sentences


def _fmt_p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def paired_statements(paired: Any, metric: str, label: str = "isa", baseline: str = "random",
                      level: float = 0.95, alpha: float = 0.05) -> list[str]:
    """Sentences on ``label`` minus ``baseline`` at each budget (from :func:`paired_differences`)."""
    if paired is None or len(paired) == 0:
        return [f"No paired runs of {label} and {baseline} are stored yet."]
    rows = paired[paired["label"] == label]
    if rows.empty:
        return [f"No paired runs of {label} and {baseline} are stored yet."]
    out = []
    for _, r in rows.iterrows():
        head = f"At {r['fraction']:.0%} of the pool, {label} minus {baseline} in {metric}: {r['mean_diff']:+.3g}"
        if not np.isfinite(r["lo"]) or r["note"]:
            out.append(f"{head} over {r['n_pairs']} seed(s); {r['note'] or 'no interval'}.")
            continue
        sig = r["t_p"] < alpha
        verdict = (f"{label} is {'better' if r['mean_diff'] > 0 else 'worse'} at the {alpha:g} level"
                   if sig else "not distinguishable from zero")
        out.append(f"{head} ({level:.0%} interval {r['lo']:+.3g} to {r['hi']:+.3g}; paired t-test p = {_fmt_p(r['t_p'])}, "
                   f"Wilcoxon p = {_fmt_p(r['wilcoxon_p'])}; {label} ahead on {r['wins']} of {r['n_pairs']} seeds): "
                   f"{verdict}.")
    return out


def selector_statements(summary: Any, metric: str) -> list[str]:
    """For each budget, the selector with the highest mean ``metric`` and its mean run time."""
    if summary is None or len(summary) == 0:
        return [f"No sampler runs with {metric} are stored yet."]
    out = []
    for frac, g in summary.groupby("fraction", sort=True):
        g = g.dropna(subset=["mean"]).sort_values("mean", ascending=False)
        if g.empty:
            continue
        best, rest = g.iloc[0], g.iloc[1:]
        tokens = f", {best['tokens']:,.0f} training tokens" if np.isfinite(best.get("tokens", math.nan)) else ""
        text = (f"At {frac:.0%} of the pool the highest mean {metric} is {best['label']} ({best['mean']:.3g} over "
                f"{best['n']} seed(s), {best['seconds']:.0f} s per run{tokens})")
        if not rest.empty:
            text += f"; runner-up {rest.iloc[0]['label']} ({rest.iloc[0]['mean']:.3g})"
            if np.isfinite(best["lo"]) and np.isfinite(rest.iloc[0]["hi"]) and best["lo"] <= rest.iloc[0]["hi"]:
                text += "; their intervals overlap"
        out.append(text + ".")
    return out or [f"No sampler runs with {metric} are stored yet."]


def metric_table(frame: Any, metrics: Sequence[str], by: Sequence[str] = ("label", "budget"), *,
                 n_boot: int = 2000, level: float = 0.95) -> Any:
    """A wide table of ``mean [lo, hi]`` (intervals over seeds) for several metrics per group."""
    import pandas as pd

    cols = {}
    keys = None
    for m in metrics:
        if frame is None or m not in frame:
            continue
        s = summarize(frame, m, by, n_boot=n_boot, level=level)
        if keys is None:
            keys = s[[*by, "fraction", "n"]].copy()
        cols[m] = [f"{r['mean']:.3g}" + (f" [{r['lo']:.3g}, {r['hi']:.3g}]" if np.isfinite(r["lo"]) else "")
                   for _, r in s.iterrows()]
    if keys is None:
        return pd.DataFrame()
    out = keys.assign(**cols)
    out["fraction"] = out["fraction"].map(lambda f: f"{f:.0%}")
    if "n_train" in out and out["n_train"].notna().all() and (out["n_train"] % 1 == 0).all():
        out["n_train"] = out["n_train"].astype(int)
    return out.rename(columns={"n": "runs", "fraction": "share of pool"}).reset_index(drop=True)


def device_statements(records: Sequence[Mapping[str, Any]], current: Any = None) -> list[str]:
    """Which device produced the records (from their provenance), and the device of this session."""
    if not records:
        return ["No runs of this comparison are stored yet."]
    devices = sorted({device_label(r) for r in records})
    out = [f"The runs below were produced on {', '.join(devices)} (from the records' provenance)."]
    if current is not None:
        kind = getattr(current, "type", str(current))
        out.append(f"This build of the notebook ran on {'a CUDA GPU' if kind == 'cuda' else 'the CPU'}; "
                   "stored runs are read, not recomputed.")
    return out


def cost_statements(records: Sequence[Mapping[str, Any]], metric: str, full_label: str = "full") -> list[str]:
    """Compare every subset run with the full-pool run: share of pairs, device-hours and tokens, and the metric."""
    cost = cost_table(records)
    if cost.empty or full_label not in set(cost["label"]):
        return ["The full-pool run is not stored yet, so there is nothing to compare with."]
    full = cost[cost["label"] == full_label].iloc[0]
    fm = next(r["metrics"] for r in records if r["spec"]["sampler"] == full_label)
    out = [f"The full pool ({int(full['n_train']):,} pairs) took {full['device_hours']:.3g} device-hours "
           f"({full['train_s']:,.0f} s of training, {int(full['tokens'] or 0):,} tokens, peak memory "
           f"{full['peak_gib']:.2f} GiB) and reached {metric} {fm.get(metric, float('nan')):.3g}."]
    for rec in records:
        if rec["spec"]["sampler"] == full_label:
            continue
        row = cost[(cost["label"] == sampler_label(rec["spec"]["sampler"], rec["spec"].get("sampler_params")))].iloc[0]
        m = rec["metrics"]
        share_h = row["device_hours"] / full["device_hours"] if full["device_hours"] else float("nan")
        share_tok = (row["tokens"] or 0) / full["tokens"] if full["tokens"] else float("nan")
        out.append(f"{row['label']} on {int(row['n_train']):,} pairs ({row['n_train'] / full['n_train']:.1%} of the pool) "
                   f"used {share_h:.1%} of the device-hours and {share_tok:.1%} of the training tokens, "
                   f"and reached {metric} {m.get(metric, float('nan')):.3g}.")
    return out


# --------------------------------------------------------------------------- compute and cost


def cost_table(records: Sequence[Mapping[str, Any]]) -> Any:
    """Compute per run: device, wall time, device-hours, tokens, throughput and peak memory.

    ``device_hours`` counts the whole run (selection, training and evaluation) on one device;
    ``train_hours`` only the DPO training loop.
    """
    import pandas as pd

    rows = []
    for rec in records:
        m, spec = rec.get("metrics") or {}, rec["spec"]
        seconds = float((rec.get("timings") or {}).get("seconds", math.nan))
        rows.append({
            "label": sampler_label(spec["sampler"], spec.get("sampler_params")),
            "seed": spec["seed"],
            "n_train": m.get("n_train"),
            "device_name": device_label(rec),
            "run_s": seconds,
            "train_s": m.get("wall_s", math.nan),
            "select_s": m.get("select_s", math.nan),
            "device_hours": seconds / 3600,
            "train_hours": float(m.get("wall_s", math.nan)) / 3600,
            "steps": m.get("steps"),
            "tokens": m.get("tokens"),
            "tokens_per_s": m.get("tokens_per_s"),
            "pairs_per_s": m.get("pairs_per_s"),
            "peak_gib": float(m.get("peak_memory_mb", math.nan)) / 1024,
        })
    return pd.DataFrame(rows)


def compute_table(frame: Any, metric: str) -> Any:
    """Mean metric against mean compute per label and budget (for 'best selector at what compute')."""
    summ = summarize(frame, metric)
    if len(summ) == 0:
        return summ
    extra = frame.groupby(["label", "budget"], dropna=False)[["select_s", "wall_s"]].mean().reset_index() \
        if {"select_s", "wall_s"} <= set(frame.columns) else None
    if extra is not None:
        summ = summ.merge(extra, on=["label", "budget"], how="left")
    return summ


def loss_curves(records: Sequence[Mapping[str, Any]]) -> Any:
    """Tidy per-step training curves (``label``, ``n_train``, ``step``, ``epoch``, ``loss``, ``margin``,
    ``accuracy``, ``seconds``) from the records' stored ``extra.loss_curve``."""
    import pandas as pd

    rows = []
    for rec in records:
        spec = rec["spec"]
        label = sampler_label(spec["sampler"], spec.get("sampler_params"))
        n_train = (rec.get("metrics") or {}).get("n_train")
        for point in (rec.get("extra") or {}).get("loss_curve") or []:
            rows.append({"label": f"{label} ({n_train} pairs)", "seed": spec["seed"], **point})
    return pd.DataFrame(rows, columns=["label", "seed", "step", "epoch", "loss", "margin", "accuracy", "seconds"]
                        if not rows else None)


# --------------------------------------------------------------------------- data views (notebook 01)


def data_overview(splits: Mapping[str, tuple[Sequence[Any], Sequence[Any]]]) -> Any:
    """One row per track: source, detected format, rows read/kept/dropped, pool and evaluation
    pairs, and distinct prompts in the pool (``splits``: track -> (pool, evaluation pairs))."""
    import pandas as pd

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


def mixture_table(sampler: Any) -> Any:
    """Per mixture component of a fitted ISA sampler: weight, pool share, budget share, mean scores."""
    import pandas as pd

    labels = np.asarray(sampler.labels_)
    budget = np.asarray(sampler.component_budget_)
    rows = []
    for k in range(int(sampler.n_components)):
        members = labels == k
        rows.append({
            "component": f"component {k}",
            "mixture weight": float(sampler.mixture_.weights_[k]),
            "pool pairs": int(members.sum()),
            "pool share": float(members.mean()),
            "ISA budget": int(budget[k]),
            "budget share": float(budget[k] / max(budget.sum(), 1)),
            "mean surprisal (nats)": float(np.mean(sampler.surprisal_[members])) if members.any() else np.nan,
            "mean entropy (nats)": float(np.mean(sampler.entropy_[members])) if members.any() else np.nan,
        })
    return pd.DataFrame(rows).set_index("component")


def length_frame(datasets: Mapping[str, Sequence[Any]]) -> Any:
    """Tidy lengths: one row per pair and part (``track``, ``part``, ``chars``, ``words``)."""
    import pandas as pd

    rows = []
    for track, pairs in datasets.items():
        for p in pairs:
            for part in ("prompt", "chosen", "rejected"):
                text = getattr(p, f"{part}_text")
                rows.append({"track": track, "part": part, "chars": len(text), "words": len(text.split())})
    return pd.DataFrame(rows)


def isa_frame(sampler: Any, random_idx: Sequence[int] | None = None) -> Any:
    """Per pool pair of a fitted :class:`~effalign.samplers.ISASampler`: 2-D coordinates (first two
    principal components of its features), component, surprisal, entropy, score, and whether ISA
    (and, if given, random) selected it."""
    import pandas as pd
    from sklearn.decomposition import PCA

    Z = np.asarray(sampler.features_, dtype=float)
    xy = PCA(n_components=2, random_state=0).fit_transform(Z) if Z.shape[1] > 2 else np.pad(Z, ((0, 0), (0, 2 - Z.shape[1])))
    n = Z.shape[0]
    isa_sel = np.zeros(n, dtype=bool)
    isa_sel[np.asarray(sampler.selected_)] = True
    frame = pd.DataFrame({
        "pc1": xy[:, 0], "pc2": xy[:, 1],
        "component": [f"component {k}" for k in sampler.labels_],
        "surprisal": sampler.surprisal_, "entropy": sampler.entropy_, "score": sampler.scores_,
        "isa": isa_sel,
    })
    if random_idx is not None:
        rnd = np.zeros(n, dtype=bool)
        rnd[np.asarray(random_idx)] = True
        frame["random"] = rnd
    return frame


def subset_profile(pool: Sequence[Any], subsets: Mapping[str, Sequence[int]], sampler: Any | None = None) -> Any:
    """Pool against subsets: size, mean characters of prompt/chosen/rejected, and (with a fitted ISA
    sampler) the share of each mixture component and the mean surprisal."""
    import pandas as pd

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

    rows = {"pool": describe(np.arange(len(pool)))}
    for name, idx in subsets.items():
        rows[name] = describe(np.asarray(idx, dtype=int))
    return pd.DataFrame(rows).T


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def side_by_side(pool: Sequence[Any], left: Sequence[int], right: Sequence[int], *, k: int = 3,
                 names: tuple[str, str] = ("ISA", "random"), width: int = 140) -> Any:
    """The first ``k`` pairs of two selections next to each other (prompt, chosen, rejected, clipped)."""
    import pandas as pd

    rows = []
    for j in range(k):
        row = {}
        for name, idx in zip(names, (left, right)):
            if j < len(idx):
                p = pool[int(idx[j])]
                row[(name, "prompt")] = _clip(p.prompt_text, width)
                row[(name, "chosen")] = _clip(p.chosen_text, width)
                row[(name, "rejected")] = _clip(p.rejected_text, width)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    frame.index = [f"example {j + 1}" for j in range(len(frame))]
    return frame


# --------------------------------------------------------------------------- headline and the paper's claims


def profile_frames(profile: Mapping[str, Any], store: Any) -> dict[str, tuple[Any, Any]]:
    """Per track of a loaded profile: the runs frames of its stored scaling and sampler grids
    (:func:`effalign.book.notebook_grids`, so the same run keys as the notebooks)."""
    from .book import notebook_grids
    from .experiment import expand_grid

    grids = notebook_grids(dict(profile))

    def frame(name: str) -> Any:
        return runs_frame(stored_records(expand_grid(grids[name]), store))

    return {track: (frame(f"{track}_scaling"), frame(f"{track}_samplers")) for track in profile["common"]["tracks"]}


def _welch(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """Mean of ``a`` minus mean of ``b`` with a Welch t interval and p-value (NaN when undefined)."""
    from scipy import stats

    d = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if a.size < 2 or b.size < 2 or (a.std() == 0 and b.std() == 0):
        return d, math.nan, math.nan, math.nan
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    tq = stats.t.ppf(0.5 + level / 2, dof)
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return d, d - tq * se, d + tq * se, p


def track_findings(scaling: Any, samplers: Any, metric: str, *, label: str = "isa", baseline: str = "random",
                   n_boot: int = 500, level: float = 0.95, outcome: ScalingOutcome | None = None) -> dict[str, Any]:
    """The numbers behind the headline of one track, computed from its runs frames.

    Keys: ``metric``, ``runs`` (stored runs), ``untrained``, ``full_mean``/``full_n``, ``scaling``
    (a :class:`ScalingOutcome`), ``random95`` (:func:`empirical_saturation`), and ``budgets``: per
    budget fraction, the means of ``baseline`` and ``label``, their paired difference (interval,
    p-values, wins), ``label`` minus the full-data mean (Welch interval), the share of the full-data
    gain that ``label`` reaches, ``label``'s rank among the selectors and the best selector.
    ``outcome``: the scaling fit of ``scaling`` when already computed (:func:`scaling_analysis`).
    """
    import pandas as pd

    frames = [f for f in (scaling, samplers) if f is not None and len(f)]
    both = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out: dict[str, Any] = {"metric": metric, "runs": len(both), "untrained": metric_baseline(both, metric),
                           "full_mean": math.nan, "full_n": 0, "budgets": {}}
    out["scaling"] = outcome if outcome is not None else scaling_analysis(scaling, metric, n_boot=n_boot)
    out["random95"] = empirical_saturation(scaling, metric) if scaling is not None and len(scaling) else None
    full = np.array([], dtype=float)
    if scaling is not None and len(scaling) and metric in scaling:
        full = scaling.loc[scaling["label"] == "full", metric].dropna().to_numpy(dtype=float)
    if full.size:
        out["full_mean"], out["full_n"] = float(full.mean()), int(full.size)
    if samplers is None or len(samplers) == 0 or metric not in samplers:
        return out
    paired = paired_differences(samplers, metric, baseline=baseline, level=level)
    summary = summarize(samplers, metric, n_boot=n_boot, level=level)
    gain = out["full_mean"] - out["untrained"]
    for frac, g in summary.groupby("fraction", sort=True):
        g = g.dropna(subset=["mean"]).sort_values("mean", ascending=False).reset_index(drop=True)
        means = dict(zip(g["label"], g["mean"]))
        row: dict[str, Any] = {"n_train": float(g["n_train"].mean()), "selectors": len(g),
                               "baseline_mean": means.get(baseline, math.nan), "label_mean": means.get(label, math.nan),
                               "best": g.iloc[0]["label"] if len(g) else "", "best_mean": float(g.iloc[0]["mean"]) if len(g) else math.nan,
                               "rank": int(g.index[g["label"] == label][0]) + 1 if label in means else None}
        p = paired[(paired["label"] == label) & np.isclose(paired["fraction"], frac)]
        if len(p):
            r = p.iloc[0]
            row.update(diff=r["mean_diff"], diff_lo=r["lo"], diff_hi=r["hi"], t_p=r["t_p"], wilcoxon_p=r["wilcoxon_p"],
                       wins=int(r["wins"]), n_pairs=int(r["n_pairs"]))
        lab = samplers.loc[(samplers["label"] == label) & np.isclose(samplers["fraction"], frac), metric].dropna()
        d, lo, hi, pw = _welch(lab.to_numpy(dtype=float), full, level)
        row.update(vs_full=d, vs_full_lo=lo, vs_full_hi=hi, vs_full_p=pw,
                   share_of_gain=(row["label_mean"] - out["untrained"]) / gain if np.isfinite(gain) and gain > 0 else math.nan)
        out["budgets"][round(float(frac), 6)] = row
    return out


def headline_frame(findings: Mapping[str, Mapping[str, Any]], label: str = "isa", baseline: str = "random") -> Any:
    """One row per track and budget: the README's and the findings chapter's headline table."""
    import pandas as pd

    rows = []
    for track, f in findings.items():
        sc = f["scaling"]
        exp_w = sc.report.weights.get("exp_plateau", math.nan) if sc.ok else math.nan
        r95 = f["random95"]["fraction"] if f["random95"] else math.nan
        for frac, b in f["budgets"].items():
            rows.append({
                "track": track, "metric": f["metric"], "budget": frac, "pairs": b["n_train"],
                "untrained": f["untrained"], "full data": f["full_mean"],
                baseline: b["baseline_mean"], label: b["label_mean"],
                f"{label} − {baseline}": b.get("diff", math.nan), "interval lo": b.get("diff_lo", math.nan),
                "interval hi": b.get("diff_hi", math.nan), "paired t p": b.get("t_p", math.nan),
                f"{label} share of full gain": b["share_of_gain"],
                "best selector": b["best"], f"{label} rank": b["rank"], "selectors": b["selectors"],
                "exp-plateau Akaike weight": exp_w, "random reaches 95% at": r95,
            })
    return pd.DataFrame(rows)


def claim_statements(f: Mapping[str, Any], label: str = "isa", baseline: str = "random",
                     alpha: float = 0.05, share: float = 0.95) -> list[str]:
    """The paper's three claims, each judged against one track's findings (:func:`track_findings`):
    'holds', 'fails' or 'not resolved', with the numbers that decide it.

    Plateau: holds when the exponential plateau has the largest Akaike weight and reaches 95% of its
    rise inside the pool; fails when another form is favoured and the exponential keeps a weight
    under 0.1. Small subset: holds when ``label`` at a budget of at most 10% reaches ``share`` of the
    whole pool's gain over the untrained policy. Sampler: holds when ``label`` beats ``baseline``
    in the paired test at every budget and ranks first; fails when it is significantly worse at some
    budget or behind the baseline at every budget.
    """
    metric = f["metric"]
    out = []
    sc = f["scaling"]
    if not sc.ok:
        out.append(f"Plateau claim: not resolved ({sc.reason.rstrip('.')}).")
    else:
        rep = sc.report
        w = rep.weights
        exp_w = w.get("exp_plateau", 0.0)
        weights = (f"Akaike weight {exp_w:.3f} against " + ", ".join(f"{k} {v:.3f}" for k, v in w.items() if k != "exp_plateau")
                   + f" ({sc.n_points} runs)")
        if rep.best != "exp_plateau":
            verdict = (f"fails ({rep.best} is favoured; the exponential plateau's weight is under 0.1)" if exp_w < 0.1
                       else f"not resolved ({rep.best} is favoured, but the exponential plateau keeps some weight)")
        else:
            try:
                n95 = float(rep.n_at(0.95, "exp_plateau"))
            except Exception:  # noqa: BLE001 - a degenerate fit has no n95
                n95 = math.nan
            if np.isfinite(n95) and n95 <= rep.n_full:
                verdict = ("holds clearly" if exp_w >= 0.9 else "holds weakly") + \
                    f" (it levels off within the pool: 95% of its rise by {n95:,.0f} of {rep.n_full:,.0f} pairs)"
            else:
                verdict = ("not resolved: the exponential form is favoured but has not levelled off within the pool "
                           "(it is close to a straight line over the measured range)")
        out.append(f"Plateau claim (the exponential plateau fits {metric} best and flattens): {verdict}; {weights}.")
    if not f["budgets"]:
        return out + [f"Subset and sampler claims: not resolved (no sampler runs with {metric} are stored)."]
    gain = f["full_mean"] - f["untrained"]
    small = {frac: b for frac, b in f["budgets"].items() if frac <= 0.1 + 1e-9}
    if not np.isfinite(gain):
        out.append("Small-subset claim: not resolved (the full-data runs are not stored).")
    elif gain <= 0:
        out.append(f"Small-subset claim: not resolved; training on the whole pool did not improve {metric} over the "
                   f"untrained policy ({f['full_mean']:.3g} vs {f['untrained']:.3g}), so there is no full-data gain to match.")
    else:
        parts, holds = [], []
        for frac, b in sorted(small.items()):
            ci = (f", {label} − full {b['vs_full']:+.3g} (interval {b['vs_full_lo']:+.3g} to {b['vs_full_hi']:+.3g})"
                  if np.isfinite(b["vs_full_lo"]) else "")
            parts.append(f"at {frac:.0%} {label} reaches {b['share_of_gain']:.0%} of the full-data gain{ci}")
            holds.append(b["share_of_gain"] >= share)
        verdict = "holds" if any(holds) else "fails"
        out.append(f"Small-subset claim ({label} on at most 10% of the pool aligns about as well as the whole pool, "
                   f"read as reaching {share:.0%} of its gain over the untrained policy, {f['untrained']:.3g} to "
                   f"{f['full_mean']:.3g}): {verdict}; " + "; ".join(parts) + ".")
    parts, better, worse = [], [], []
    for frac, b in sorted(f["budgets"].items()):
        if "diff" not in b:
            parts.append(f"at {frac:.0%} no paired runs")
            continue
        sig = np.isfinite(b["t_p"]) and b["t_p"] < alpha
        better.append(sig and b["diff"] > 0)
        worse.append(sig and b["diff"] < 0)
        parts.append(f"at {frac:.0%} {label} − {baseline} {b['diff']:+.3g} (p = {_fmt_p(b['t_p'])}), rank {b['rank']} of "
                     f"{b['selectors']} selectors (best: {b['best']})")
    if better and all(better) and all(b["rank"] == 1 for b in f["budgets"].values()):
        verdict = "holds"
    elif any(worse) or all(b.get("diff", math.nan) < 0 for b in f["budgets"].values()):
        verdict = "fails"
    else:
        verdict = "not resolved at this scale (no significant difference in the paired test)"
    out.append(f"Sampler claim ({label} beats the other selectors): {verdict}; " + "; ".join(parts) + ".")
    return out
