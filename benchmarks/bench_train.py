"""CPU DPO throughput: effalign.train (TRL DPOTrainer + fast log-probs) against a plain PyTorch loop.

Both sides run the same forward and backward passes on the same length-grouped batches of HH
harmless pairs (SmolLM2-135M-Instruct, max_length 256 = 192 prompt + 64 completion tokens),
with reference log-probs precomputed (not timed). The plain loop is the practical limit here:
the ratio effalign/plain shows what the trainer's machinery costs. Optionally (--stock) TRL's
own loss path (full-vocabulary log-probs, entropy, token accuracy) is timed on fewer pairs.

Usage: python benchmarks/bench_train.py [--pairs 96] [--settings lora_qv,lora_all,full] [--stock]
Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from effalign.data import load_preferences
from effalign.logps import ReferenceLogps, length_sorted_batches, pair_batch, reference_logps, tokenize_pairs
from effalign.logps import completion_logps
from effalign.models import load_policy
from effalign.runs import device_description, package_versions
from effalign.train import DPOTrainConfig, prepare_policy, train_dpo

SETTINGS = {
    "lora_qv": dict(lora=True, lora_targets=("q_proj", "v_proj")),
    "lora_all": dict(lora=True, lora_targets=None),
    "full": dict(lora=False, learning_rate=5e-6),
}


def plain_loop(pairs, config: DPOTrainConfig, ref: ReferenceLogps) -> dict[str, float]:
    """The same passes without TRL: length-grouped batches, completion log-probs, DPO loss, AdamW."""
    torch.manual_seed(config.seed)
    model, tok = prepare_policy("smollm2-135m-instruct", config)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_targets) if config.lora_targets else "all-linear", task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate)
    tokenized, _ = tokenize_pairs(pairs, tok, config.tokenize)
    batches = length_sorted_batches([t.n_tokens for t in tokenized], config.batch_size)
    tokens = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for idx in batches:
        batch = pair_batch([tokenized[j] for j in idx], tok.pad_token_id)
        tokens += int(batch.attention_mask.sum())
        logps = completion_logps(model, batch)
        c, r = logps.chunk(2)
        ratio = (c - torch.as_tensor(ref.chosen[idx], dtype=torch.float32)) - (r - torch.as_tensor(ref.rejected[idx], dtype=torch.float32))
        loss = -F.logsigmoid(config.beta * ratio).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "pairs_per_s": round(len(pairs) / wall, 3),
            "tokens_per_s": round(tokens / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--settings", default="lora_qv,lora_all,full")
    parser.add_argument("--batch-sizes", default="8")
    parser.add_argument("--stock", action="store_true", help="also time TRL's own loss path (fast_logps=False)")
    parser.add_argument("--stock-pairs", type=int, default=32)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    data = load_preferences("hh-harmless")
    pairs = data[: args.pairs]
    rows = []
    for name in args.settings.split(","):
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            config = DPOTrainConfig(max_prompt_tokens=192, max_completion_tokens=64, epochs=1, batch_size=bs,
                                    **SETTINGS[name])
            base = prepare_policy("smollm2-135m-instruct", config)
            ref = reference_logps(pairs, base, config=config.tokenize, progress=False)
            del base
            res = train_dpo("smollm2-135m-instruct", pairs, config, ref=ref, progress=False)
            eff = {k: res.metrics[k] for k in ("wall_s", "pairs_per_s", "tokens_per_s", "peak_memory_mb")}
            plain = plain_loop(pairs, config, ref)
            row = {"setting": name, "batch_size": bs, "pairs": len(pairs), "effalign": eff, "plain": plain,
                   "ratio": round(eff["pairs_per_s"] / plain["pairs_per_s"], 3),
                   "first_loss": res.metrics["first_loss"]}
            if args.stock:
                sp = pairs[: args.stock_pairs]
                stock = train_dpo("smollm2-135m-instruct", sp, replace(config, fast_logps=False),
                                  ref=ReferenceLogps(ref.chosen[: len(sp)], ref.rejected[: len(sp)]), progress=False)
                row["trl_stock"] = {k: stock.metrics[k] for k in ("wall_s", "pairs_per_s", "tokens_per_s")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"rows": rows, "device": device_description(), "packages": package_versions(),
           "max_length": 256, "note": "reference log-probs precomputed, not timed"}
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'setting':10s} {'bs':>3s} {'effalign p/s':>13s} {'plain p/s':>10s} {'ratio':>6s} {'tok/s':>8s}")
    for r in rows:
        print(f"{r['setting']:10s} {r['batch_size']:3d} {r['effalign']['pairs_per_s']:13.2f} "
              f"{r['plain']['pairs_per_s']:10.2f} {r['ratio']:6.2f} {r['effalign']['tokens_per_s']:8.0f}")


if __name__ == "__main__":
    main()
