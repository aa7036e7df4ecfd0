"""Foundation benchmark: HH load+parse time, embedding throughput, SmolLM2 materialisation time.

Runs with 2 threads. Prints a table and writes benchmarks/results/foundation.json.
Usage: python benchmarks/bench_foundation.py [--texts 1000]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)

    from effalign.data import load_preferences
    from effalign.embed import embed_texts, load_embedder
    from effalign.models import materialise_smollm2
    from effalign.runs import device_description, package_versions

    load_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        data = load_preferences("hh-harmless")
        load_times.append(time.perf_counter() - t0)
    load_s = statistics.median(load_times)

    texts = [p.chosen_text for p in data][: args.texts]
    load_embedder()  # model load is not part of throughput
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        embed_texts(texts, cache=Path(tmp) / "e.sqlite", progress=False)
        embed_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        embed_texts(texts, cache=Path(tmp) / "e.sqlite", progress=False)
        cached_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        mat = materialise_smollm2(Path(tmp) / "smollm2", force=True)
        mat_s = time.perf_counter() - t0

    results = {
        "hh_rows": data.report.rows_read,
        "hh_load_parse_s": round(load_s, 3),
        "hh_rows_per_s": round(data.report.rows_read / load_s),
        "embed_texts": len(texts),
        "embed_mean_chars": round(statistics.mean(len(t) for t in texts)),
        "embed_texts_per_s": round(len(texts) / embed_s, 1),
        "embed_cached_texts_per_s": round(len(texts) / cached_s),
        "materialise_s": round(mat_s, 1),
        "threads": torch.get_num_threads(),
        "device": device_description(),
        "packages": package_versions(),
    }
    for k, v in results.items():
        if not isinstance(v, dict):
            print(f"{k:28s} {v}")
    out = Path(__file__).parent / "results" / "foundation.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
