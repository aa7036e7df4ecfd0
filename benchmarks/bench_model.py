"""Model throughput on 1 thread, per CPU second (the machine is shared), as shares of the roofline measured in the same run
(benchmarks/_perf.py): DPO training (LoRA q/v and full fine-tuning at the v2 HH lengths, 64 prompt + 48
completion tokens, batch 8) against a plain PyTorch loop on the same batches; reference log-probs on
long pairs (192 + 64 tokens, length-sorted batches of 8); greedy and sampled decoding (testbed
prompts) against the memory-bandwidth bound; and a torch.profiler table of two LoRA training steps.

Usage: python benchmarks/bench_model.py [--pairs 24]   Writes benchmarks/results/model.json (about 3 minutes).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _perf import (RESULTS, head_flops_per_token, machine, memory_bandwidth_gbs, roofline, set_threads,  # noqa: E402
                   train_flops_per_token)
from bench_train import SETTINGS, plain_loop  # noqa: E402 (the plain PyTorch loop, timed in wall and CPU seconds)

from effalign.data import load_preferences  # noqa: E402
from effalign.logps import TokenizeConfig, reference_logps, tokenize_pairs  # noqa: E402
from effalign.train import DPOTrainConfig, prepare_policy, train_dpo  # noqa: E402

MODEL = "smollm2-135m-instruct"


def model_gflops(tokens: int, completion_tokens: int, lora: bool, seconds: float) -> float:
    flops = tokens * train_flops_per_token(lora) + completion_tokens * head_flops_per_token(lora)
    return flops / seconds / 1e9


def completion_tokens(pairs, config: DPOTrainConfig, tok) -> tuple[int, int]:
    tokenized, _ = tokenize_pairs(pairs, tok, config.tokenize)
    return sum(t.n_tokens for t in tokenized), sum(len(t.chosen_ids) + len(t.rejected_ids) for t in tokenized)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=24)
    args = parser.parse_args()
    set_threads(1)
    roof = roofline(1)
    peak = roof["bf16_layer_gflops"]
    out = {"machine_before": machine(1), "roofline_1t": roof}
    data = load_preferences("hh-harmless")
    pairs = data[: args.pairs]
    rows = []
    for name in ("lora_qv", "full"):
        config = DPOTrainConfig(max_prompt_tokens=64, max_completion_tokens=48, epochs=1, batch_size=8, **SETTINGS[name])
        base = prepare_policy(MODEL, config)
        ref = reference_logps(pairs, base, config=config.tokenize, progress=False)
        n_tok, n_comp = completion_tokens(pairs, config, base[1])
        del base
        res = train_dpo(MODEL, pairs, config, ref=ref, progress=False)
        plain = plain_loop(pairs, config, ref)
        cpu = res.metrics["cpu_s"]
        g = model_gflops(n_tok, n_comp, config.lora, cpu)
        gp = model_gflops(n_tok, n_comp, config.lora, plain["cpu_s"])
        rows.append({"setting": name, "pairs": len(pairs), "tokens": n_tok,
                     "effalign_tokens_per_s": round(n_tok / cpu, 1), "effalign_pairs_per_s": round(len(pairs) / cpu, 3),
                     "effalign_wall_pairs_per_s": res.metrics["pairs_per_s"],
                     "plain_pairs_per_s": round(len(pairs) / plain["cpu_s"], 3),
                     "plain_ratio": round(plain["cpu_s"] / cpu, 3),
                     "model_gflops": round(g, 1), "roofline_share": round(g / peak, 3),
                     "plain_roofline_share": round(gp / peak, 3)})
        print(json.dumps(rows[-1]), flush=True)
    out["training"] = rows

    # reference log-probs on long pairs
    long_cfg = TokenizeConfig(192, 64)
    policy = prepare_policy(MODEL, DPOTrainConfig(lora=True))
    lp_pairs = data[100:164]
    t0 = time.process_time()
    r = reference_logps(lp_pairs, policy, config=long_cfg, batch_size=8, cache=False, progress=False)
    sec = time.process_time() - t0
    n_tok, _ = completion_tokens(lp_pairs, DPOTrainConfig(max_prompt_tokens=192, max_completion_tokens=64), policy[1])
    g = (n_tok * 2 * (train_flops_per_token(True) / 4)) / sec / 1e9  # forward only: 2 FLOPs per weight per token
    out["logps"] = {"pairs": len(lp_pairs), "pairs_per_s": round(len(lp_pairs) / sec, 2), "tokens": r.tokens,
                    "tokens_per_s": round(r.tokens / sec, 1), "body_gflops": round(g, 1), "roofline_share": round(g / peak, 3)}
    print(json.dumps(out["logps"]), flush=True)

    # decoding: greedy and sampled, 8 testbed prompts, 32 new tokens
    from effalign.evaluate import _prompt_messages
    from effalign.generation import decode, render_chat
    from effalign.testbed import load_eval_prompts

    model, tok = policy
    texts = [render_chat(tok, _prompt_messages(p.messages())) for p in load_eval_prompts()[:8]]
    bw = memory_bandwidth_gbs(1)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    gen = {"bandwidth_gbs": round(bw, 1), "weight_mb": round(weight_bytes / 1e6, 1)}
    for mode, sample in (("greedy", False), ("sampled", True)):
        decode(model, tok, texts[:2], do_sample=sample, max_new_tokens=4)
        t0 = time.process_time()
        res = decode(model, tok, texts, do_sample=sample, max_new_tokens=32, seed=1)
        sec = time.process_time() - t0
        n = sum(x[0]["n_tokens"] for x in res)
        steps = max(x[0]["n_tokens"] for x in res)
        bound = bw * 1e9 / weight_bytes * len(texts)  # one weight read per step serves the whole batch
        gen[mode] = {"batch": len(texts), "new_tokens": n, "tokens_per_s": round(n / sec, 1), "steps": steps,
                     "bandwidth_bound_tokens_per_s": round(bound, 1), "bound_share": round(n / sec / bound, 3)}
    out["generation"] = gen
    print(json.dumps(gen), flush=True)

    # where LoRA training time goes: torch.profiler over a short run
    from torch.profiler import ProfilerActivity, profile

    config = DPOTrainConfig(max_prompt_tokens=64, max_completion_tokens=48, epochs=1, batch_size=8, **SETTINGS["lora_qv"])
    ref = reference_logps(pairs[:16], prepare_policy(MODEL, config), config=config.tokenize, progress=False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_dpo(MODEL, pairs[:16], config, ref=ref, progress=False)
    out["profile_note"] = "whole train_dpo call (policy load, LoRA setup and merge included), 2 steps"
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
    out["profile_lora_top"] = [{"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 3),
                                "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in top]
    out["machine_after"] = machine(1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["profile_lora_top"], indent=0))


if __name__ == "__main__":
    main()
