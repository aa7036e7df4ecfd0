"""Opt-in training attention kernel: DPOTrainConfig(train_attention="eager") against the default "sdpa"
(LoRA q/v, 24 HH pairs at 64 + 48 tokens, batch 8, 1 thread): CPU seconds of the training loop, and
how far the losses and the trained policy's held-out log-probs move (the numerics change, so eager is
opt-in; it enters the run key as a train field).

Usage: python benchmarks/bench_attention.py     Writes benchmarks/results/attention.json (about 3 minutes).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _perf import RESULTS, machine, set_threads  # noqa: E402

from effalign.data import load_preferences  # noqa: E402
from effalign.evaluate import policy_logps  # noqa: E402
from effalign.logps import reference_logps, tokenize_pairs  # noqa: E402
from effalign.train import DPOTrainConfig, prepare_policy, train_dpo  # noqa: E402

MODEL = "smollm2-135m-instruct"


def main() -> None:
    set_threads(1)
    data = load_preferences("hh-harmless")
    pairs, held = data[:24], data[200:248]
    out = {"machine_before": machine(1), "pairs": len(pairs), "held_out": len(held)}
    runs = {}
    for kernel in ("sdpa", "eager"):
        config = DPOTrainConfig(max_prompt_tokens=64, max_completion_tokens=48, batch_size=8, train_attention=kernel)
        base = prepare_policy(MODEL, config)
        ref = reference_logps(pairs, base, config=config.tokenize, progress=False)
        del base
        res = train_dpo(MODEL, pairs, config, ref=ref, progress=False)
        tok, _ = tokenize_pairs(held, res.tokenizer, config.tokenize)
        c, r = policy_logps(res.model, tok, res.tokenizer.pad_token_id, batch_size=8)
        runs[kernel] = {"cpu_s": res.metrics["cpu_s"], "wall_s": res.metrics["wall_s"],
                        "losses": [x["loss"] for x in res.loss_curve], "held_margin": c - r}
        print(kernel, res.metrics["cpu_s"], runs[kernel]["losses"], flush=True)
    a, b = runs["sdpa"], runs["eager"]
    out.update({
        "sdpa_cpu_s": a["cpu_s"], "eager_cpu_s": b["cpu_s"], "speedup": round(a["cpu_s"] / b["cpu_s"], 3),
        "sdpa_losses": a["losses"], "eager_losses": b["losses"],
        "max_abs_loss_diff": round(float(np.max(np.abs(np.subtract(a["losses"], b["losses"])))), 5),
        "held_logp_margin_mean_abs_diff": round(float(np.mean(np.abs(a["held_margin"] - b["held_margin"]))), 4),
        "held_logp_margin_sd": round(float(np.std(a["held_margin"])), 4),
        "machine_after": machine(1),
    })
    (RESULTS / "attention.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if "losses" not in k}, indent=1))


if __name__ == "__main__":
    main()
