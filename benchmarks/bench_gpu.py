"""GPU DPO benchmark: training tokens/s, model-FLOPs utilisation (MFU) and peak memory, plus the
forward and generation rates that the paper profile's GPU-time estimate needs.

What it runs, at the profile's sequence lengths and batch (params/<profile>.yaml, one track):

- DPO training through ``effalign.train.train_dpo`` (TRL trainer, fast log-prob path, bf16 autocast):
  full fine-tuning and LoRA (q/v and all linear layers), one epoch over ``--pairs`` pool pairs after
  an untimed warm-up; tokens/s counts real (non-padding) tokens; MFU = model FLOPs
  (``effalign.compute.training_flops``: padding excluded, causal attention, LM head at completion
  positions) / wall time / the GPU's dense bf16 peak (``effalign.compute.device_peak_flops``, or
  ``--peak-tflops``). Goal: MFU ≥ 35% for full fine-tuning on an H100.
- Reference/evaluation forward (``reference_logps``, no cache) and greedy generation
  (``effalign.generation.decode``) rates, and the fixed set-up cost of one run.

Usage on a GPU machine:  python benchmarks/bench_gpu.py [--profile paper] [--track hh]
                             [--pairs 1024] [--batch-sizes 32,64] [--settings full,lora_qv,lora_all]
writes benchmarks/results/gpu.json (then ``python benchmarks/report.py`` puts the figures and the
profile's GPU-hour estimate in the README). Without CUDA it refuses (exit 2); ``--smoke`` runs the
tiny random model on a few pairs on the CPU instead, to check the script itself (tests).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "gpu.json"
SETTINGS = {
    "full": dict(lora=False),
    "lora_qv": dict(lora=True, lora_targets=("q_proj", "v_proj")),
    "lora_all": dict(lora=True, lora_targets=None),
}
MFU_GOAL = 0.35


def profile_settings(profile: str, track: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The track's data mapping, training settings and evaluation settings in a profile."""
    from effalign.book import load_profile

    common = load_profile(profile)["common"]
    if track not in common["tracks"]:
        raise SystemExit(f"profile {profile!r} has no track {track!r} (tracks: {sorted(common['tracks'])})")
    t = common["tracks"][track]
    train = {**common["train"], **t.get("train", {})}
    data = {k: v for k, v in t["data"].items() if k != "pool_per_seed"}
    return data, train, dict(t.get("eval", {}))


def train_row(name: str, model_name: str, pairs: list, ref: Any, config: Any, shape: Any, peak: float | None) -> dict:
    """One timed epoch of DPO (after the caller's warm-up) with its MFU."""
    from effalign.compute import mfu, training_flops
    from effalign.logps import tokenize_pairs
    from effalign.train import train_dpo

    t0 = time.perf_counter()
    result = train_dpo(model_name, pairs, config, ref=ref, progress=False)
    outer = time.perf_counter() - t0
    m = result.metrics
    tokenized, _ = tokenize_pairs(pairs, result.tokenizer, config.tokenize)
    flops = training_flops(shape, tokenized, lora=config.lora, epochs=config.epochs)
    util = mfu(flops, m["wall_s"], peak)
    return {"setting": name, "batch_size": config.batch_size, "logging_steps": config.logging_steps,
            "pairs": len(pairs), "steps": m["steps"],
            "tokens": m["tokens"], "wall_s": m["wall_s"], "tokens_per_s": m["tokens_per_s"],
            "pairs_per_s": m["pairs_per_s"], "model_tflops": round(flops / 1e12, 3),
            "achieved_tflops_per_s": round(flops / m["wall_s"] / 1e12, 2),
            "mfu": None if util is None else round(util, 4), "peak_memory_mb": m["peak_memory_mb"],
            "setup_s": round(outer - m["wall_s"], 2), "first_loss": m["first_loss"], "last_loss": m["last_loss"]}


def forward_rate(model: Any, tokenizer: Any, pairs: list, tok_config: Any, batch_size: int) -> dict:
    """No-grad completion log-probs of every pair (the reference and evaluation pass)."""
    from effalign.logps import reference_logps, tokenize_pairs

    reference_logps(pairs[:batch_size], (model, tokenizer), config=tok_config, batch_size=batch_size, cache=False,
                    progress=False)  # warm-up
    _sync()
    t0 = time.perf_counter()
    reference_logps(pairs, (model, tokenizer), config=tok_config, batch_size=batch_size, cache=False, progress=False)
    _sync()
    wall = time.perf_counter() - t0
    tokens = sum(t.n_tokens for t in tokenize_pairs(pairs, tokenizer, tok_config)[0])
    return {"pairs": len(pairs), "batch_size": batch_size, "tokens": tokens, "wall_s": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 1)}


def generation_rate(model: Any, tokenizer: Any, pairs: list, batch_size: int, max_new_tokens: int) -> dict:
    """Greedy decoding of one batch of the pairs' prompts (new tokens per second)."""
    from effalign.generation import decode, render_chat

    texts = [render_chat(tokenizer, p.prompt) for p in pairs[:batch_size]]
    decode(model, tokenizer, texts[:2], do_sample=False, max_new_tokens=4)  # warm-up
    _sync()
    t0 = time.perf_counter()
    out = decode(model, tokenizer, texts, do_sample=False, max_new_tokens=max_new_tokens)
    _sync()
    wall = time.perf_counter() - t0
    tokens = sum(r[0]["n_tokens"] for r in out)
    return {"prompts": len(texts), "max_new_tokens": max_new_tokens, "new_tokens": tokens, "wall_s": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 1), "dtype": str(next(model.parameters()).dtype)}


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--track", default="hh", help="the profile's track whose data and lengths are used")
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--batch-sizes", default=None, help="comma-separated global batches (default: the profile's)")
    parser.add_argument("--settings", default="full,lora_qv,lora_all")
    parser.add_argument("--logging-steps", type=int, default=None,
                        help="log the loss every n steps (default: the profile's, 1: one GPU sync per step)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not known")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, a few pairs, CPU allowed (tests)")
    parser.add_argument("--out", default=None, help=f"JSON output (default {OUT.relative_to(ROOT)}; smoke: none)")
    args = parser.parse_args(argv)

    import torch

    from effalign.compute import ModelShape, Throughput, device_peak_flops
    from effalign.experiment import load_split
    from effalign.logps import ReferenceLogps, reference_logps
    from effalign.runs import device_description, package_versions
    from effalign.train import DPOTrainConfig, prepare_policy, train_dpo

    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("bench_gpu: no CUDA device here; this benchmark measures a GPU (run it on one), "
              "or pass --smoke for a tiny CPU check of the script", file=sys.stderr)
        return 2
    model_name = "tiny-random" if args.smoke else "smollm2-135m-instruct"
    data, train, ev = profile_settings(args.profile, args.track)
    if args.smoke:
        data = {"source": "testbed", "eval_source": "testbed-eval"}
        train = {**train, "max_prompt_tokens": 32, "max_completion_tokens": 16}
        args.pairs, args.batch_sizes = 16, "4"
    pool, _ = load_split(data)
    pairs = pool.pairs[: args.pairs]
    batch_sizes = [int(b) for b in (args.batch_sizes or str(train["batch_size"])).split(",")]
    fields = {k: v for k, v in train.items() if k in DPOTrainConfig.__dataclass_fields__}
    base_config = DPOTrainConfig(**{**fields, "epochs": 1, "max_steps": -1, "warmup_ratio": 0.0})
    if args.logging_steps:
        base_config = replace(base_config, logging_steps=args.logging_steps)
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (device_peak_flops(gpu) if cuda else None)
    if cuda and peak is None:
        print(f"bench_gpu: unknown bf16 peak for {gpu!r}; MFU left out (pass --peak-tflops)", file=sys.stderr)

    rows = []
    for name in args.settings.split(","):
        for bs in batch_sizes:
            config = replace(base_config, batch_size=bs, **SETTINGS[name])
            base = prepare_policy(model_name, config)
            ref = reference_logps(pairs, base, config=config.tokenize, batch_size=bs, progress=False)
            shape = ModelShape.from_model(base[0])
            del base
            warm = pairs[: 2 * bs]
            train_dpo(model_name, warm, config, ref=ReferenceLogps(ref.chosen[: len(warm)], ref.rejected[: len(warm)]),
                      progress=False)  # kernels, allocator
            row = train_row(name, model_name, pairs, ref, config, shape, peak)
            rows.append(row)
            print(json.dumps(row), flush=True)

    full = prepare_policy(model_name, replace(base_config, lora=False))  # float32, as evaluation sees a trained policy
    forward = forward_rate(*full, pairs, base_config.tokenize, int(ev.get("batch_size", 8)))
    generation = generation_rate(*full, pairs, int(ev.get("gen_batch_size", 16)), int(ev.get("max_new_tokens", 96)))
    full_rows = [r for r in rows if r["setting"] == "full"] or rows
    best = max(full_rows, key=lambda r: r["tokens_per_s"])
    throughput = Throughput(device=gpu, train_tokens_per_s=best["tokens_per_s"],
                            forward_tokens_per_s=forward["tokens_per_s"],
                            generate_tokens_per_s=generation["tokens_per_s"],
                            setup_s=round(sum(r["setup_s"] for r in rows) / len(rows), 2))
    result = {
        "smoke": args.smoke, "profile": args.profile, "track": args.track, "model": model_name,
        "lengths": {"max_prompt_tokens": base_config.max_prompt_tokens,
                    "max_completion_tokens": base_config.max_completion_tokens},
        "gpu": gpu, "peak_tflops": None if peak is None else round(peak / 1e12, 1), "mfu_goal": MFU_GOAL,
        "rows": rows, "forward": forward, "generation": generation, "throughput": throughput.__dict__,
        "device": device_description(), "packages": package_versions(),
    }
    out = Path(args.out) if args.out else (None if args.smoke else OUT)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"written {out}")
    print(f"{'setting':9s} {'batch':>5s} {'tokens/s':>10s} {'MFU':>6s} {'peak MB':>8s}")
    for r in rows:
        mfu_text = "–" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        print(f"{r['setting']:9s} {r['batch_size']:5d} {r['tokens_per_s']:10.0f} {mfu_text:>6s} {r['peak_memory_mb']:8.0f}")
    print(f"forward {forward['tokens_per_s']:.0f} tokens/s; generation {generation['tokens_per_s']:.0f} new tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
