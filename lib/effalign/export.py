"""Export a sampled subset: ``python -m effalign select`` writes the chosen pairs and a sidecar.

:func:`export_subset` loads a preference source, runs a sampler (:func:`effalign.samplers.get_sampler`)
and writes the subset in TRL's conversational format with a JSON sidecar (:func:`sidecar_path`)
holding the spec, the indices, the per-row scores and the sampler's metadata. The sidecar is a
hidden file (``.subset.meta.json`` beside ``subset.jsonl``), which ``datasets.load_dataset(FOLDER)``
and ``trl dpo --dataset_name FOLDER`` skip, so they read the subset alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .samplers import Sampler, get_sampler

__all__ = ["export_subset", "sidecar_path"]


def sidecar_path(out: str | Path) -> Path:
    """The sidecar of ``subset.jsonl`` (or ``subset.jsonl.gz``): the hidden file ``.subset.meta.json``
    beside it (hidden files are not data files to ``datasets``' folder loader, nor to TRL's)."""
    out = Path(out)
    name = out.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return out.with_name("." + name[: -len(suffix)] + ".meta.json")
    raise ValueError(f"output must end with .jsonl or .jsonl.gz, got {out}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if np.isfinite(f) else None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _mean_lengths(pairs: Any) -> dict[str, float]:
    return {
        side: float(np.mean([len(getattr(p, f"{side}_text")) for p in pairs])) if len(pairs) else 0.0
        for side in ("prompt", "chosen", "rejected")
    }


def export_subset(
    source: str,
    sampler: str | Sampler,
    out: str | Path,
    fraction: float | None = None,
    budget: int | None = None,
    seed: int = 0,
    split: str | None = None,
    params: dict[str, Any] | None = None,
    *,
    config: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
) -> str:
    """Select a subset of ``source`` and write it; returns a short text summary.

    Loads with :func:`effalign.data.load_preferences` (``split``, ``config``, ``data_dir`` and
    ``revision`` for a hub data set); the budget is ``budget`` or
    ``max(1, round(fraction * N))``. Writes ``out`` (``.jsonl``, or gzip ``.jsonl.gz``) with the
    chosen rows in pool order, in TRL's conversational format (``prompt``/``chosen``/``rejected``
    message lists plus ``metadata`` with the original metadata and ``pool_index``), and the
    sidecar :func:`sidecar_path` (``subset.meta.json``): the spec (source, load report, pool
    fingerprint, sampler and params, budget, seed, effalign version), the selected indices (pool
    order, aligned with the rows, and selection order), per-row scores the sampler exposes, the
    summary numbers and the sampler's :meth:`~effalign.samplers.Sampler.metadata`.
    """
    from . import __version__
    from .data import load_preferences, write_jsonl_gz

    meta_path = sidecar_path(out)
    if (fraction is None) == (budget is None):
        raise ValueError("give exactly one of fraction and budget")
    data = load_preferences(source, split=split, config=config, data_dir=data_dir, revision=revision)
    n = len(data)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        budget = max(1, int(round(fraction * n)))
    smp = get_sampler(sampler, **(params or {}))
    sel = smp.select(data, budget, seed)
    order = np.argsort(sel, kind="stable")
    rows_idx = sel[order]
    info = {k: np.asarray(v)[order] for k, v in smp.selection_info().items()}
    subset = data.subset(rows_idx)

    rows = []
    for i, pair in zip(rows_idx, subset):
        row = pair.to_trl(with_metadata=True)
        row["metadata"] = {**pair.metadata, "pool_index": int(i)}
        rows.append(row)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name.endswith(".gz"):
        write_jsonl_gz(out, rows)
    else:
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        tmp.replace(out)

    pool_len, sub_len = _mean_lengths(data), _mean_lengths(subset)
    meta = smp.metadata()
    summary: dict[str, Any] = {"pool_size": n, "budget": int(budget), "mean_chars_pool": pool_len, "mean_chars_subset": sub_len}
    if "components" in meta:
        summary["components"] = meta["components"]
    spec = {
        "source": str(source),
        "split": split,
        **{k: v for k, v in (("config", config), ("data_dir", data_dir), ("revision", revision)) if v},
        "load_report": data.report.to_dict() if data.report else None,
        "pool_fingerprint": data.fingerprint(),
        "sampler": smp.name,
        "params": smp.get_params(),
        "fraction": fraction,
        "budget": int(budget),
        "seed": int(seed),
        "effalign_version": __version__,
    }
    sidecar = {
        "spec": spec,
        "indices": rows_idx,
        "selection_order": sel,
        "scores": info,
        "summary": summary,
        "sampler_metadata": meta,
    }
    meta_path.write_text(json.dumps(_jsonable(sidecar), indent=1, sort_keys=True) + "\n", encoding="utf-8")

    lines = [
        f"{smp.name}: {budget} of {n} pairs ({budget / n:.1%}) from {source}, seed {seed}",
        f"wrote {out} and {meta_path}",
        "mean characters  prompt / chosen / rejected",
        "  pool    " + " / ".join(f"{pool_len[s]:8.1f}" for s in ("prompt", "chosen", "rejected")),
        "  subset  " + " / ".join(f"{sub_len[s]:8.1f}" for s in ("prompt", "chosen", "rejected")),
    ]
    if "components" in summary:
        c = summary["components"]
        for j in range(len(c["weight"])):
            lines.append(
                f"  component {j}: weight {c['weight'][j]:.3f}, pool share {c['pool_share'][j]:.3f}, "
                f"subset {c['subset_count'][j]} ({c['subset_count'][j] / budget:.3f})"
            )
    if info:
        lines.append("scores in sidecar: " + ", ".join(sorted(info)))
    return "\n".join(lines)
