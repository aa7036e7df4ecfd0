"""Synthetic run records and frames for the analysis tests (no training)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from effalign.runs import RunSpec, make_record


def record(sampler: str = "random", budget: int | None = 10, seed: int = 0, experiment: str = "hh_subsets",
           params: dict | None = None, pool: int = 100, items: dict | None = None, **metrics: Any) -> dict:
    """A stored-run record as the run store writes it (tiny model, fixed timings)."""
    spec = RunSpec(experiment=experiment, data={"source": "x"}, model="tiny-random", sampler=sampler,
                   budget=budget, seed=seed, sampler_params=params or {})
    n = pool if budget is None else budget
    m = {"n_train": n, "pool_size": pool, "fraction": n / pool, "pref_accuracy_ci": [0.4, 0.6],
         "wall_s": 2.0, "select_s": 0.1, "tokens": 1000 * n, "tokens_per_s": 500.0, "pairs_per_s": 4.0,
         "peak_memory_mb": 2048.0, "steps": 3, **metrics}
    rec = make_record(spec, m, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:10+00:00", 10.0,
                      extra={"loss_curve": [{"step": 1, "epoch": 0.5, "loss": 0.69, "margin": 0.0, "accuracy": 0.5,
                                             "seconds": 1.0},
                                            {"step": 2, "epoch": 1.0, "loss": 0.6, "margin": 0.1, "accuracy": 0.7,
                                             "seconds": 2.0}]})
    if items is not None:
        rec["items"] = items
    return rec


def item_ids(n: int) -> list[str]:
    return [hashlib.sha1(str(i).encode()).hexdigest()[:10] for i in range(n)]


def runs(cells: dict[tuple[str, float], np.ndarray], pool: int = 400, metric: str = "pref_accuracy",
         untrained: float | None = None) -> pd.DataFrame:
    """A runs frame (the columns the analysis reads) from per-seed values of each (label, fraction) cell."""
    rows = []
    for (label, fraction), values in cells.items():
        for seed, v in enumerate(values):
            rows.append({"key": f"{label}-{fraction}-{seed}", "label": label, "fraction": fraction, "seed": seed,
                         "n_train": round(fraction * pool), "pool_size": pool, metric: float(v),
                         **({"gen_ref_reward": untrained} if untrained is not None else {})})
    return pd.DataFrame(rows)


def items(cells: dict[tuple[str, float], np.ndarray], clusters: np.ndarray, untrained: float = 0.5) -> pd.DataFrame:
    """An items frame from per-seed, per-item values of each cell (seeds × items arrays)."""
    ids = item_ids(len(clusters))
    parts = [pd.DataFrame({"key": f"{label}-{fraction}-{seed}", "id": ids, "cluster": clusters, "value": row,
                           "untrained": untrained})
             for (label, fraction), values in cells.items() for seed, row in enumerate(values)]
    return pd.concat(parts, ignore_index=True)
