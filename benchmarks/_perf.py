"""Shared helpers of the performance benchmarks: thread pinning, machine load, a matmul roofline at
SmolLM2-135M's shapes (measured in the same process, so every throughput is a ratio to what this
CPU does at that moment), and the model-FLOP counts that turn tokens/s into GFLOP/s.

Not a library module: imported by benchmarks/bench_*.py only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"

# SmolLM2-135M: hidden 576, intermediate 1536, 30 layers, 9 query heads and 3 key/value heads of 64, vocab 49152.
HIDDEN, INTER, LAYERS, VOCAB, KV = 576, 1536, 30, 49152, 192
N_PARAMS_BODY = LAYERS * (HIDDEN * HIDDEN * 2 + HIDDEN * KV * 2 + 3 * HIDDEN * INTER)  # linear weights, no embeddings

#: (name, rows, k, n): the matmuls of one layer and the LM head, rows = batch × sequence positions
def shapes(rows: int) -> list[tuple[str, int, int, int]]:
    return [
        ("q/o proj 576x576", rows, HIDDEN, HIDDEN),
        ("k/v proj 576x192", rows, HIDDEN, KV),
        ("mlp up/gate 576x1536", rows, HIDDEN, INTER),
        ("mlp down 1536x576", rows, INTER, HIDDEN),
        ("lm head 576x49152", max(rows // 4, 64), HIDDEN, VOCAB),
    ]


def set_threads(n: int) -> None:
    torch.set_num_threads(n)


def machine(threads: int) -> dict[str, Any]:
    """Load average and thread setting at the time of a measurement (the machine is shared)."""
    load1, load5, load15 = os.getloadavg()
    return {"cpu_count": os.cpu_count(), "torch_threads": threads, "load_avg_1m": round(load1, 2),
            "load_avg_5m": round(load5, 2), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def cpu_clock() -> float:
    """CPU seconds of this process (all its threads). On a shared, overloaded machine a 1-thread
    process gets a fraction of a core; its CPU seconds are what the work costs on a core of its own
    (memory and cache contention from the neighbours still count), so the benchmarks report rates per
    CPU second and per wall second."""
    return time.process_time()


def timed(fn: Callable[[], Any], *, min_s: float = 0.4, warmup: int = 2, clock: Callable[[], float] = cpu_clock) -> float:
    """Best seconds per call of ``fn`` (CPU seconds by default) over repeated calls lasting at least
    ``min_s`` (best of three rounds: the machine is shared, so the least disturbed round counts)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(3):
        n, t0 = 0, clock()
        while True:
            fn()
            n += 1
            dt = clock() - t0
            if dt >= min_s / 3:
                break
        best = min(best, dt / n)
    return best


def matmul_gflops(rows: int, k: int, n: int, dtype: torch.dtype, clock: Callable[[], float] = cpu_clock) -> float:
    a = torch.randn(rows, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    sec = timed(lambda: a @ b, clock=clock)
    return 2 * rows * k * n / sec / 1e9


def roofline(threads: int, rows: int = 1792) -> dict[str, Any]:
    """bf16 and fp32 matmul GFLOP/s at the model's shapes on ``threads`` threads; ``peak`` is the
    best shape (the ceiling a whole model step could reach), ``weighted`` the FLOP-weighted mean of
    one layer's matmuls (what a forward pass of the body could reach)."""
    set_threads(threads)
    # 1 thread: per CPU second (what one core does, whatever the neighbours); more: per wall second
    clock = cpu_clock if threads == 1 else time.perf_counter
    out: dict[str, Any] = {"threads": threads, "rows": rows, "clock": "cpu" if threads == 1 else "wall", "shapes": {}}
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        per = {}
        for label, m, k, n in shapes(rows):
            per[label] = round(matmul_gflops(m, k, n, dtype, clock), 1)
        body = [(s, 2 * m * k * n) for s, m, k, n in shapes(rows)[:4]]
        weights = {"q/o proj 576x576": 2, "k/v proj 576x192": 2, "mlp up/gate 576x1536": 2, "mlp down 1536x576": 1}
        flops = sum(weights[s] * f for s, f in body)
        secs = sum(weights[s] * f / (per[s] * 1e9) for s, f in body)
        out["shapes"][name] = per
        out[f"{name}_peak_gflops"] = max(per.values())
        out[f"{name}_layer_gflops"] = round(flops / secs / 1e9, 1)
    out["bf16_over_fp32"] = round(out["bf16_layer_gflops"] / out["fp32_layer_gflops"], 2)
    return out


def memory_bandwidth_gbs(threads: int, mib: int = 256) -> float:
    """Measured read bandwidth (GB/s): a sum over a buffer far larger than the caches."""
    set_threads(threads)
    x = torch.ones(mib * (1 << 20) // 4, dtype=torch.float32)
    sec = timed(lambda: x.sum(), min_s=0.6, clock=cpu_clock if threads == 1 else time.perf_counter)
    return x.numel() * 4 / sec / 1e9


def train_flops_per_token(lora: bool) -> float:
    """Model FLOPs per trained token (body matmuls; attention scores and the LM head on completion
    positions counted apart by callers): forward 2·N, backward 2·N for activation gradients, plus
    2·N for weight gradients when every weight trains (full fine-tuning)."""
    return (4 if lora else 6) * N_PARAMS_BODY


def head_flops_per_token(lora: bool) -> float:
    """LM head on one completion position: forward plus activation backward (and weight grads, full FT)."""
    return (4 if lora else 6) * HIDDEN * VOCAB
