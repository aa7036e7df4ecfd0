"""This CPU's matmul roofline at SmolLM2-135M's shapes: bf16 and fp32 GFLOP/s for 1 and 2 threads,
plus the memory read bandwidth (the bound of token-by-token decoding).

Rows = batch × sequence positions: 1,792 (8 HH pairs × 2 sequences × 112 tokens, a v2 training
batch) and 48 (one decoding step of a 48-prompt generation batch). The other benchmarks measure
the 1-thread roofline again in their own run and report their throughputs as shares of it.

Usage: python benchmarks/bench_roofline.py      Writes benchmarks/results/roofline.json (about 1 minute).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _perf import RESULTS, machine, memory_bandwidth_gbs, roofline  # noqa: E402


def main() -> None:
    out = {"machine_before": machine(1), "runs": []}
    for threads in (1, 2):
        for rows in (1792, 48):
            r = roofline(threads, rows)
            out["runs"].append(r)
            print(f"{threads} thread(s), {rows} rows: bf16 peak {r['bf16_peak_gflops']} GFLOP/s "
                  f"(layer {r['bf16_layer_gflops']}), fp32 peak {r['fp32_peak_gflops']} (layer {r['fp32_layer_gflops']})",
                  flush=True)
        out[f"bandwidth_gbs_{threads}t"] = round(memory_bandwidth_gbs(threads), 1)
    out["machine_after"] = machine(1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "roofline.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}))


if __name__ == "__main__":
    main()
