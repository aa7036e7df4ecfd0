"""Experiments: select → train → evaluate → store, one :class:`~effalign.runs.RunSpec` at a time.

:func:`run_experiment` runs one spec; :func:`run_specs` runs many through the run store (a
stored run is never recomputed); :func:`expand_grid` turns a grid mapping (YAML) into specs.
The notebooks and ``python -m effalign run --grid grid.yaml`` use the same functions; the notebooks
obtain a grid's records with :func:`collect` (the only analysis-side entry that may start training),
or read them with :func:`stored_records`; :func:`availability` counts what is stored.

A spec's ``data`` mapping names the data (:func:`load_splits`):

- ``source``: the training data (alias, file, ``save_to_disk`` folder or hub id; for a hub data set
  ``split``, ``config``, ``data_dir`` and ``revision``);
- ``eval_source`` (optional): separate evaluation pairs (``eval_split`` for a hub data set;
  ``eval_size``, a count, keeps a seeded sample of them); otherwise ``source`` is split by prompt
  with ``eval_size`` (count or fraction) and ``split_seed``. The evaluation set never depends on
  the run's seed;
- ``pool_size`` (optional): how many of the remaining pairs form the pool (a seeded sample);
- ``pool_per_seed`` (optional, default false): draw the pool (and the validation split) with the
  run's seed, so that each seed has a fresh pool shared by every sampler of that seed; otherwise
  one pool (from ``split_seed``) serves every seed;
- ``val_size`` (optional): a validation split of whole prompts drawn from the pairs outside the
  evaluation set and disjoint from the pool (a count, or a fraction of ``pool_size``); budget
  ``"converge"`` stops early on it, and every run reports its final validation loss;
- ``gen_prompts`` (optional): ``"testbed"`` to evaluate generations on the testbed's held-out
  prompts with the gold reward: all of them, or a random sample of ``gen_n`` (drawn with
  ``split_seed``, the same for every run).

``budget`` is the number of training pairs (``None``: the whole pool). ``train`` holds
:class:`~effalign.train.DPOTrainConfig` fields, the training budget mode included (an arm of a
design is a train override such as ``{budget: steps, max_steps: 120}``); ``eval`` holds
``pairs`` (bool, default true: the held-out preference evaluation; a pilot that selects settings by
validation loss may skip it, and so never looks at the evaluation set), ``batch_size``,
``generation`` (bool), ``max_new_tokens``, ``kl_samples`` (sampled responses per prompt for the
KL), ``n_boot`` and ``gen_batch_size`` (prompts decoded at once; larger batches are faster on CPU
too, but greedy bf16 output depends slightly on batching).

Every record carries its per-item outcomes (``items``: held-out pairs' margins and verdicts,
held-out prompts' rewards and KL; see :mod:`effalign.evaluate`).

Every spec :func:`expand_grid` makes carries content fingerprints of its data and model
(:func:`spec_fingerprint`), so changed data or weights under the same name get new run keys.
Records stored before (without fingerprints) are still used when :func:`legacy_mismatch` finds
that the pool, evaluation and validation pairs they recorded are those that the data gives now for
their seed (and their model is pinned by its name); otherwise their cells run again, with one
:class:`StaleRunWarning` per experiment. A :class:`Context` can save each trained policy
(``save_model``) and pass ``report_to`` integrations (TensorBoard) to TRL.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .data import PreferenceData, load_preferences, normalise_prompt, repo_dir, source_fingerprint, split_by_prompt
from .logps import ReferenceLogps, reference_logps
from .runs import ResultStore, RunSpec, find_records, run_grid
from .train import DPOTrainConfig, prepare_policy, train_dpo
from .validate import validate_grid

DEFAULT_EVAL = {"pairs": True, "batch_size": 8, "generation": False, "max_new_tokens": 96, "kl_samples": 2, "n_boot": 2000,
                "gen_batch_size": 16}
DATA_FIELDS = {"source", "eval_source", "eval_size", "split_seed", "pool_size", "pool_per_seed", "val_size",
               "gen_prompts", "gen_n", "split", "config", "data_dir", "revision", "eval_split"}


@dataclass
class Splits:
    """The data of one run: its pool, the fixed evaluation pairs and the validation pairs (may be empty)."""

    pool: PreferenceData
    eval: PreferenceData
    val: PreferenceData


@dataclass
class Context:
    """Caches shared by the runs of one process: data, splits, base policies, reference outputs."""

    sources: dict[tuple[Any, ...], PreferenceData] = field(default_factory=dict)
    data: dict[str, Splits] = field(default_factory=dict)
    policies: dict[tuple[str, bool], tuple[Any, Any]] = field(default_factory=dict)
    ref_gen: dict[str, tuple[list[str], list[float]]] = field(default_factory=dict)
    refs: dict[tuple[Any, ...], ReferenceLogps] = field(default_factory=dict)
    #: reference log-prob work done by this context so far (seconds including cache reads, tokens computed);
    #: a run's cost breakdown charges it the difference over the run
    ref_spent: dict[str, float] = field(default_factory=lambda: {"s": 0.0, "tokens": 0})

    #: save each policy trained now to ``<save_model>/<run key>`` (model, tokenizer, model card); None: not saved
    save_model: str | None = None
    #: TRL/transformers ``report_to`` integrations for training, e.g. ``("tensorboard",)``; () logs nothing
    report_to: tuple[str, ...] = ()
    #: where ``report_to`` integrations write, one folder per run key (TensorBoard event files)
    logging_dir: str = "logs"

    def _charge(self, started: float, ref: ReferenceLogps) -> ReferenceLogps:
        self.ref_spent["s"] += time.perf_counter() - started
        self.ref_spent["tokens"] += ref.tokens
        return ref

    def train_options(self, spec: RunSpec) -> dict[str, Any]:
        """Keyword arguments of :func:`~effalign.train.train_dpo` for logging (``report_to``)."""
        if not self.report_to:
            return {}
        return {"report_to": tuple(self.report_to), "logging_dir": str(Path(self.logging_dir).expanduser() / spec.key)}

    def after_run(self, spec: RunSpec, model: Any, tokenizer: Any, metrics: Mapping[str, Any]) -> None:
        """Save the trained policy when ``save_model`` is set (:func:`effalign.train.save_policy`)."""
        from .runs import is_main_process

        if self.save_model and is_main_process():  # one copy under a multi-process launch
            from .train import save_policy

            target = Path(self.save_model).expanduser() / spec.key
            if target.exists():  # an earlier save of this run key (an interrupted grid, a rerun)
                warnings.warn(f"{target} holds an earlier save of run {spec.key}; it is replaced", stacklevel=2)
            save_policy(model, tokenizer, target, spec=spec.to_dict(), key=spec.key, metrics=metrics, replace=True)

    def load(self, source: str, split: str | None = None, **hub: Any) -> PreferenceData:
        """A data source (``hub``: :data:`HUB_DATA_KEYS` of a hub data set), read once per process."""
        key = (source, split, tuple(sorted(hub.items())))
        if key not in self.sources:
            self.sources[key] = _load_source(source, split, **hub)
        return self.sources[key]

    def splits(self, data_spec: Mapping[str, Any], seed: int = 0) -> Splits:
        """Pool, evaluation and validation pairs of a spec's ``data`` for a run seed (cached)."""
        key = json.dumps(dict(data_spec), sort_keys=True) + (f"|{seed}" if data_spec.get("pool_per_seed") else "")
        if key not in self.data:
            self.data[key] = load_splits(data_spec, seed, loader=self.load)
        return self.data[key]

    def split(self, data_spec: Mapping[str, Any], seed: int = 0) -> tuple[PreferenceData, PreferenceData]:
        """Pool and evaluation pairs (see :meth:`splits`)."""
        s = self.splits(data_spec, seed)
        return s.pool, s.eval

    def base_policy(self, name: str, lora: bool) -> tuple[Any, Any]:
        """The untrained policy as training sees it (bf16 for LoRA, float32 for full fine-tuning)."""
        key = (name, lora)
        if key not in self.policies:
            self.policies[key] = prepare_policy(name, DPOTrainConfig(lora=lora))
        return self.policies[key]

    def logps(self, pairs: PreferenceData, model: str, config: DPOTrainConfig, progress: bool) -> ReferenceLogps:
        """Reference log-probs of ``pairs`` (disk-cached per pair, so one pool's numbers serve
        every subset of it and every pool sharing its pairs; kept here per set of pairs)."""
        key = (pairs.fingerprint(), model, config.lora, config.tokenize)
        if key not in self.refs:
            started = time.perf_counter()
            base = self.base_policy(model, config.lora)
            self.refs[key] = self._charge(started, reference_logps(pairs, base, config=config.tokenize, batch_size=8,
                                                                   progress=progress))
        return self.refs[key]

    def eval_logps(self, pairs: PreferenceData, model: str, config: DPOTrainConfig, batch_size: int,
                   progress: bool) -> ReferenceLogps:
        """Reference log-probs of evaluation pairs, computed here in the very batches the policy's
        evaluation uses (length-sorted, ``batch_size``), not read from the disk cache.

        bf16 log-probs depend on the batch they are computed in (measured on SmolLM2-135M, HH
        pairs at 64 + 48 tokens: 0.28 nats per sequence on average between batches of 16 and 1,
        an implicit-reward noise of SD 0.045 per pair at β = 0.1; float32 agrees to 1e-5), so
        reference and policy must share their batches: then the untrained policy ties exactly on
        every pair and the evaluation's rounding largely cancels.
        """
        key = ("eval", pairs.fingerprint(), model, config.lora, config.tokenize, batch_size)
        if key not in self.refs:
            started = time.perf_counter()
            base = self.base_policy(model, config.lora)
            self.refs[key] = self._charge(started, reference_logps(pairs, base, config=config.tokenize,
                                                                   batch_size=batch_size, cache=False,
                                                                   progress=progress))
        return self.refs[key]


#: ``data`` keys passed to :func:`effalign.data.load_preferences` for a hub ``source``
HUB_DATA_KEYS = ("config", "data_dir", "revision")


def _prompt_groups(data: PreferenceData) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, pair in enumerate(data):
        groups.setdefault(normalise_prompt(pair), []).append(i)
    return list(groups.values())


def _load_source(source: str, split: str | None = None, **hub: Any) -> PreferenceData:
    return load_preferences(source, split=split, **hub)


def load_splits(data_spec: Mapping[str, Any], seed: int = 0, *,
                loader: Callable[..., PreferenceData] | None = None) -> Splits:
    """Load a spec's pool, evaluation and validation pairs for run seed ``seed`` (see the module docstring).

    Without ``pool_per_seed`` and ``val_size`` the split is exactly that of earlier versions
    (stored runs stay reproducible): the pool is the first ``pool_size`` pairs of a permutation
    drawn with ``split_seed``. Otherwise a generator seeded with ``split_seed`` (and the run's
    seed when ``pool_per_seed``) first draws the validation prompts, then the pool from the rest.
    ``loader(source, split, **hub_keys)`` reads a source (default :func:`effalign.data.load_preferences`).
    """
    unknown = set(data_spec) - DATA_FIELDS
    if unknown:
        raise ValueError(f"unknown data fields {sorted(unknown)}; known: {sorted(DATA_FIELDS)}")
    load = loader or _load_source
    split_seed = int(data_spec.get("split_seed", 0))
    data = load(data_spec["source"], data_spec.get("split"),
                **{k: data_spec[k] for k in HUB_DATA_KEYS if data_spec.get(k)})
    if data_spec.get("eval_source"):
        rest, ev = data, load(data_spec["eval_source"], data_spec.get("eval_split"))
        if data_spec.get("eval_size") is not None and int(data_spec["eval_size"]) < len(ev):
            keep = np.random.default_rng(split_seed).permutation(len(ev))[: int(data_spec["eval_size"])]
            ev = ev.subset(sorted(keep.tolist()))
    else:
        rest, ev = split_by_prompt(data, data_spec.get("eval_size", 300), seed=split_seed)
    pool_size = int(data_spec["pool_size"]) if data_spec.get("pool_size") else None
    val = rest.subset([])
    if not data_spec.get("pool_per_seed") and not data_spec.get("val_size"):
        if pool_size:  # the original fixed pool
            order = np.random.default_rng(split_seed).permutation(len(rest))[:pool_size]
            rest = rest.subset(sorted(order.tolist()))
        return Splits(rest, ev, val)
    rng = np.random.default_rng([split_seed, int(seed)] if data_spec.get("pool_per_seed") else split_seed)
    val_size = data_spec.get("val_size")
    if val_size:
        n_val = int(val_size) if float(val_size) >= 1 else int(round(float(val_size) * (pool_size or len(rest))))
        groups = _prompt_groups(rest)
        val_idx: list[int] = []
        for g in rng.permutation(len(groups)):
            if len(val_idx) >= n_val:
                break
            val_idx.extend(groups[g])
        taken = set(val_idx)
        val = rest.subset(sorted(val_idx))
        rest = rest.subset([i for i in range(len(rest)) if i not in taken])
    if pool_size:
        if pool_size > len(rest):
            raise ValueError(f"data {data_spec['source']!r}: pool_size {pool_size} but only {len(rest)} pairs lie "
                             f"outside the evaluation{' and validation' if len(val) else ''} set")
        rest = rest.subset(sorted(rng.permutation(len(rest))[:pool_size].tolist()))
    return Splits(rest, ev, val)


def load_split(data_spec: Mapping[str, Any], seed: int = 0) -> tuple[PreferenceData, PreferenceData]:
    """A spec's pool and evaluation pairs for run seed ``seed`` (see :func:`load_splits`)."""
    s = load_splits(data_spec, seed)
    return s.pool, s.eval


def select_subset(spec: RunSpec, pool: PreferenceData, pool_ref: ReferenceLogps) -> tuple[np.ndarray, dict[str, Any]]:
    """Indices chosen by the spec's sampler (all of the pool when the budget is the pool)."""
    from .samplers import get_sampler

    budget = len(pool) if spec.budget is None else int(spec.budget)
    if budget == len(pool):
        return np.arange(len(pool)), {"sampler": "full"}
    params = dict(spec.sampler_params)
    if spec.sampler.startswith("ref_margin"):
        params.setdefault("logps", pool_ref)  # same tokenisation as training
        params.setdefault("max_completion_tokens", DPOTrainConfig.from_dict(dict(spec.train)).max_completion_tokens)
    if spec.sampler == "difficulty":
        params.setdefault("policy", spec.model)
    sampler = get_sampler(spec.sampler, **params)
    idx = sampler.select(pool, budget, spec.seed)
    info: dict[str, Any] = {"sampler": repr(sampler), "metadata": sampler.metadata()}
    if hasattr(sampler, "component_budget_"):
        info["component_budget"] = np.asarray(sampler.component_budget_).tolist()
    return idx, info


def testbed_eval_prompts(data_spec: Mapping[str, Any]) -> list[Any]:
    """The testbed's held-out prompts a spec evaluates: all of them, or a random sample of
    ``gen_n`` drawn with ``split_seed`` (the same sample for every run seed), in file order."""
    from .testbed import load_eval_prompts

    prompts = load_eval_prompts()
    n = data_spec.get("gen_n")
    if n and int(n) < len(prompts):
        keep = np.random.default_rng(int(data_spec.get("split_seed", 0))).permutation(len(prompts))[: int(n)]
        prompts = [prompts[i] for i in sorted(keep.tolist())]
    return prompts


def _testbed_generation(ctx: Context, spec: RunSpec, model: Any, tokenizer: Any, progress: bool
                        ) -> tuple[dict[str, Any], dict[str, list[Any]], int]:
    from .evaluate import generate, generation_eval
    from .testbed import gold_reward_fn

    ev = {**DEFAULT_EVAL, **spec.eval}
    prompts = testbed_eval_prompts(spec.data)
    metas = [p.to_metadata() for p in prompts]
    messages = [p.messages() for p in prompts]

    def reward(msgs: Sequence[Any], responses: Sequence[str]) -> list[float]:
        return gold_reward_fn(metas, responses)

    ref_model, _ = ctx.base_policy(spec.model, True)
    key = json.dumps([spec.model, [m for m in messages], ev["max_new_tokens"], ev["gen_batch_size"]])
    if key not in ctx.ref_gen:
        responses = generate(ref_model, tokenizer, messages, max_new_tokens=ev["max_new_tokens"],
                             batch_size=ev["gen_batch_size"], progress=progress)
        ctx.ref_gen[key] = (responses, reward(messages, responses))
    ref_responses, ref_scores = ctx.ref_gen[key]
    result = generation_eval(
        model, tokenizer, messages, reward, ref_model=ref_model, ref_responses=ref_responses, ref_scores=ref_scores,
        max_new_tokens=ev["max_new_tokens"], kl_samples=ev["kl_samples"], n_boot=ev["n_boot"], seed=spec.seed,
        batch_size=ev["gen_batch_size"], progress=progress,
    )
    return result.to_dict(), result.items(messages), result.tokens


def cost_breakdown(*, run_s: float, select_s: float, reference_s: float, reference_tokens: int, training_s: float,
                   training_tokens: int, evaluation_s: float, evaluation_tokens: int, generation_s: float,
                   generation_tokens: int) -> dict[str, float | int]:
    """A run's cost per part as flat metrics ``cost_<part>_s`` and ``cost_<part>_tokens``.

    reference: reference log-probs computed or read from the cache during the run (pool, validation and
    evaluation pairs; zero when an earlier run of the process computed them); selection: the sampler
    (its embeddings included); training: the trainer's loop; evaluation: the policy's held-out pair
    log-probs; generation: greedy answers, the reference's answers (first run of a process only),
    KL samples and their scoring, gold rewards; other: the rest (policy loading, LoRA merge, bootstrap).
    Tokens are those run through a model (padding excluded): prompt + completions for log-probs and
    training, new tokens decoded for generation; selection counts none (its embeddings are texts).
    ``cost_run_s`` is the whole run.
    """
    out: dict[str, float | int] = {
        "cost_run_s": round(run_s, 2),
        "cost_reference_s": round(reference_s, 2), "cost_reference_tokens": int(reference_tokens),
        "cost_selection_s": round(select_s, 2),
        "cost_training_s": round(training_s, 2), "cost_training_tokens": int(training_tokens),
        "cost_evaluation_s": round(evaluation_s, 2), "cost_evaluation_tokens": int(evaluation_tokens),
        "cost_generation_s": round(generation_s, 2), "cost_generation_tokens": int(generation_tokens),
    }
    known = reference_s + select_s + training_s + evaluation_s + generation_s
    out["cost_other_s"] = round(max(run_s - known, 0.0), 2)
    return out


def run_experiment(spec: RunSpec, ctx: Context | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Select, train and evaluate one spec; returns metrics, with ``items`` (per-item outcomes)
    and ``extra`` (curves, selection, provenance of the data) entries that the store keeps apart."""
    from .evaluate import preference_accuracy, reference_preference_accuracy

    ctx = ctx or Context()
    run_t0 = time.perf_counter()
    ref_before = dict(ctx.ref_spent)
    config = DPOTrainConfig.from_dict({**spec.train, "seed": spec.seed})
    ev = {**DEFAULT_EVAL, **spec.eval}
    torch.manual_seed(spec.seed)
    splits = ctx.splits(spec.data, spec.seed)
    pool, eval_pairs = splits.pool, splits.eval
    pool_ref = ctx.logps(pool, spec.model, config, progress)
    val_ref = ctx.logps(splits.val, spec.model, config, progress) if len(splits.val) else None

    t0 = time.perf_counter()
    idx, select_info = select_subset(spec, pool, pool_ref)
    select_s = time.perf_counter() - t0
    subset = pool.subset(idx)
    sub_ref = ReferenceLogps(pool_ref.chosen[idx], pool_ref.rejected[idx])

    result = train_dpo(spec.model, subset, config, ref=sub_ref, val_pairs=splits.val if len(splits.val) else None,
                       val_ref=val_ref, progress=progress, **ctx.train_options(spec))
    model, tokenizer = result.model, result.tokenizer
    t0 = time.perf_counter()
    metrics: dict[str, Any] = {"n_train": len(subset), "pool_size": len(pool), "fraction": len(subset) / len(pool)}
    items: dict[str, Any] = {}
    cost = {"evaluation_s": 0.0, "evaluation_tokens": 0, "generation_s": 0.0, "generation_tokens": 0}
    if ev["pairs"]:
        eval_ref = ctx.eval_logps(eval_pairs, spec.model, config, ev["batch_size"], progress)
        t_eval = time.perf_counter()
        pref = preference_accuracy(model, tokenizer, eval_pairs, eval_ref, beta=config.beta, config=config.tokenize,
                                   batch_size=ev["batch_size"], n_boot=ev["n_boot"], seed=spec.seed,
                                   progress=progress)
        cost.update(evaluation_s=time.perf_counter() - t_eval, evaluation_tokens=pref.tokens)
        items["pairs"] = pref.items(eval_pairs)
        metrics.update(pref.to_dict(), ref_pref_accuracy=reference_preference_accuracy(eval_ref))
    metrics["select_s"] = round(select_s, 2)
    metrics.update({k: v for k, v in result.metrics.items() if k != "truncation"})
    if ev["generation"] and spec.data.get("gen_prompts") == "testbed":
        t_gen = time.perf_counter()
        gen_metrics, items["prompts"], gen_tokens = _testbed_generation(ctx, spec, model, tokenizer, progress)
        cost.update(generation_s=time.perf_counter() - t_gen, generation_tokens=gen_tokens)
        metrics.update(gen_metrics)
    metrics["eval_s"] = round(time.perf_counter() - t0, 2)
    metrics.update(cost_breakdown(
        run_s=time.perf_counter() - run_t0, select_s=select_s,
        reference_s=ctx.ref_spent["s"] - ref_before["s"], reference_tokens=ctx.ref_spent["tokens"] - ref_before["tokens"],
        training_s=float(result.metrics["wall_s"]), training_tokens=int(result.metrics["tokens"]), **cost))
    metrics["items"] = items
    metrics["extra"] = {
        "loss_curve": result.loss_curve,
        "val_curve": result.val_curve,
        "selected": np.asarray(idx).tolist(),
        "select_info": select_info,
        "truncation": result.metrics["truncation"],
        "data_fingerprint": {"pool": pool.fingerprint(), "eval": eval_pairs.fingerprint(),
                             "val": splits.val.fingerprint() if len(splits.val) else None},
    }
    ctx.after_run(spec, model, tokenizer, metrics)
    return metrics


def run_specs(specs: Iterable[RunSpec], store: ResultStore | str | Path, *, progress: bool = True,
              ctx: Context | None = None, max_runs: int | None = None,
              start_by: float | None = None) -> list[dict[str, Any]]:
    """Run every spec not yet in ``store`` (resumable); returns all their records. ``max_runs`` and
    ``start_by`` (a ``time.time()`` deadline) stop it early, as in :func:`effalign.runs.run_grid`.

    Under ``accelerate launch`` / ``torchrun`` every process runs this together: the processes join
    first, rank 0 decides which runs are due, each run trains data-parallel, and only rank 0 stores.
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    ctx = ctx or Context()
    specs = list(specs)
    check = LegacyCheck()
    find_records(specs, store, check)
    check.warn()  # before hours of training: which stored runs are not used, and why
    join_processes()
    return run_grid(specs, lambda s: run_experiment(s, ctx, progress=progress), store, progress=progress,
                    desc="experiment grid", adopt=check, max_runs=max_runs, start_by=start_by)


def join_processes() -> None:
    """Under a multi-process launch (``WORLD_SIZE`` > 1), join the process group now (gloo on CPU,
    NCCL on GPUs, through accelerate), so the processes can agree on the runs before the first one."""
    from .train import world_size

    if world_size() > 1:
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())


# --------------------------------------------------------------------------- shards (several machines)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` (shard ``i`` of ``N``, counted from 0) as ``(i, N)``."""
    try:
        shard, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/N with whole numbers, e.g. 0/4") from None
    if count < 1 or not 0 <= shard < count:
        raise ValueError(f"--shard {text!r}: need 0 <= i < N (shards are counted from 0)")
    return shard, count


def shard_of(key: str, count: int) -> int:
    """The shard that runs the cell with run key ``key``: the key read as a number, modulo ``count``.

    It depends on the cell alone, not on the grid files, their order or the other cells, so N
    runners started on the same grids (or even on different subsets of them) never train one cell
    twice, and every cell falls to exactly one shard. Shards get equal shares on average.
    """
    return int(key, 16) % count


def shard_specs(specs: Iterable[RunSpec], shard: int, count: int) -> list[RunSpec]:
    """The specs that shard ``shard`` of ``count`` runs (order kept)."""
    return [s for s in specs if shard_of(s.key, count) == shard]


def shard_writer(shard: int, count: int) -> str:
    """The store writer name of a shard: its records go to ``<experiment>@shard-<i>-of-<N>.jsonl``."""
    return f"shard-{shard}-of-{count}"


def expand_grid(grid: Mapping[str, Any]) -> list[RunSpec]:
    """Specs from a grid: experiment, data, model, samplers, budgets or fractions, seeds, train, eval.

    ``samplers`` is a list of names or ``{name, params}`` mappings; ``fractions`` are converted to
    budgets with the pool size (``1.0`` means the whole pool, budget ``None``).
    """
    required = {"experiment", "data", "samplers", "seeds"}
    missing = required - set(grid)
    if missing:
        raise ValueError(f"grid is missing {sorted(missing)}")
    if ("budgets" in grid) == ("fractions" in grid):
        raise ValueError("a grid needs exactly one of 'budgets' or 'fractions'")
    budgets: list[int | None]
    if "fractions" in grid:
        pool, _ = load_split(grid["data"])
        budgets = [None if float(f) >= 1.0 else max(1, round(float(f) * len(pool))) for f in grid["fractions"]]
    else:
        budgets = [None if b in (None, "full") else int(b) for b in grid["budgets"]]
    fingerprint = spec_fingerprint(grid["data"], grid.get("model", "smollm2-135m-instruct"))
    specs = []
    for sampler, budget, seed in itertools.product(grid["samplers"], budgets, grid["seeds"]):
        name, params = (sampler, {}) if isinstance(sampler, str) else (sampler["name"], sampler.get("params", {}))
        if budget is None and name != "random":
            continue  # the full pool is the same for every sampler: one run per seed
        specs.append(
            RunSpec(
                experiment=grid["experiment"], data=dict(grid["data"]),
                model=grid.get("model", "smollm2-135m-instruct"), sampler=name if budget is not None else "full",
                budget=budget, seed=int(seed), sampler_params=dict(params), train=dict(grid.get("train", {})),
                eval=dict(grid.get("eval", {})), fingerprint=fingerprint,
            )
        )
    return specs


def spec_fingerprint(data: Mapping[str, Any], model: str) -> dict[str, str]:
    """Content fingerprints of what a run reads: ``source``, ``eval_source`` and the testbed's
    evaluation prompts (``gen_prompts``) by :func:`effalign.data.source_fingerprint` (file hash,
    or hub id and revision), and the policy by :func:`effalign.models.policy_fingerprint`."""
    from .models import policy_fingerprint

    out = {"source": source_fingerprint(data["source"], data.get("revision"))}
    if data.get("eval_source"):
        out["eval_source"] = source_fingerprint(data["eval_source"])
    if data.get("gen_prompts") == "testbed":
        from .testbed import default_dir

        out["gen_prompts"] = source_fingerprint(str(default_dir() / "eval_prompts.jsonl.gz"))
    out["model"] = policy_fingerprint(model)
    return out


#: policies whose weights a name pins (a packaged file, a fixed recipe): records made before run keys
#: carried fingerprints are used for them when their data checks out
PINNED_MODELS = ("smollm2-135m-instruct", "smollm2", "tiny-random")


@functools.lru_cache(maxsize=8)
def _source_for_check(source: str, split: str | None, hub: tuple[tuple[str, Any], ...], content: str) -> PreferenceData:
    """A data source read once for the legacy checks (``content``: the fingerprints of the spec's
    files, so a changed file is read again)."""
    return _load_source(source, split, **dict(hub))


@functools.lru_cache(maxsize=1024)
def _pair_fingerprints(data_json: str, seed: int, content: str) -> dict[str, str | None]:
    """Fingerprints of the pool, evaluation and validation pairs that a data mapping gives for run
    seed ``seed``, exactly as :func:`run_experiment` records them (``extra.data_fingerprint``)."""

    def load(source: str, split: str | None = None, **hub: Any) -> PreferenceData:
        return _source_for_check(source, split, tuple(sorted(hub.items())), content)

    splits = load_splits(json.loads(data_json), seed, loader=load)
    return {"pool": splits.pool.fingerprint(), "eval": splits.eval.fingerprint(),
            "val": splits.val.fingerprint() if len(splits.val) else None}


class StaleRunWarning(UserWarning):
    """Stored runs were made from other data (or an unpinned model) than a grid's now; they run again."""


def legacy_mismatch(spec: RunSpec, record: Mapping[str, Any]) -> str | None:
    """Why a record stored before run keys carried fingerprints (under ``spec.legacy_key``) is not
    the run ``spec`` describes, or None when it is: its policy must be pinned by its name
    (:data:`PINNED_MODELS`) and the pool, evaluation and validation pairs it recorded
    (``extra.data_fingerprint``) those that the spec's data gives now for the spec's seed (with
    ``data.pool_per_seed`` every seed has its own pool and validation split)."""
    if spec.model.lower() not in PINNED_MODELS:
        return (f"were made before run keys carried the model's fingerprint, and {spec.model!r} is not pinned by "
                "its name")
    recorded = (record.get("extra") or {}).get("data_fingerprint") or {}
    content = json.dumps({k: v for k, v in spec.fingerprint.items() if k != "model"}, sort_keys=True)
    seed = int(spec.seed) if spec.data.get("pool_per_seed") else 0
    now = _pair_fingerprints(json.dumps(dict(spec.data), sort_keys=True), seed, content)
    parts = ["pool", "eval"] + (["val"] if "val" in recorded or now["val"] is not None else [])
    changed = [part for part in parts if recorded.get(part) != now[part]]
    if changed:  # the reason names the parts only, so that one warning covers a grid's seeds
        return f"were made from other data ({' and '.join(changed)} pairs differ from those the data gives now)"
    return None


def legacy_record_matches(spec: RunSpec, record: Mapping[str, Any]) -> bool:
    """Whether a record stored before run keys carried fingerprints is ``spec``'s run (see
    :func:`legacy_mismatch`)."""
    return legacy_mismatch(spec, record) is None


class LegacyCheck:
    """The ``adopt`` test of :func:`effalign.runs.find_records` (:func:`legacy_mismatch`), which
    remembers its decisions and the records it refused; :meth:`warn` says once per experiment and
    reason how many stored runs are not used (:class:`StaleRunWarning`)."""

    def __init__(self) -> None:
        self.decided: dict[tuple[str, str], str | None] = {}
        self.refused: dict[tuple[str, str], list[str]] = {}

    def __call__(self, spec: RunSpec, record: Mapping[str, Any]) -> bool:
        pair = (spec.key, str(record["key"]))
        if pair not in self.decided:
            reason = self.decided[pair] = legacy_mismatch(spec, record)
            if reason:
                self.refused.setdefault((spec.experiment, reason), []).append(str(record["key"]))
        return self.decided[pair] is None

    @property
    def stale(self) -> int:
        """Stored runs refused so far."""
        return sum(len(keys) for keys in self.refused.values())

    def warn(self) -> None:
        """One :class:`StaleRunWarning` per experiment and reason (then forget them)."""
        for (experiment, reason), keys in self.refused.items():
            shown = ", ".join(keys[:3]) + (", …" if len(keys) > 3 else "")
            warnings.warn(StaleRunWarning(
                f"{len(keys)} stored run(s) of {experiment} ({shown}) {reason}; they are not used, and their "
                "cells run again under new keys"), stacklevel=3)
        self.refused.clear()


def load_grid(path: str | Path) -> dict[str, Any]:
    import yaml

    grid = yaml.safe_load(Path(path).read_text())
    return validate_grid(grid, path, eval_defaults=DEFAULT_EVAL)  # types checked, numbers-as-text converted


def rerun(key: str, store: ResultStore | str | Path, *, progress: bool = True,
          threads: int | None = None, save_model: str | None = None) -> dict[str, Any]:
    """Re-run a stored spec from scratch (not stored again); returns stored and new metrics, and
    ``other_seeds``: the stored metrics of the same cell with other seeds (the seed-to-seed spread).

    On a CPU, ``threads`` defaults to the thread count the record was made with (its provenance),
    since bf16 sums depend on how the work is split. ``save_model`` saves the re-trained policy
    to ``<save_model>/<key>`` (:func:`effalign.train.save_policy`).
    """
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    record = store.get(key)
    if record is None:
        raise ValueError(f"no stored run with key {key!r} in {store.path}")
    spec = RunSpec.from_dict(record["spec"])
    threads = threads or (record.get("provenance") or {}).get("device", {}).get("torch_threads")
    if threads and not torch.cuda.is_available():
        torch.set_num_threads(int(threads))
    new = run_experiment(spec, Context(save_model=save_model), progress=progress)
    new.pop("extra", None)
    new.pop("items", None)
    others = [r["metrics"] for r in store.records(spec.experiment)
              if r["key"] != key and RunSpec.from_dict(r["spec"]).replace(seed=spec.seed).legacy_key == spec.legacy_key]
    return {"key": key, "spec": spec.to_dict(), "stored": record["metrics"], "new": new, "other_seeds": others,
            "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- records of a grid (notebooks)


def _as_store(store: ResultStore | str | Path) -> ResultStore:
    return store if isinstance(store, ResultStore) else ResultStore(store)


def stored_records(specs: Iterable[RunSpec], store: ResultStore | str | Path) -> list[dict[str, Any]]:
    """The stored records of ``specs`` in grid order (specs without a record left out, duplicates
    once; a record from before run keys carried fingerprints counts when
    :func:`legacy_record_matches` accepts it)."""
    check = LegacyCheck()
    found = find_records(specs, _as_store(store), check)
    check.warn()
    return list(found.values())


def missing_specs(specs: Iterable[RunSpec], store: ResultStore | str | Path) -> list[RunSpec]:
    """Specs of the grid that have no stored record yet (duplicates once)."""
    specs = list(specs)
    check = LegacyCheck()
    have = set(find_records(specs, _as_store(store), check))
    check.warn()
    out, seen = [], set()
    for s in specs:
        if s.key not in have and s.key not in seen:
            seen.add(s.key)
            out.append(s)
    return out


def collect(specs: Iterable[RunSpec], store: ResultStore | str | Path, *, run: bool = True,
            progress: bool = False) -> list[dict[str, Any]]:
    """Records of ``specs``: trains the missing ones first (``run=True``), else only reads the store.
    Stored runs are never recomputed; with ``progress=True`` there is a bar for the grid and one per run."""
    specs = list(specs)
    if run and missing_specs(specs, store):
        check_training_store(_as_store(store))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|trl|peft|accelerate|torch)\b.*")
            run_specs(specs, _as_store(store), progress=progress)
    return stored_records(specs, store)


def check_training_store(store: ResultStore) -> None:
    """Refuse to train into the repository's committed ``results/`` from a notebook or
    :func:`collect`: those runs come from ``make experiments``; a re-run with other settings
    belongs in a store of the user's (:func:`effalign.book.user_store`)."""
    committed = repo_dir() / "results"
    if Path(store.path).expanduser().resolve() == committed.resolve():
        raise ValueError(f"refusing to train into the committed run store {committed}: give the runs a store of "
                         "your own (a profile's `store`, `-p store ~/.cache/effalign/runs/mine` for papermill); "
                         "the committed runs are trained by `make experiments`")


def availability(specs: Mapping[str, Sequence[RunSpec]], store: ResultStore | str | Path,
                 check: LegacyCheck | None = None) -> pd.DataFrame:
    """Per grid: runs in the grid and runs stored; a last row ``all (distinct runs)`` counts each run
    once (grids share runs, e.g. a random subset in both the scaling and the sampler grid). Stored
    runs made from other data are not counted: one :class:`StaleRunWarning` says so, unless a
    ``check`` is given (its :attr:`LegacyCheck.stale` counts them for the caller)."""
    own = check is None
    store, check = _as_store(store), check or LegacyCheck()
    rows, every = [], {}
    for name, sp in specs.items():
        sp = list(sp)
        every.update((s.key, s) for s in sp)
        rows.append({"grid": name, "runs": len({s.key for s in sp}), "stored": len(find_records(sp, store, check))})
    if not rows:
        return pd.DataFrame(columns=["runs", "stored"])
    rows.append({"grid": "all (distinct runs)", "runs": len(every),
                 "stored": len(find_records(every.values(), store, check))})
    if own:
        check.warn()
    return pd.DataFrame(rows).set_index("grid")
