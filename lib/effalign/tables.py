"""Run records to data frames: runs, per-item outcomes, summaries, paired contrasts, cost; formatting.

- :func:`runs_frame`: one row per run (spec fields, every scalar metric, timings, device);
  :func:`items_frame`: one row per evaluated item of each run (``record["items"]``) for a metric;
- :func:`contrast`: one cell minus another (or minus the untrained policy), paired by seed, per item
  and clustered by prompt when every run involved stored its items (:mod:`effalign.inference`);
- :func:`summarize` (t intervals over seeds), :func:`paired_differences` (every label minus a baseline,
  Holm-adjusted), :func:`metric_table`;
- :func:`cost_table`, :func:`compute_table`, :func:`loss_curves`: compute and throughput;
  :func:`selection_cost_frame` (selection, scoring and training seconds and tokens per run) and
  :func:`length_profile_frame` (the answer lengths of each run's subset);
- :func:`fmt` / :func:`format_frame`: the one number formatter of every reader's table and sentence
  (an undefined number is "—", never NaN).

A *cell* is ``(label, fraction)``: a sampler label (:func:`sampler_label`) at a share of the pool.
This module never trains: it reads records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .inference import (Estimate, cluster_bootstrap_ci, holm, min_seeds_to_reject, over_items, over_seeds,
                        paired_over_seeds, welch, wilcoxon_p)

__all__ = [
    "ITEM_FIELDS", "METRIC_BASELINES", "METRIC_RANGES", "Cell", "budget_label", "cell_runs", "compute_table", "concat",
    "contrast", "cost_table", "device_label", "fmt", "format_frame", "item_group_contrasts", "items_frame",
    "length_profile_frame", "loss_curves", "metric_baseline", "metric_table", "paired_differences", "runs_frame",
    "sampler_label", "selection_cost_frame", "summarize",
]

Cell = tuple[str, float]

#: The value of each metric for the untrained policy (``None``: the stored ``gen_ref_reward``). DPO's
#: implicit reward is zero for the reference policy, so its preference accuracy is exactly one half.
METRIC_BASELINES: dict[str, float | None] = {
    "pref_accuracy": 0.5, "pref_margin": 0.0, "gen_win_rate": 0.5, "gen_kl": 0.0, "gen_reward": None,
}
#: The range of each metric (``None``: unbounded on that side); scaling fits stay inside it.
METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    "pref_accuracy": (0.0, 1.0), "gen_reward": (0.0, 1.0), "gen_win_rate": (0.0, 1.0), "gen_ref_reward": (0.0, 1.0),
    "gen_kl": (0.0, None), "pref_margin": (None, None),
}
#: Where a metric's per-item outcomes sit in ``record["items"]``: (part, field).
ITEM_FIELDS: dict[str, tuple[str, str]] = {
    "pref_accuracy": ("pairs", "correct"), "pref_margin": ("pairs", "margin"), "gen_reward": ("prompts", "reward"),
    "gen_ref_reward": ("prompts", "ref_reward"), "gen_kl": ("prompts", "kl"), "gen_win_rate": ("prompts", "reward"),
}
DASH = "—"
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


# ----------------------------------------------------------------------------- formatting


def fmt(x: Any, style: str = "num", digits: int = 3) -> str:
    """One number for a reader, the only number formatter of the book's tables and sentences.

    Styles: ``num`` (three decimals below 1, three significant digits up to 1,000, thousands
    separators above), ``signed`` (the same with a sign: +0.012), ``sig`` (``digits`` significant
    digits: 0.00117, 3.14, 1,234), ``p`` (0.043, "< 0.001"), ``pct`` (24%, 5%, 5.8%), ``int`` (1,234).
    Undefined (None, NaN, inf) is "—". No scientific notation: magnitudes below 0.001 keep their
    significant digits (0.00027), up to a trillion thousands separators (12,345,678); only beyond
    those (below a millionth, from a trillion on) is a number written ``1.2×10⁻⁷``, never ``1.2e-07``.
    Minus signs are typographic (−)."""
    if x is None or isinstance(x, str):
        return DASH if x is None else x
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return DASH
    if style == "p":
        return "< 0.001" if v < 0.001 else f"{v:.3f}"
    if style == "pct":
        text = f"{v:.0%}" if abs(v) >= 0.1 or v == 0 else f"{v:.1%}".replace(".0%", "%")
    elif style == "int":
        text = f"{v:,.0f}"
    elif v != 0 and (abs(v) >= 1e12 or abs(v) < 1e-6):
        exp = int(math.floor(math.log10(abs(v))))
        text = f"{v / 10**exp:.1f}×10{str(exp).translate(_SUPERSCRIPT)}"
    elif style == "sig" or (v != 0 and abs(v) < 1e-3):
        text = _significant(v, digits if style == "sig" else 2)
    elif abs(v) >= 1000:
        text = f"{v:,.0f}"
    elif abs(v) >= 1:
        text = f"{v:.{max(2 - int(math.floor(math.log10(abs(v)))), 0)}f}"
    else:
        text = f"{v:.3f}"
    sign = "+" if style == "signed" and v > 0 else ""
    return sign + text.replace("-", "−")


def budget_label(fraction: Any, pairs: Any = None, *, sep: str = " ", unit: str = "") -> str:
    """A budget for a reader: the share of the pool (``fmt`` pct) and, when known, its pairs in
    brackets after ``sep`` ("10% (60)"; a figure's tick uses ``sep="\\n", unit=" pairs"``)."""
    share = fmt(fraction, "pct")
    if pairs is None or not math.isfinite(float(pairs)):
        return share
    return f"{share}{sep}({fmt(pairs, 'int')}{unit})"


def _significant(v: float, digits: int) -> str:
    """``v`` with ``digits`` significant digits, positional, thousands separators."""
    if v == 0:
        return "0"
    if v.is_integer() and abs(v) >= 10 ** (digits - 1):
        return f"{v:,.0f}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(v))), 0)
    return f"{round(v, decimals):,.{decimals}f}"


def _style_of(column: str, series: pd.Series) -> str | None:
    name = str(column).lower()
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if not pd.api.types.is_numeric_dtype(series):
        return None
    if name == "p" or name.startswith("p ") or name.startswith("p_") or name.endswith(" p") or name.endswith("_p"):
        return "p"
    if any(w in name for w in ("fraction", "share", "saving", "budget (%")):
        return "pct"
    if pd.api.types.is_integer_dtype(series) or name in ("n", "runs", "seeds", "n_seeds", "n_train", "pairs"):
        return "int"
    if any(w in name for w in ("diff", "−", "gain", "contrast")):
        return "signed"
    return "num"


def format_frame(frame: pd.DataFrame, styles: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A copy of ``frame`` for readers: every number through :func:`fmt` (style from the column name
    unless ``styles`` names it), undefined cells "—", text columns unchanged (blank stays blank)."""
    out = frame.copy()
    for col in out.columns:
        style = (styles or {}).get(col) or _style_of(col, out[col])
        if style == "bool":
            out[col] = out[col].map(fmt)
        elif style is not None:
            out[col] = [fmt(v, style) for v in out[col]]
        else:
            out[col] = out[col].map(lambda v: DASH if v is None or (isinstance(v, float) and math.isnan(v)) else v)
    return out


# ----------------------------------------------------------------------------- runs and items


def sampler_label(sampler: str, params: Mapping[str, Any] | None = None) -> str:
    """``isa`` or ``isa (score=entropy)``: the sampler name with its non-default parameters."""
    if not params:
        return str(sampler)
    return f"{sampler} (" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"


def device_label(record: Mapping[str, Any]) -> str:
    """The device that produced a record, in words, from its provenance."""
    d = dict((record.get("provenance") or {}).get("device") or {})
    if d.get("device") == "cuda":
        count = d.get("gpu_count", 1)
        return f"GPU: {d.get('gpu', 'unknown CUDA device')}" + (f" (x{count})" if count and count > 1 else "")
    if d.get("device") == "cpu":
        threads = d.get("torch_threads")
        return f"CPU: {d.get('cpu', 'unknown')}" + (f", {threads} torch thread{'s' if threads != 1 else ''}" if threads else "")
    return "unknown device (no provenance)"


RUN_COLUMNS = ["key", "experiment", "model", "sampler", "label", "sampler_params", "budget", "seed",
               "n_train", "pool_size", "fraction", "seconds", "device_name"]


def _run_row(rec: Mapping[str, Any]) -> dict[str, Any]:
    spec = rec["spec"]
    row: dict[str, Any] = {
        "key": rec["key"], "experiment": spec["experiment"], "model": spec["model"], "sampler": spec["sampler"],
        "label": sampler_label(spec["sampler"], spec.get("sampler_params")),
        "sampler_params": json.dumps(spec.get("sampler_params") or {}, sort_keys=True),
        "budget": spec["budget"], "seed": spec["seed"],
    }
    for k, v in (rec.get("metrics") or {}).items():
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) or x is None for x in v):
            base = k[: -len("_ci")] if k.endswith("_ci") else k
            row[f"{base}_lo"], row[f"{base}_hi"] = (np.nan if x is None else x for x in v)
        elif isinstance(v, (int, float, str, bool)) or v is None:
            row[k] = np.nan if v is None else v
    if "fraction" in row and row["fraction"] == row["fraction"]:
        row["fraction"] = round(float(row["fraction"]), 6)
    row["seconds"] = (rec.get("timings") or {}).get("seconds", np.nan)
    row["device_name"] = device_label(rec)
    return row


def runs_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: ``key, experiment, model, sampler, label, sampler_params, budget, seed``,
    every scalar metric (``n_train``, ``pool_size``, ``fraction`` rounded to 6 decimals, ...), list
    metrics ``<name>_ci`` as ``<name>_lo``/``<name>_hi``, ``seconds`` (whole run), ``device_name``."""
    frame = pd.DataFrame([_run_row(rec) for rec in records])
    return pd.DataFrame(columns=RUN_COLUMNS) if frame.empty else frame


def _item_values(items: Mapping[str, Any], metric: str) -> pd.DataFrame | None:
    part, name = ITEM_FIELDS.get(metric, (None, None))
    block = (items or {}).get(part) if part else None
    if not block or name not in block or "id" not in block:
        return None
    frame = pd.DataFrame({"id": block["id"], "cluster": block.get("cluster", block["id"])})
    value = np.asarray(block[name], dtype=float)
    base = METRIC_BASELINES.get(metric)
    if metric == "gen_win_rate":
        ref = np.asarray(block["ref_reward"], dtype=float)
        value, base = np.where(value > ref, 1.0, np.where(value == ref, 0.5, 0.0)), 0.5
    frame["value"] = value
    frame["untrained"] = np.asarray(block["ref_reward"], dtype=float) if base is None else float(base)
    return frame


def items_frame(records: Sequence[Mapping[str, Any]], metric: str) -> pd.DataFrame:
    """One row per evaluated item of each run that stored its items for ``metric``: ``key, id,
    cluster, value, untrained`` (the untrained policy's value of the item). Empty when none did."""
    parts = []
    for rec in records:
        vals = _item_values(rec.get("items") or {}, metric)
        if vals is not None:
            parts.append(vals.assign(key=rec["key"]))
    cols = ["key", "id", "cluster", "value", "untrained"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def metric_baseline(frame: pd.DataFrame | None, metric: str) -> float:
    """The metric's value for the untrained policy (:data:`METRIC_BASELINES`; gold reward: the mean
    stored reference-policy reward ``gen_ref_reward``). NaN when unknown."""
    base = METRIC_BASELINES.get(metric)
    if base is not None:
        return float(base)
    if metric == "gen_reward" and frame is not None and "gen_ref_reward" in frame:
        vals = frame["gen_ref_reward"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        return float(vals.mean()) if vals.size else math.nan
    return math.nan


def _untrained_per_run(rows: pd.DataFrame, metric: str) -> pd.Series:
    base = METRIC_BASELINES.get(metric)
    if base is not None:
        return pd.Series(float(base), index=rows.index)
    col = "gen_ref_reward" if metric == "gen_reward" else None
    return rows[col].astype(float) if col and col in rows else pd.Series(math.nan, index=rows.index)


# ----------------------------------------------------------------------------- contrasts


def cell_runs(frame: pd.DataFrame, cell: Cell, metric: str) -> pd.DataFrame:
    """The runs of one cell with a finite ``metric``, one per seed (the first stored), by seed."""
    if frame is None or frame.empty or metric not in frame:
        return pd.DataFrame(columns=["seed", "key", metric])
    label, fraction = cell
    y = pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)
    mask = (frame["label"].to_numpy() == label) & np.isfinite(y) & \
        (np.abs(frame["fraction"].to_numpy(dtype=float) - fraction) <= 1e-6)
    rows = frame.iloc[np.flatnonzero(mask)]
    seeds = rows["seed"].to_numpy()
    if len(np.unique(seeds)) < len(seeds):
        rows = rows.drop_duplicates("seed")
    return rows if np.all(np.diff(rows["seed"].to_numpy()) > 0) else rows.sort_values("seed")


def _item_cells(keys_a: Sequence[str], keys_b: Sequence[str] | None, items: pd.DataFrame | None
                ) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Per seed ``(cluster, a - b)`` over the items every run involved evaluated (``b`` None: minus the
    untrained policy's value of each item); None when a run lacks per-item outcomes."""
    keys = [*keys_a, *(keys_b or [])]
    if items is None or items.empty or not keys:
        return None
    sub = items[items["key"].isin(keys)]
    if set(sub["key"]) != set(keys):
        return None
    item, ids = pd.factorize(sub["id"])
    run = pd.Index(keys).get_indexer(sub["key"])
    value = np.full((len(keys), len(ids)), np.nan)
    base = np.full((len(keys), len(ids)), np.nan)
    value[run, item] = sub["value"].to_numpy(dtype=float)
    base[run, item] = sub["untrained"].to_numpy(dtype=float)
    clusters = np.empty(len(ids), dtype=object)
    clusters[item] = sub["cluster"].to_numpy()
    every = ~np.isnan(value).any(axis=0)  # the items every run evaluated
    if not every.any():
        return None
    n = len(keys_a)
    return [(clusters[every], (value[i] - (base[i] if keys_b is None else value[n + i]))[every]) for i in range(n)]


NO_ITEMS = "no per-item outcomes are stored, so the interval leaves out the sampling noise of the evaluation items"


def contrast(frame: pd.DataFrame, metric: str, a: Cell, b: Cell | None = None, *,
             items: pd.DataFrame | None = None) -> Estimate:
    """Cell ``a`` minus cell ``b`` (``None``: minus the untrained policy), paired by seed; per item
    and clustered by prompt when every run involved stored its items (``items``, from
    :func:`items_frame`); unpaired (Welch) when the cells share fewer than two seeds."""
    ra = cell_runs(frame, a, metric)
    if b is None:
        cells = _item_cells(list(ra["key"]), None, items)
        if cells:
            return over_items(cells)
        diffs = ra[metric].astype(float) - _untrained_per_run(ra, metric)
        est = over_seeds(diffs.to_numpy(), "paired by seed (against the untrained policy)")
        return replace(est, note=est.note or NO_ITEMS)
    rb = cell_runs(frame, b, metric)
    common = sorted(set(ra["seed"]) & set(rb["seed"]))
    if len(common) < 2 and min(len(ra), len(rb)) >= 2:
        return welch(ra[metric].astype(float), rb[metric].astype(float))
    ra, rb = ra[ra["seed"].isin(common)], rb[rb["seed"].isin(common)]
    cells = _item_cells(list(ra["key"]), list(rb["key"]), items)
    if cells:
        return over_items(cells)
    est = paired_over_seeds(dict(zip(ra["seed"], ra[metric].astype(float))), dict(zip(rb["seed"], rb[metric].astype(float))))
    return replace(est, note=est.note or NO_ITEMS)


def item_group_contrasts(frame: pd.DataFrame, metric: str, a: Cell, b: Cell, items: pd.DataFrame | None,
                         groups: Mapping[str, Collection[str]]) -> dict[str, Estimate]:
    """Cell ``a`` minus cell ``b`` (:func:`contrast`, per item) on each group of evaluation items
    (name -> item ids) and, for two groups, their difference under the name ``"first − second"``: the
    per-item contrast weighted by +C/n₁ on the first group's items and −C/n₂ on the second's (C = n₁ + n₂),
    so that the same clustered estimator (seeds crossed with prompts) gives its interval. Empty when
    the runs stored no per-item outcomes (a split needs them)."""
    if items is None or items.empty or not groups:
        return {}
    out = {name: contrast(frame, metric, a, b, items=items[items["id"].isin(set(ids))]) for name, ids in groups.items()}
    if len(groups) == 2:
        (first, ids1), (second, ids2) = groups.items()
        ids1, ids2 = set(ids1), set(ids2)
        both = items[items["id"].isin(ids1 | ids2)]
        n1, n2 = both.loc[both["id"].isin(ids1), "id"].nunique(), both.loc[both["id"].isin(ids2), "id"].nunique()
        if n1 and n2:
            weight = np.where(both["id"].isin(ids1), (n1 + n2) / n1, -(n1 + n2) / n2)
            weighted = both.assign(value=both["value"] * weight, untrained=both["untrained"] * weight)
            out[f"{first} − {second}"] = contrast(frame, metric, a, b, items=weighted)
    return {name: est for name, est in out.items() if est.method.startswith("per item")}


# ----------------------------------------------------------------------------- summaries


def _group_row(g: pd.DataFrame, metric: str, level: float, items: pd.DataFrame | None) -> dict[str, Any]:
    y = g[metric].to_numpy(dtype=float)
    y = y[np.isfinite(y)]
    est = over_seeds(y)
    lo, hi = est.interval(level)
    note = est.note
    if y.size == 1 and items is not None and len(items):
        its = items[items["key"] == g["key"].iloc[0]]
        if len(its) > 1:
            lo, hi = cluster_bootstrap_ci(its["value"], its["cluster"], level=level)
            note = "one run: interval over evaluation prompts (cluster bootstrap)"
    return {"n": int(y.size), "mean": est.value, "sd": float(y.std(ddof=1)) if y.size > 1 else math.nan,
            "lo": lo, "hi": hi, **{c: float(g[c].mean()) if c in g else math.nan
                                   for c in ("n_train", "fraction", "seconds", "tokens")}, "note": note}


def summarize(frame: pd.DataFrame | None, metric: str, by: Sequence[str] = ("label", "fraction"), *,
              level: float = 0.95, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean of ``metric`` over seeds per group with a t interval (no interval from one seed, except
    over the evaluation prompts of that one run when ``items`` holds them).

    Columns: the ``by`` columns, ``n`` (runs), ``mean``, ``sd``, ``lo``, ``hi``, ``n_train``,
    ``fraction``, ``seconds``, ``tokens``, ``note``."""
    by = list(by)
    cols = [*by, "n", "mean", "sd", "lo", "hi", "n_train", "fraction", "seconds", "tokens", "note"]
    if frame is None or len(frame) == 0 or metric not in frame:
        return pd.DataFrame(columns=list(dict.fromkeys(cols)))
    rows = [{**dict(zip(by, keys if isinstance(keys, tuple) else (keys,))), **_group_row(g, metric, level, items)}
            for keys, g in frame.groupby(by, dropna=False, sort=True)]
    out = pd.DataFrame(rows)
    out = out.loc[:, ~out.columns.duplicated()]
    return out.sort_values([c for c in ("fraction", "label") if c in out]).reset_index(drop=True)


PAIRED_COLUMNS = ["label", "fraction", "n_train", "n_seeds", "mean_diff", "se", "df", "lo", "hi", "p", "p_adj",
                  "family", "mde", "wins", "wilcoxon_p", "method", "note"]


def paired_differences(frame: pd.DataFrame | None, metric: str, *, baseline: str = "random",
                       items: pd.DataFrame | None = None, level: float = 0.95, alpha: float = 0.05,
                       power: float = 0.8, primary: Cell | None = None) -> pd.DataFrame:
    """Every label minus ``baseline`` at each share of the pool, paired by seed (per item when stored).

    ``p`` is the two-sided paired t-test; ``p_adj`` the Holm-adjusted p over every comparison except
    ``primary`` (the pre-registered contrast, tested at ``alpha`` alone; ``family`` says which); ``mde``
    the minimum detectable difference at ``power``; ``wilcoxon_p`` only with enough seeds for it to
    reject (:func:`effalign.inference.min_seeds_to_reject`), else empty with a note."""
    if frame is None or len(frame) == 0 or metric not in frame or baseline not in set(frame["label"]):
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    rows = []
    for (label, fraction), g in frame[frame["label"] != baseline].groupby(["label", "fraction"], sort=True):
        if cell_runs(frame, (baseline, fraction), metric).empty:
            continue
        est = contrast(frame, metric, (label, fraction), (baseline, fraction), items=items)
        ra, rb = cell_runs(frame, (label, fraction), metric), cell_runs(frame, (baseline, fraction), metric)
        d = ra.merge(rb[["seed", metric]], on="seed", suffixes=("", "_b"))
        diffs = (d[metric] - d[f"{metric}_b"]).to_numpy(dtype=float)
        lo, hi = est.interval(level)
        wp = wilcoxon_p(diffs, alpha)
        note = est.note if math.isfinite(wp) or diffs.size < 2 else "; ".join(
            filter(None, [est.note, f"Wilcoxon not reported: it needs at least {min_seeds_to_reject('wilcoxon', alpha)} seeds "
                                    f"to reach p < {alpha:g} ({diffs.size} stored)"]))
        is_primary = primary is not None and label == primary[0] and math.isclose(fraction, primary[1], abs_tol=1e-6)
        rows.append({"label": label, "fraction": float(fraction), "n_train": float(g["n_train"].mean()),
                     "n_seeds": est.n_seeds, "mean_diff": est.value, "se": est.se, "df": est.df, "lo": lo, "hi": hi,
                     "p": est.p_value(), "family": "primary" if is_primary else "Holm", "mde": est.mde(alpha, power),
                     "wins": int((diffs > 0).sum()), "wilcoxon_p": wp, "method": est.method, "note": note})
    out = pd.DataFrame(rows, columns=[c for c in PAIRED_COLUMNS if c != "p_adj"])
    family = out["family"] == "Holm"
    out["p_adj"] = out["p"]
    out.loc[family, "p_adj"] = holm(out.loc[family, "p"].to_numpy())
    return out[PAIRED_COLUMNS].sort_values(["fraction", "label"]).reset_index(drop=True)


def metric_table(frame: pd.DataFrame | None, metrics: Sequence[str], by: Sequence[str] = ("label", "fraction"), *,
                 level: float = 0.95, items: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """A reader's table of ``mean [lo, hi]`` (t intervals over seeds) for several metrics per group."""
    cols, keys = {}, None
    for m in metrics:
        if frame is None or m not in frame:
            continue
        s = summarize(frame, m, by, level=level, items=(items or {}).get(m))
        if keys is None:
            keys = s[list(dict.fromkeys([*by, "fraction", "n"]))].copy()
        cols[m] = [fmt(r["mean"]) + (f" [{fmt(r['lo'])}, {fmt(r['hi'])}]" if np.isfinite(r["lo"]) else "")
                   for _, r in s.iterrows()]
    if keys is None:
        return pd.DataFrame()
    out = format_frame(keys.rename(columns={"n": "runs", "fraction": "share of pool"})).assign(**cols)
    return out.reset_index(drop=True)


def concat(frames: Mapping[str, pd.DataFrame | None], name: str = "track") -> pd.DataFrame:
    """``pandas.concat`` of the non-empty frames keyed by track (an empty frame when all are empty);
    text columns that one track lacks are left blank."""
    parts = {k: v for k, v in frames.items() if v is not None and len(v)}
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, names=[name])
    text_cols = [c for c in out.columns if not any(c in v and pd.api.types.is_numeric_dtype(v[c]) for v in parts.values())]
    out[text_cols] = out[text_cols].fillna("")
    return out


# ----------------------------------------------------------------------------- compute and cost


def cost_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Compute per run: device, wall time, device-hours (whole run: selection, training, evaluation),
    training hours, steps, tokens, throughput and peak memory."""
    rows = []
    for rec in records:
        m, spec = rec.get("metrics") or {}, rec["spec"]
        seconds = float((rec.get("timings") or {}).get("seconds", math.nan))
        rows.append({
            "label": sampler_label(spec["sampler"], spec.get("sampler_params")), "seed": spec["seed"],
            "n_train": m.get("n_train"), "device_name": device_label(rec), "run_s": seconds,
            "train_s": m.get("wall_s", math.nan), "select_s": m.get("select_s", math.nan),
            "device_hours": seconds / 3600, "train_hours": float(m.get("wall_s", math.nan)) / 3600,
            "steps": m.get("steps"), "tokens": m.get("tokens"), "tokens_per_s": m.get("tokens_per_s"),
            "pairs_per_s": m.get("pairs_per_s"), "peak_gib": float(m.get("peak_memory_mb", math.nan)) / 1024,
            **_cost_columns(m),
        })
    return pd.DataFrame(rows)


#: parts of a run's cost breakdown (effalign.experiment.cost_breakdown), metrics cost_<part>_s / cost_<part>_tokens
COST_PARTS = ("reference", "selection", "training", "evaluation", "generation", "other")


def _cost_columns(m: Mapping[str, Any]) -> dict[str, float]:
    """``<part>_s``, ``<part>_tokens`` and ``<part>_share`` (of the run's seconds) per part; NaN for
    records made before runs carried a cost breakdown."""
    out: dict[str, float] = {}
    run_s = float(m.get("cost_run_s", math.nan))
    for part in COST_PARTS:
        sec = float(m.get(f"cost_{part}_s", math.nan))
        out[f"{part}_s"] = sec
        out[f"{part}_tokens"] = float(m.get(f"cost_{part}_tokens", math.nan))
        out[f"{part}_share"] = sec / run_s if run_s > 0 else math.nan
    out["cost_run_s"] = run_s
    return out


def cost_breakdown_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """One run's cost per part: seconds, share of the run, tokens and tokens/s (rows in run order)."""
    m = record.get("metrics") or {}
    if "cost_run_s" not in m:
        raise ValueError(f"run {record.get('key')} has no cost breakdown (made before runs carried one)")
    rows = []
    for part in COST_PARTS:
        sec = float(m.get(f"cost_{part}_s", 0.0))
        tok = m.get(f"cost_{part}_tokens")
        rows.append({"part": part, "seconds": sec, "share": sec / m["cost_run_s"] if m["cost_run_s"] else math.nan,
                     "tokens": math.nan if tok is None else float(tok),
                     "tokens_per_s": float(tok) / sec if tok and sec > 0 else math.nan})
    rows.append({"part": "whole run", "seconds": float(m["cost_run_s"]), "share": 1.0, "tokens": math.nan,
                 "tokens_per_s": math.nan})
    return pd.DataFrame(rows)


def compute_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean metric against mean compute per label and share of the pool."""
    summ = summarize(frame, metric)
    if len(summ) and {"select_s", "wall_s"} <= set(frame.columns):
        extra = frame.groupby(["label", "fraction"], dropna=False)[["select_s", "wall_s"]].mean().reset_index()
        summ = summ.merge(extra, on=["label", "fraction"], how="left")
    return summ


def loss_curves(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Tidy per-step training curves (``label``, ``seed``, ``step``, ``epoch``, ``loss``, ``margin``,
    ``accuracy``, ``seconds``) from the records' ``extra.loss_curve``."""
    rows = []
    for rec in records:
        spec = rec["spec"]
        label = sampler_label(spec["sampler"], spec.get("sampler_params"))
        n_train = (rec.get("metrics") or {}).get("n_train")
        for point in (rec.get("extra") or {}).get("loss_curve") or []:
            rows.append({"label": f"{label} ({n_train} pairs)", "seed": spec["seed"], **point})
    cols = ["label", "seed", "step", "epoch", "loss", "margin", "accuracy", "seconds"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)


# ----------------------------------------------------------------------------- selectors: cost and length profile


def _select_metadata(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((rec.get("extra") or {}).get("select_info") or {}).get("metadata") or {}


def selection_cost_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run: what choosing and training its subset cost, from the record. ``select_s`` (the whole
    selection, as measured; for a sampler that trains a scoring model this includes it),
    ``scoring_s`` and ``scoring_tokens`` (``extra.select_info.metadata.scoring_cost``; 0 for samplers
    without one), ``train_s`` (``metrics.wall_s``), ``train_tokens`` (``metrics.tokens``), ``total_s``
    = selection + training, ``total_tokens`` = scoring + training tokens."""
    rows = []
    for rec in records:
        m, spec = rec.get("metrics") or {}, rec["spec"]
        cost = _select_metadata(rec).get("scoring_cost") or {}
        select_s = float(m.get("select_s", math.nan))
        train_s = float(m.get("wall_s", math.nan))
        train_tokens = float(m.get("tokens", math.nan)) if m.get("tokens") is not None else math.nan
        scoring_tokens = float(cost.get("tokens", 0.0))
        rows.append({"key": rec["key"], "label": sampler_label(spec["sampler"], spec.get("sampler_params")),
                     "fraction": round(float(m.get("fraction", math.nan)), 6), "seed": spec["seed"],
                     "n_train": m.get("n_train"), "select_s": select_s, "scoring_s": float(cost.get("seconds", 0.0)),
                     "scoring_tokens": scoring_tokens, "train_s": train_s, "train_tokens": train_tokens,
                     "total_s": select_s + train_s, "total_tokens": scoring_tokens + train_tokens})
    cols = ["key", "label", "fraction", "seed", "n_train", "select_s", "scoring_s", "scoring_tokens", "train_s",
            "train_tokens", "total_s", "total_tokens"]
    return pd.DataFrame(rows, columns=cols)


def length_profile_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per run: the mean characters of the chosen and rejected answers of its training subset and of its
    pool (``extra.select_info.metadata.length_profile``, written by every sampler; the whole pool's own
    runs take the pool's profile from another run of the same seed, else none)."""
    pools: dict[Any, Mapping[str, Any]] = {}
    for rec in records:
        prof = _select_metadata(rec).get("length_profile")
        if prof:
            pools.setdefault(rec["spec"]["seed"], prof["pool"])
    rows = []
    for rec in records:
        spec, m = rec["spec"], rec.get("metrics") or {}
        prof = _select_metadata(rec).get("length_profile")
        sub = prof["subset"] if prof else (pools.get(spec["seed"]) if float(m.get("fraction", 0)) >= 1 - 1e-9 else None)
        pool = prof["pool"] if prof else pools.get(spec["seed"])
        rows.append({"key": rec["key"], "label": sampler_label(spec["sampler"], spec.get("sampler_params")),
                     "fraction": round(float(m.get("fraction", math.nan)), 6), "seed": spec["seed"],
                     "chosen_chars": (sub or {}).get("chosen_mean", math.nan),
                     "rejected_chars": (sub or {}).get("rejected_mean", math.nan),
                     "chosen_minus_rejected": (sub or {}).get("chosen_minus_rejected_mean", math.nan),
                     "pool_chosen_chars": (pool or {}).get("chosen_mean", math.nan)})
    cols = ["key", "label", "fraction", "seed", "chosen_chars", "rejected_chars", "chosen_minus_rejected",
            "pool_chosen_chars"]
    return pd.DataFrame(rows, columns=cols)
