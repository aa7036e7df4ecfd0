"""Time every sampler on 100,000 synthetic pairs of 384-d embeddings, with 2 threads.

Usage: ``python benchmarks/bench_samplers.py [--n 100000] [--seed 0]``. Prints a table and writes
``benchmarks/results/samplers.json``. Goals (issue 3): ISA <= 30 s, kcenter <= 120 s at a 10%
budget. Each sampler runs once on a precomputed :class:`~effalign.samplers.PairFeatures` pool
(no embedding model); times include feature construction (standardise + PCA) where used.
"""

from __future__ import annotations

import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)

from effalign import __version__  # noqa: E402
from effalign.features import PairFeatures, make_features  # noqa: E402
from effalign.samplers import get_sampler  # noqa: E402

GOALS = {"isa": 30.0, "kcenter": 120.0}
OUT = Path(__file__).resolve().parent / "results" / "samplers.json"


def synthetic_pool(n: int, d: int = 384, topics: int = 50, seed: int = 0) -> PairFeatures:
    """Unit-norm prompt/chosen/rejected embeddings around ``topics`` centres, lengths, margins."""
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    centres = rng.normal(size=(topics, d)).astype(np.float32)
    topic = rng.integers(topics, size=n)
    prompt = unit(centres[topic] + 1.5 * rng.normal(size=(n, d)).astype(np.float32))
    chosen = unit(prompt + 0.8 * rng.normal(size=(n, d)).astype(np.float32))
    rejected = unit(prompt + 0.8 * rng.normal(size=(n, d)).astype(np.float32))
    lengths = np.round(rng.lognormal(6.0, 0.8, size=n))
    margins = rng.normal(0.0, 5.0, size=n)
    return PairFeatures(prompt, chosen, rejected, chosen_lengths=lengths, ref_margins=margins)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    t0 = time.perf_counter()
    pool = synthetic_pool(args.n, seed=args.seed)
    print(f"synthetic pool: {args.n} pairs x 3 x 384 floats ({time.perf_counter() - t0:.1f} s to build)")
    t0 = time.perf_counter()
    make_features(pool, dim=32, seed=args.seed)
    features_s = time.perf_counter() - t0

    tenth = args.n // 10
    runs = [(name, tenth) for name in ("isa", "kcenter", "cluster", "random", "longest", "ref_margin_low", "ref_margin_high")]
    runs.insert(3, ("cluster", args.n // 100))
    rows = []
    print(f"{'sampler':<12} {'budget':>7} {'seconds':>9} {'goal':>6}  met")
    for name, budget in runs:
        sampler = get_sampler(name)
        t0 = time.perf_counter()
        idx = sampler.select(pool, budget, args.seed)
        secs = time.perf_counter() - t0
        assert idx.shape == (budget,) and np.unique(idx).size == budget
        goal = GOALS.get(name)
        met = None if goal is None else bool(secs <= goal)
        extra = {}
        if name == "isa":
            extra = {"component_budget": sampler.component_budget_.tolist(), "weights": sampler.mixture_.weights_.round(4).tolist()}
        if name == "cluster":
            extra = {"kmeans": type(sampler.kmeans_).__name__, "n_steps": int(getattr(sampler.kmeans_, "n_steps_", 0))}
        rows.append({"sampler": name, "budget": budget, "seconds": round(secs, 2), "goal_s": goal, "met": met, **extra})
        flag = "-" if met is None else ("yes" if met else "NO")
        print(f"{name:<12} {budget:>7} {secs:>9.2f} {goal if goal else '':>6}  {flag}", flush=True)

    result = {
        "n_pairs": args.n,
        "embedding_dim": 384,
        "feature_dim": 32,
        "seed": args.seed,
        "threads": THREADS,
        "features_seconds": round(features_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "results": rows,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0]},
        "versions": {"effalign": __version__, "numpy": np.__version__, "torch": torch.__version__},
    }
    try:
        import sklearn

        result["versions"]["scikit-learn"] = sklearn.__version__
    except ImportError:  # pragma: no cover
        pass
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"features (standardise + PCA 768 -> 32): {features_s:.2f} s; peak RSS {result['peak_rss_mib']} MiB")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
