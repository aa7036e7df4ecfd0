"""One v2-like HH run with its cost breakdown: the v2 primary grid's random 10% cell of seed 0
(pool 600, 200 validation pairs, 1,000 held-out pairs, 64 + 48 tokens, LoRA q/v, 1 thread) with
``max_steps`` cut from 75 to ``--steps`` (a tiny share of the training, so it fits a benchmark), stored
in benchmarks/results/cost_run.jsonl. benchmarks/report.py turns the stored record into the README's
cost table and projects the full 75-step run from the measured seconds per step (labelled as such).

Usage: python benchmarks/bench_cost_run.py [--steps 12]   (about 6 minutes on a loaded 2-core CPU)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from pathlib import Path

import torch

from effalign.experiment import Context, expand_grid, run_experiment
from effalign.runs import make_record

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "cost_run.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from effalign.book import load_profile
    from effalign.design import design_grids

    grid = design_grids(load_profile("default", ROOT))["hh_primary"]
    spec = next(s for s in expand_grid(grid) if s.sampler == "random" and s.seed == 0)
    full_steps = int(spec.train.get("max_steps", 75))
    spec = spec.replace(train={**spec.train, "max_steps": args.steps})
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    metrics = run_experiment(spec, Context(), progress=False)
    extra = metrics.pop("extra")
    extra["cost_projection"] = {"full_steps": full_steps, "run_steps": args.steps}
    record = make_record(spec, metrics, started, time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter() - t0, extra)
    record.pop("items", None)
    import json

    OUT.write_text(json.dumps(record) + "\n")
    print({k: v for k, v in record["metrics"].items() if k.startswith("cost_")})


if __name__ == "__main__":
    main()
