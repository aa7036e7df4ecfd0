"""Compute accounting: model FLOPs of DPO training, device peaks, MFU, and the GPU time of a design.

**Model FLOPs** count what the computation needs, padding excluded. For one sequence of ``T``
tokens (prompt + completion) of which ``C`` are completion tokens, a forward pass costs

    2·N_lin·T                  the matmuls of the decoder layers (N_lin: their weight count)
  + 2·L·d_attn·T·(T + 1)       attention scores and weighted values, causal (a query sees t keys)
  + 2·d·V·C                    the LM head, at completion positions only (effalign's fast path)

with ``L`` layers, model width ``d``, attention width ``d_attn`` and vocabulary ``V``. Training
costs 3 forward passes' worth for full fine-tuning (the backward pass computes activation and
weight gradients, twice the forward) and 2 for LoRA (activation gradients only; the adapters'
own FLOPs are negligible). A DPO pair is its chosen and its rejected sequence; the reference
log-probs are computed once per pool and are not part of training. **MFU** is model FLOPs per
second over the device's dense bf16 peak (:func:`device_peak_flops`).

**GPU time of a design** (:func:`estimate_design_seconds`), from throughputs that
``benchmarks/bench_gpu.py`` measures (:class:`Throughput`)::

    seconds = Σ_cells [ setup_s
                        + pairs_seen · tokens_per_pair(track) / train_tokens_per_s
                        + validations · val_pairs · tokens_per_pair(track) / forward_tokens_per_s
                        + eval_pairs · tokens_per_pair(track) / forward_tokens_per_s
                        + gen_prompts · (1 + kl_samples) · max_new_tokens / generate_tokens_per_s ]
            + Σ_(track, pool seed) (pool_pairs + val_pairs) · tokens_per_pair(track) / forward_tokens_per_s

``pairs_seen`` is ``budget · epochs`` for the fixed-epoch arm and ``max_steps · batch_size ·
grad_accum`` for the equal-steps arm (the cap for ``converge``); ``validations`` is
``ceil(max_steps / val_every)`` for ``converge`` (the validation split's DPO loss every ``val_every``
steps) and 1 otherwise (once, at the end), over the ``data.val_size`` validation pairs (none without
them); the last sum is the reference log-probs of each pool and its validation split, computed once
(cached). Training and validation under ``converge`` and generation are counted at their limits (upper
bounds: early stopping and shorter answers only make a run cheaper), and selection (embeddings and
samplers, CPU) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# Dense bf16 peak FLOP/s (no sparsity) from the vendors' data sheets, matched against
# torch.cuda.get_device_name in order (more specific names first).
BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4e12),
    ("GH200", 989.4e12),
    ("H100 NVL", 835.0e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),  # SXM
    ("H800", 989.4e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362.05e12),
    ("L40", 181.05e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165.2e12),
    ("RTX 3090", 71e12),
)


def device_peak_flops(name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name (``torch.cuda.get_device_name``), or None if unknown."""
    for key, flops in BF16_PEAK_FLOPS:
        if key.lower() in name.lower():
            return flops
    return None


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs of a causal LM (see the module docstring)."""

    n_linear: int  # weights of the decoder layers' matmuls
    layers: int
    d_model: int
    d_attn: int
    vocab: int

    @classmethod
    def from_model(cls, model: Any) -> ModelShape:
        """Read the shape of a (PEFT-wrapped or plain) transformers causal LM."""
        import torch

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        cfg = base.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        body = getattr(base, base.base_model_prefix)
        n_linear = 0
        for name, module in body.named_modules():
            if "lora_" in name:
                continue
            weight = getattr(module, "weight", None)
            if isinstance(module, torch.nn.Linear) and weight is not None:
                n_linear += weight.numel()
        return cls(n_linear=n_linear, layers=cfg.num_hidden_layers, d_model=cfg.hidden_size,
                   d_attn=cfg.num_attention_heads * head_dim, vocab=cfg.vocab_size)


def forward_flops(shape: ModelShape, tokens: int, completion_tokens: int) -> float:
    """Forward FLOPs of one sequence of ``tokens`` tokens, ``completion_tokens`` of them scored."""
    return (2.0 * shape.n_linear * tokens + 2.0 * shape.layers * shape.d_attn * tokens * (tokens + 1)
            + 2.0 * shape.d_model * shape.vocab * completion_tokens)


def training_flops(shape: ModelShape, tokenized: Iterable[Any], *, lora: bool, epochs: float = 1.0) -> float:
    """Model FLOPs of DPO training on tokenised pairs (:class:`effalign.logps.TokenizedPair`)."""
    factor = 2.0 if lora else 3.0
    total = 0.0
    for t in tokenized:
        p = len(t.prompt_ids)
        for completion in (t.chosen_ids, t.rejected_ids):
            total += forward_flops(shape, p + len(completion), len(completion))
    return factor * total * epochs


def mfu(flops: float, seconds: float, peak_flops: float | None) -> float | None:
    """Model-FLOPs utilisation: achieved FLOP/s over the peak (None without a peak)."""
    if not peak_flops or seconds <= 0:
        return None
    return flops / seconds / peak_flops


# --------------------------------------------------------------------------- GPU time of a design


@dataclass(frozen=True)
class Throughput:
    """Measured rates of one device (``benchmarks/bench_gpu.py`` writes them to its JSON)."""

    device: str
    train_tokens_per_s: float  # full fine-tuning at the profile's lengths and batch
    forward_tokens_per_s: float  # no-grad completion log-probs (reference and evaluation)
    generate_tokens_per_s: float  # greedy decoding at the profile's generation batch
    setup_s: float  # fixed cost of one run: model copy, dataset, trainer

    @classmethod
    def from_benchmark(cls, bench: Mapping[str, Any]) -> Throughput:
        """From the ``throughput`` entry of ``benchmarks/results/gpu.json``."""
        t = bench["throughput"]
        return cls(**{k: t[k] for k in cls.__dataclass_fields__})


def pairs_seen(train: Mapping[str, Any], n_train: int) -> int:
    """Pairs a run trains on under its budget mode (see the module docstring)."""
    mode = train.get("budget", "epochs")
    if mode in ("steps", "converge"):
        if not train.get("max_steps"):
            raise ValueError(f"budget {mode!r} needs max_steps in the train settings")
        return int(train["max_steps"]) * int(train.get("batch_size", 8)) * int(train.get("grad_accum", 1))
    if mode != "epochs":
        raise ValueError(f"unknown budget mode {mode!r}")
    return int(math.ceil(n_train * float(train.get("epochs", 1.0))))


@dataclass(frozen=True)
class TrackSize:
    """The sizes of a track that its cost depends on."""

    pool_pairs: int
    eval_pairs: int
    tokens_per_pair: float  # mean of 2·prompt + chosen + rejected after truncation


def track_size(data: Mapping[str, Any], max_prompt_tokens: int, max_completion_tokens: int,
               tokenizer: Any) -> TrackSize:
    """Pool and evaluation sizes of a track's ``data`` mapping and its mean tokens per pair."""
    from .experiment import load_split
    from .logps import TokenizeConfig, tokenize_pairs

    # the pool's size and token mix do not depend on which seed draws it
    pool, ev = load_split({k: v for k, v in data.items() if k != "pool_per_seed"})
    tokenized, _ = tokenize_pairs(pool.pairs, tokenizer, TokenizeConfig(max_prompt_tokens, max_completion_tokens))
    return TrackSize(len(pool), len(ev), sum(t.n_tokens for t in tokenized) / max(1, len(tokenized)))


def validations(train: Mapping[str, Any]) -> int:
    """Evaluations of the validation split in one run (see the module docstring): every ``val_every``
    steps up to the cap under ``converge``, else once at the end."""
    if train.get("budget") == "converge":
        return math.ceil(int(train["max_steps"]) / int(train.get("val_every") or 10))
    return 1


def val_pairs(data: Mapping[str, Any], pool_pairs: int) -> int:
    """The validation pairs of a track's ``data``: ``val_size`` as a count, or as a share (below 1) of
    ``pool_size`` (of the whole pool when it has none); 0 without a validation split."""
    v = data.get("val_size")
    if not v:
        return 0
    return int(v) if float(v) >= 1 else round(float(v) * int(data.get("pool_size") or pool_pairs))


def cell_seconds(train: Mapping[str, Any], eval_: Mapping[str, Any], data: Mapping[str, Any], n_train: int,
                 size: TrackSize, rate: Throughput) -> dict[str, float]:
    """GPU seconds of one run, by part (see the module docstring)."""
    gen = 0.0
    if eval_.get("generation") and data.get("gen_prompts"):
        prompts = int(data.get("gen_n") or 400)
        gen = prompts * (1 + int(eval_.get("kl_samples", 1))) * int(eval_.get("max_new_tokens", 96))
    return {
        "setup": rate.setup_s,
        "train": pairs_seen(train, n_train) * size.tokens_per_pair / rate.train_tokens_per_s,
        "validate": validations(train) * val_pairs(data, size.pool_pairs) * size.tokens_per_pair
        / rate.forward_tokens_per_s,
        "evaluate": size.eval_pairs * size.tokens_per_pair / rate.forward_tokens_per_s,
        "generate": gen / rate.generate_tokens_per_s,
    }


def estimate_design_seconds(grids: Mapping[str, Mapping[str, Any]], sizes: Mapping[str, TrackSize],
                            rate: Throughput) -> dict[str, Any]:
    """GPU seconds of every cell of ``grids`` (grid mappings as ``python -m effalign run`` takes
    them, each with a ``track`` naming its entry in ``sizes``), by part and by grid, plus the
    reference log-probs of each distinct pool (and its validation split). Cells shared by several grids
    count once."""
    seen: set[str] = set()
    pools: set[tuple[str, int]] = set()
    val: dict[str, int] = {}  # validation pairs per track (their reference log-probs come with the pool's)
    parts = {"setup": 0.0, "train": 0.0, "validate": 0.0, "evaluate": 0.0, "generate": 0.0}
    by_grid: dict[str, float] = {}
    for name, grid in grids.items():
        size = sizes[grid["track"]]
        val[grid["track"]] = max(val.get(grid["track"], 0), val_pairs(grid["data"], size.pool_pairs))
        by_grid[name] = 0.0
        for spec in grid_cells(grid, size.pool_pairs):
            if spec.key in seen:
                continue
            seen.add(spec.key)
            pools.add((grid["track"], spec.seed if grid["data"].get("pool_per_seed") else -1))
            n_train = size.pool_pairs if spec.budget is None else spec.budget
            cost = cell_seconds(spec.train, spec.eval, grid["data"], n_train, size, rate)
            for k, v in cost.items():
                parts[k] += v
            by_grid[name] += sum(cost.values())
    parts["reference"] = sum((sizes[t].pool_pairs + val.get(t, 0)) * sizes[t].tokens_per_pair
                             for t, _ in pools) / rate.forward_tokens_per_s
    total = sum(parts.values())
    return {"device": rate.device, "cells": len(seen), "pools": len(pools), "seconds": round(total, 1),
            "gpu_hours": round(total / 3600, 2), "by_part_s": {k: round(v, 1) for k, v in parts.items()},
            "by_grid_s": {k: round(v, 1) for k, v in by_grid.items()}, "throughput": asdict(rate)}


def grid_cells(grid: Mapping[str, Any], pool_pairs: int) -> list[Any]:
    """The run specs of a grid (:func:`effalign.experiment.expand_grid`) for a pool of known size,
    without loading its data (fractions become budgets here)."""
    from .experiment import expand_grid

    g = {**grid, "data": {k: v for k, v in grid["data"].items() if k != "pool_per_seed"}}
    if "fractions" in g:
        g["budgets"] = [None if float(f) >= 1.0 else max(1, round(float(f) * pool_pairs)) for f in g.pop("fractions")]
    return expand_grid(g)


def estimate_profile(profile: str | Mapping[str, Any], bench: Mapping[str, Any], tokenizer: Any = None) -> dict[str, Any]:
    """GPU time of a profile's design (``common.design``) from a ``bench_gpu.py`` result: the track sizes
    are read from the data (tokenised at each track's lengths), the rates from ``bench``."""
    from .book import load_profile
    from .design import design_grids
    from .models import load_tokenizer

    prof = load_profile(profile) if isinstance(profile, str) else profile
    common = prof["common"]
    tokenizer = tokenizer or load_tokenizer(common["model"])
    sizes = {}
    for name, track in common["tracks"].items():
        train = {**common.get("train", {}), **track.get("train", {})}
        sizes[name] = track_size(track["data"], int(train.get("max_prompt_tokens", 128)),
                                 int(train.get("max_completion_tokens", 64)), tokenizer)
    estimate = estimate_design_seconds(design_grids(prof), sizes, Throughput.from_benchmark(bench))
    estimate["profile"] = prof.get("profile")
    estimate["tracks"] = {k: asdict(v) for k, v in sizes.items()}
    return estimate
