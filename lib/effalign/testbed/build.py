"""Generate the testbed data set: sample responses, score them, assemble pairs, write a datasheet.

:func:`build_testbed` runs three resumable phases and one assembly step:

1. greedy responses of the reference policy for every evaluation prompt (the baseline that
   alignment should improve);
2. ``k`` sampled responses per prompt (the training pool first, then the evaluation prompts), in
   batches of ``batch_size`` prompts x ``k`` sequences; the sampling seed of batch ``b`` is
   derived from ``(seed, b)``, so a batch gives the same responses whether the run was
   interrupted or not (for a fixed ``batch_size``);
3. assembly: every response is (re)scored with the gold reward (version
   :data:`~effalign.testbed.constraints.REWARD_VERSION`, content gate included), chosen = highest reward,
   rejected = lowest (ties broken by the lower sample index; empty responses, which score 0,
   are never picked), prompts whose non-empty samples all tie are dropped and counted, and the
   files below are written with deterministic bytes.

Generated responses are appended, one JSON line per prompt, to ``<out>/work/*.jsonl`` with a
single ``write`` + ``fsync`` per batch. On resume a torn last line is cut off, prompts already
present are skipped and never written twice. ``work/`` is a cache: the committed
``samples.jsonl.gz`` holds the same records, and a build whose ``work/`` is missing re-seeds
it from there, so ``python -m effalign testbed build`` on a fresh clone only re-assembles.

Outputs in ``out_dir``: ``train.jsonl.gz`` and ``eval.jsonl.gz`` (TRL conversational pairs with
metadata), ``eval_prompts.jsonl.gz`` (every evaluation prompt with its constraints, greedy
response and reward), ``samples.jsonl.gz`` (all samples and scores), ``datasheet.json`` and
``DATASHEET.md`` (with the content gate's before/after figures, :mod:`effalign.testbed.audit`).
Re-scoring after a reward change needs no generation: ``python -m effalign testbed build --out
data/testbed`` re-assembles from the committed samples.

The prompt is a single user turn; SmolLM2's chat template then inserts its default system
prompt ("You are a helpful AI assistant named SmolLM, trained by Hugging Face"). We keep that
default, so generation, DPO training and evaluation all see the same rendered prompt.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audit import render_audit, reward_gate_audit
from .constraints import REGISTRY, REWARD_VERSION, gate_failure, satisfied
from .prompts import GENERATOR_VERSION, KIND_WEIGHTS, N_CONSTRAINTS_PROBS, PromptSpec, generate_prompts

SAMPLES_LOG = "samples.jsonl"
GREEDY_LOG = "greedy.jsonl"


@dataclass(frozen=True)
class TestbedConfig:
    """All knobs of a testbed build, with the defaults used for the committed data set."""

    n_prompts: int = 3200
    n_eval: int = 400
    k: int = 4
    seed: int = 2411
    batch_size: int = 16
    max_new_tokens: int = 96
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    policy: str = "smollm2-135m-instruct"
    dtype: str = "bfloat16"

    __test__ = False  # not a pytest class

    def generation_key(self) -> dict[str, Any]:
        """The settings that determine generated text (a resume must not change them)."""
        keys = ("k", "seed", "batch_size", "max_new_tokens", "temperature", "top_p", "top_k", "policy", "dtype")
        return {**{k: getattr(self, k) for k in keys}, "generator_version": GENERATOR_VERSION}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TestbedReport:
    """What a build produced (also stored, with more detail, in ``datasheet.json``)."""

    out_dir: str
    n_prompts: int
    n_eval: int
    n_sampled: int
    n_greedy: int
    n_train_pairs: int
    n_eval_pairs: int
    n_tied_train: int
    n_tied_eval: int
    greedy_reward_eval: float | None
    greedy_reward_eval_ci95: tuple[float, float] | None
    sample_reward_mean: float | None
    generation_seconds: float
    complete: bool
    files: dict[str, str] = field(default_factory=dict)

    __test__ = False

    def __str__(self) -> str:
        g = "n/a"
        if self.greedy_reward_eval is not None and self.greedy_reward_eval_ci95 is not None:
            lo, hi = self.greedy_reward_eval_ci95
            g = f"{self.greedy_reward_eval:.3f} (95% CI {lo:.3f}-{hi:.3f})"
        return (
            f"testbed in {self.out_dir}: {'complete' if self.complete else 'INCOMPLETE'}; "
            f"sampled {self.n_sampled}/{self.n_prompts} prompts, greedy {self.n_greedy}/{self.n_eval}; "
            f"{self.n_train_pairs} train pairs ({self.n_tied_train} tied prompts dropped), "
            f"{self.n_eval_pairs} eval pairs ({self.n_tied_eval} tied); "
            f"reference greedy gold reward on eval: {g}; generation {self.generation_seconds / 60:.1f} min"
        )


# --------------------------------------------------------------------------- crash-safe log


class AppendLog:
    """Append-only JSONL file keyed by ``id``, safe against crashes mid-write.

    :meth:`append` writes a whole batch with one ``write`` call and ``fsync``. :meth:`read`
    ignores a torn (unparseable or unterminated) last line and keeps the first record of an id;
    :meth:`repair` truncates a torn tail before new records are appended.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        with open(self.path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # torn tail
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and "id" in rec:
                    records.setdefault(rec["id"], rec)
        return records

    def repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- generation


def batch_seed(seed: int, batch_index: int, phase: str = "sample") -> int:
    """The torch seed of one generation batch (independent of resumes)."""
    salt = {"sample": 1, "greedy": 2}[phase]
    return int(np.random.SeedSequence([seed, salt, batch_index]).generate_state(1)[0])


def render_prompt(tokenizer: Any, instruction: str) -> str:
    """The chat-template text of a single-turn prompt (generation prompt appended)."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
    )


def generate_responses(
    model: Any,
    tokenizer: Any,
    instructions: Sequence[str],
    *,
    k: int = 1,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 96,
    seed: int = 0,
) -> list[list[dict[str, Any]]]:
    """Generate ``k`` responses per instruction (``k`` is ignored when greedy) in one batch.

    See :func:`effalign.generation.decode` (a KV-cached loop that drops finished sequences).
    Returns, per instruction, dicts ``{"text", "n_tokens", "finished"}``.
    """
    from ..generation import decode

    texts = [render_prompt(tokenizer, x) for x in instructions]
    return decode(model, tokenizer, texts, k=k, do_sample=do_sample, temperature=temperature, top_p=top_p,
                  top_k=top_k, max_new_tokens=max_new_tokens, seed=seed)


def _batches(items: Sequence[PromptSpec], size: int) -> Iterator[tuple[int, list[PromptSpec]]]:
    for b, start in enumerate(range(0, len(items), size)):
        yield b, list(items[start : start + size])


def _run_phase(
    phase: str,
    prompts: Sequence[PromptSpec],
    log: AppendLog,
    model: Any,
    tokenizer: Any,
    cfg: TestbedConfig,
    *,
    limit: int | None,
    progress: bool,
) -> int:
    """Generate the missing records of one phase; returns how many prompts were generated."""
    from tqdm.auto import tqdm

    log.repair()
    done = set(log.read())
    size = cfg.batch_size if phase == "sample" else cfg.batch_size * cfg.k
    todo = [(b, batch) for b, batch in _batches(prompts, size) if any(p.id not in done for p in batch)]
    n_missing = sum(1 for p in prompts if p.id not in done)
    total = n_missing if limit is None else min(limit, n_missing)
    generated = 0
    bar = tqdm(total=total, desc=f"testbed {phase}", unit="prompt", disable=not progress, dynamic_ncols=True)
    try:
        for b, batch in todo:
            if limit is not None and generated >= limit:
                break
            start = time.perf_counter()
            outs = generate_responses(
                model,
                tokenizer,
                [p.instruction for p in batch],
                k=cfg.k,
                do_sample=phase == "sample",
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=cfg.top_k,
                max_new_tokens=cfg.max_new_tokens,
                seed=batch_seed(cfg.seed, b, phase),
            )
            seconds = time.perf_counter() - start
            missing = [(p, o) for p, o in zip(batch, outs) if p.id not in done]
            records = [
                {
                    "id": p.id,
                    "batch": b,
                    "responses": [x["text"] for x in o],
                    "n_tokens": [x["n_tokens"] for x in o],
                    "finished": [x["finished"] for x in o],
                    "seconds": seconds / len(batch),
                }
                for p, o in missing
            ]
            log.append(records)
            done.update(p.id for p, _ in missing)
            generated += len(missing)
            bar.update(len(missing))
            bar.set_postfix(seq_per_s=f"{len(batch) * (cfg.k if phase == 'sample' else 1) / seconds:.2f}")
    finally:
        bar.close()
    return generated


# --------------------------------------------------------------------------- assembly


def read_jsonl_gz(path: str | Path) -> list[dict[str, Any]]:
    """Read a (gzip) JSONL file into a list of dicts."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _bootstrap_ci(values: Sequence[float], seed: int, n_boot: int = 2000) -> tuple[float, float]:
    from ..evaluate import bootstrap_ci

    return bootstrap_ci(values, n_boot=n_boot, seed=seed) if len(values) else (float("nan"), float("nan"))


def _histogram(values: Iterable[float]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        key = f"{v:.3f}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _summary(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 4),
        "std": round(float(arr.std()), 4),
        "histogram": _histogram(arr.tolist()),
    }


def select_pair(scores: Sequence[float], responses: Sequence[str] | None = None) -> tuple[int, int] | None:
    """Indices (chosen, rejected): first maximum and first minimum; None if all scores tie.

    With ``responses``, empty (whitespace-only) responses are never picked (preference loaders
    drop pairs with an empty side); the remaining ones must not all tie.
    """
    idx = [i for i in range(len(scores)) if responses is None or responses[i].strip()]
    if not idx:
        return None
    hi = max(scores[i] for i in idx)
    lo = min(scores[i] for i in idx)
    if hi == lo:
        return None
    return next(i for i in idx if scores[i] == hi), next(i for i in idx if scores[i] == lo)


def score_response(prompt: PromptSpec, response: str) -> tuple[float, list[bool]]:
    """Gold reward of ``response`` (gated, see :func:`~effalign.testbed.constraints.gold_reward`)
    and the per-constraint verdicts behind it (ungated, for the checkers' statistics)."""
    verdicts = satisfied(prompt.constraints, response)
    share = sum(verdicts) / len(verdicts) if verdicts else 0.0
    return (0.0 if gate_failure(response, prompt.topic) else share), verdicts


def _assemble(
    out: Path,
    prompts: Sequence[PromptSpec],
    samples: Mapping[str, Mapping[str, Any]],
    greedy: Mapping[str, Mapping[str, Any]],
    cfg: TestbedConfig,
    provenance: Mapping[str, Any],
) -> tuple[TestbedReport, dict[str, Any]]:
    from ..data import write_jsonl_gz

    train_rows: list[dict[str, Any]] = []
    eval_rows: list[dict[str, Any]] = []
    eval_prompt_rows: list[dict[str, Any]] = []
    sample_rows: list[dict[str, Any]] = []
    sample_scores: list[float] = []
    chosen_r: list[float] = []
    rejected_r: list[float] = []
    greedy_rewards: list[float] = []
    tied = {"train": 0, "eval": 0}
    kind_hits: dict[str, list[int]] = {k: [0, 0] for k in REGISTRY}
    kind_hits_greedy: dict[str, list[int]] = {k: [0, 0] for k in REGISTRY}
    n_truncated = n_responses = 0
    seconds = 0.0
    for p in prompts:
        meta = p.to_metadata()
        g = greedy.get(p.id)
        g_info: dict[str, Any] | None = None
        if g is not None:
            seconds += float(g.get("seconds", 0.0))
            g_reward, verdicts = score_response(p, g["responses"][0])
            greedy_rewards.append(g_reward)
            for c, ok in zip(p.constraints, verdicts):
                kind_hits_greedy[c.kind][0] += int(ok)
                kind_hits_greedy[c.kind][1] += 1
            g_info = {
                "response": g["responses"][0],
                "reward": g_reward,
                "n_tokens": g["n_tokens"][0],
                "seconds": round(float(g.get("seconds", 0.0)), 4),
            }
        s = samples.get(p.id)
        scores: list[float] | None = None
        if s is not None:
            seconds += float(s.get("seconds", 0.0))
            scores = []
            for resp in s["responses"]:
                score, verdicts = score_response(p, resp)
                scores.append(score)
                for c, ok in zip(p.constraints, verdicts):
                    kind_hits[c.kind][0] += int(ok)
                    kind_hits[c.kind][1] += 1
            sample_scores.extend(scores)
            n_responses += len(scores)
            n_truncated += sum(1 for f in s["finished"] if not f)
            sample_rows.append(
                {
                    **meta,
                    "responses": s["responses"],
                    "scores": scores,
                    "n_tokens": s["n_tokens"],
                    "finished": s["finished"],
                    "seconds": round(float(s.get("seconds", 0.0)), 4),
                    "greedy": g_info,
                }
            )
        if p.split == "eval":
            eval_prompt_rows.append(
                {
                    "prompt": p.messages(),
                    "metadata": {
                        **meta,
                        "greedy": {k: v for k, v in g_info.items() if k != "seconds"} if g_info else None,
                        "sample_scores": scores,
                    },
                }
            )
        if scores is None:
            continue
        pick = select_pair(scores, s["responses"])
        if pick is None:
            tied[p.split] += 1
            continue
        ci, ri = pick
        chosen_r.append(scores[ci])
        rejected_r.append(scores[ri])
        row = {
            "prompt": p.messages(),
            "chosen": [{"role": "assistant", "content": s["responses"][ci]}],
            "rejected": [{"role": "assistant", "content": s["responses"][ri]}],
            "metadata": {
                **meta,
                "scores": scores,
                "chosen_index": ci,
                "rejected_index": ri,
                "chosen_reward": scores[ci],
                "rejected_reward": scores[ri],
                "reward_version": REWARD_VERSION,
                "policy": cfg.policy,
                "seed": cfg.seed,
            },
        }
        (eval_rows if p.split == "eval" else train_rows).append(row)

    files = {
        "train": out / "train.jsonl.gz",
        "eval": out / "eval.jsonl.gz",
        "eval_prompts": out / "eval_prompts.jsonl.gz",
        "samples": out / "samples.jsonl.gz",
    }
    write_jsonl_gz(files["train"], train_rows)
    write_jsonl_gz(files["eval"], eval_rows)
    write_jsonl_gz(files["eval_prompts"], eval_prompt_rows)
    write_jsonl_gz(files["samples"], sample_rows)

    n_eval = sum(1 for p in prompts if p.split == "eval")
    ci95 = _bootstrap_ci(greedy_rewards, cfg.seed) if greedy_rewards else None
    complete = len(samples.keys() & {p.id for p in prompts}) == len(prompts) and len(greedy_rewards) == n_eval
    report = TestbedReport(
        out_dir=str(out),
        n_prompts=len(prompts),
        n_eval=n_eval,
        n_sampled=len(sample_rows),
        n_greedy=len(greedy_rewards),
        n_train_pairs=len(train_rows),
        n_eval_pairs=len(eval_rows),
        n_tied_train=tied["train"],
        n_tied_eval=tied["eval"],
        greedy_reward_eval=float(np.mean(greedy_rewards)) if greedy_rewards else None,
        greedy_reward_eval_ci95=ci95,
        sample_reward_mean=float(np.mean(sample_scores)) if sample_scores else None,
        generation_seconds=seconds,
        complete=complete,
        files={k: str(v) for k, v in files.items()},
    )
    sheet = {
        "name": "effalign verifiable-instruction testbed",
        "complete": complete,
        "reward_version": REWARD_VERSION,
        "config": cfg.to_dict(),
        "generator": dict(provenance),
        "prompt_generator": {
            "version": GENERATOR_VERSION,
            "constraint_kinds": sorted(REGISTRY),
            "kind_weights": KIND_WEIGHTS,
            "n_constraints_probs": {str(k): v for k, v in N_CONSTRAINTS_PROBS.items()},
        },
        "counts": {
            "prompts": len(prompts),
            "eval_prompts": n_eval,
            "train_prompts": len(prompts) - n_eval,
            "prompts_sampled": len(sample_rows),
            "eval_prompts_with_greedy": len(greedy_rewards),
            "responses": n_responses,
            "responses_truncated": n_truncated,
            "train_pairs": len(train_rows),
            "eval_pairs": len(eval_rows),
            "dropped_all_tied_train": tied["train"],
            "dropped_all_tied_eval": tied["eval"],
            "constraints_per_prompt": {
                str(n): sum(1 for p in prompts if len(p.constraints) == n) for n in sorted(N_CONSTRAINTS_PROBS)
            },
        },
        "rewards": {
            "samples": _summary(sample_scores),
            "chosen": _summary(chosen_r),
            "rejected": _summary(rejected_r),
            "margin_mean": round(float(np.mean(np.subtract(chosen_r, rejected_r))), 4) if chosen_r else None,
            "greedy_eval": {
                **_summary(greedy_rewards),
                "ci95_bootstrap": [round(x, 4) for x in ci95] if ci95 else None,
            },
        },
        "reward_gate": reward_gate_audit(sample_rows),
        "kind_satisfaction": {
            k: {
                "sampled": round(kind_hits[k][0] / kind_hits[k][1], 4) if kind_hits[k][1] else None,
                "sampled_n": kind_hits[k][1],
                "greedy_eval": round(kind_hits_greedy[k][0] / kind_hits_greedy[k][1], 4)
                if kind_hits_greedy[k][1]
                else None,
                "greedy_eval_n": kind_hits_greedy[k][1],
                "description": REGISTRY[k].description,
            }
            for k in sorted(REGISTRY)
        },
        "timing": {
            "generation_seconds": round(seconds, 1),
            "sampled_seq_per_s": None,
        },
        "files": {
            k: {"path": v.name, "rows": n}
            for (k, v), n in zip(
                files.items(), (len(train_rows), len(eval_rows), len(eval_prompt_rows), len(sample_rows))
            )
        },
    }
    s_sec = sum(float(samples[p.id].get("seconds", 0.0)) for p in prompts if p.id in samples)
    if s_sec > 0:
        sheet["timing"]["sampled_seq_per_s"] = round(n_responses / s_sec, 3)
    return report, sheet


# --------------------------------------------------------------------------- datasheet


def render_datasheet(sheet: Mapping[str, Any]) -> str:
    """The Markdown datasheet (Gebru et al. 2021 style, abridged) from ``datasheet.json``."""
    cfg, cnt, rw, gen = sheet["config"], sheet["counts"], sheet["rewards"], sheet["generator"]
    g = rw["greedy_eval"]
    ci = g.get("ci95_bootstrap") or [float("nan"), float("nan")]

    def hist(h: Mapping[str, int]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in h.items()) or "-"

    lines = [
        "# Datasheet: effalign verifiable-instruction testbed",
        "",
        "Generated by `python -m effalign testbed build` (`effalign.testbed.build_testbed`); this file is",
        "rendered from `datasheet.json`. Status: " + ("complete." if sheet["complete"] else "**incomplete** (build still running or interrupted)."),
        "",
        "## Motivation",
        "A small preference data set with a programmatic gold reward, so that the book can measure",
        "alignment itself (not a proxy) offline on a laptop, in the spirit of the controlled-sentiment",
        "task of the DPO paper and of IFEval's verifiable instructions (Zhou et al. 2023).",
        "",
        "## Composition",
        f"- Prompts: {cnt['prompts']} distinct instructions = topic x task x 1-3 verifiable constraints "
        f"({len(sheet['prompt_generator']['constraint_kinds'])} constraint kinds); "
        f"{cnt['eval_prompts']} held-out evaluation prompts and {cnt['train_prompts']} training prompts, "
        "disjoint by prompt.",
        f"- Constraints per prompt: {hist(cnt['constraints_per_prompt'])}.",
        f"- Gold reward of a response (version {sheet.get('reward_version', 1)}) = share of its prompt's "
        "constraints satisfied (0, 1/3, 1/2, 2/3, 1), or 0 when it fails the content gate (below).",
        f"- Pairs: chosen = highest-reward sample, rejected = lowest (first index on ties); prompts whose "
        f"{cfg['k']} samples all tie are dropped.",
        f"- Training pairs: **{cnt['train_pairs']}** (`train.jsonl.gz`; {cnt['dropped_all_tied_train']} tied "
        "training prompts dropped).",
        f"- Evaluation: **{cnt['eval_prompts']}** prompts (`eval_prompts.jsonl.gz`, with constraints and the "
        f"reference greedy response) and {cnt['eval_pairs']} evaluation pairs (`eval.jsonl.gz`; "
        f"{cnt['dropped_all_tied_eval']} tied).",
        "- `samples.jsonl.gz`: every sampled response with its score, token count and whether it hit the "
        "token limit.",
        "- Row format: TRL conversational (`prompt`, `chosen`, `rejected` message lists) plus `metadata` "
        "holding the prompt id, topic, task, constraint specs (so rewards can be recomputed with "
        "`effalign.testbed.reward_from_metadata`) and all sample scores.",
        "",
        "## Collection process",
        f"- Generator: `{gen.get('name')}` ({gen.get('hub_equivalent', '')}), from the GGUF file "
        f"`{gen.get('source', '?')}` sha256 `{gen.get('source_sha256', '?')}`, dequantised to {cfg['dtype']}.",
        f"- Chat template with its default system prompt (no system turn is given); one user turn.",
        f"- Sampling: {cfg['k']} samples per prompt, temperature {cfg['temperature']}, top_p {cfg['top_p']}, "
        f"top_k {cfg['top_k']} (0 = off), at most {cfg['max_new_tokens']} new tokens, batches of "
        f"{cfg['batch_size']} prompts, torch seed per batch derived from seed {cfg['seed']}.",
        f"- Reference greedy decoding (same token limit) on every evaluation prompt.",
        f"- Responses: {cnt['responses']}, of which {cnt['responses_truncated']} hit the token limit.",
        f"- Generation wall time: {sheet['timing']['generation_seconds'] / 60:.1f} min "
        f"({sheet['timing']['sampled_seq_per_s']} sampled sequences/s) on "
        f"{gen.get('machine', 'CPU')}.",
        "",
        "## Reward distribution",
        f"- All samples: mean {rw['samples'].get('mean')} ({hist(rw['samples'].get('histogram', {}))}).",
        f"- Chosen: mean {rw['chosen'].get('mean')}; rejected: mean {rw['rejected'].get('mean')}; "
        f"mean margin {rw['margin_mean']}.",
        f"- **Reference policy, greedy, evaluation prompts: {g.get('mean')} "
        f"(95% bootstrap CI {ci[0]}-{ci[1]}, n={g.get('n')})**; histogram {hist(g.get('histogram', {}))}.",
        "",
    ]
    if sheet.get("reward_gate"):
        lines += render_audit(sheet["reward_gate"])
    lines += [
        "## Satisfaction rate per constraint kind",
        "Checker verdicts, before the content gate.",
        "",
        "| kind | rule | sampled | n | greedy (eval) | n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, v in sheet["kind_satisfaction"].items():
        lines.append(
            f"| {kind} | {v['description']} | {v['sampled']} | {v['sampled_n']} | "
            f"{v['greedy_eval']} | {v['greedy_eval_n']} |"
        )
    lines += [
        "",
        "## Uses and limitations",
        "- Intended for measuring and comparing preference-optimisation methods (e.g. DPO on small",
        "  subsets) by the gold reward of the trained policy's responses on the evaluation prompts.",
        "- The reward checks surface form only (length, layout, words, case, punctuation), not",
        "  helpfulness or truth; responses are from a 135M-parameter model and are often wrong.",
        "- Checkers are lenient about whitespace, markdown, curly quotes and case (see",
        "  `effalign.testbed.constraints`). The content gate is lexical: it stops constant and",
        "  off-topic answers, not a fluent answer that names the topic and says nothing true.",
        "- Licence: prompts and checkers are the project's (MIT); responses are outputs of",
        "  SmolLM2-135M-Instruct (Apache-2.0).",
        "",
        "## Regenerate",
        "`python -m effalign testbed build --out data/testbed` (resumes from `data/testbed/work/`, or",
        "re-assembles from `samples.jsonl.gz` when that cache is absent). Settings: "
        + ", ".join(f"{k}={v}" for k, v in cfg.items())
        + f"; environment: {gen.get('environment', '')}.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- build


def _provenance(cfg: TestbedConfig) -> dict[str, Any]:
    info: dict[str, Any] = {"name": cfg.policy}
    if cfg.policy.lower() in {"smollm2-135m-instruct", "smollm2"}:
        try:
            from ..models import policy_provenance

            info.update(policy_provenance(cfg.policy))
        except Exception as err:  # noqa: BLE001 - provenance must never stop a build
            info["provenance_error"] = str(err)
    try:
        import torch
        import transformers

        info["environment"] = (
            f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}"
        )
    except ImportError:  # pragma: no cover
        pass
    info["machine"] = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    info.pop("resolved", None)
    return info


def _seed_cache_from_committed(out: Path, work: Path, cfg: TestbedConfig) -> None:
    """Fill an empty ``work/`` from a committed ``samples.jsonl.gz`` made with the same settings."""
    sheet_path, samples_path = out / "datasheet.json", out / "samples.jsonl.gz"
    if (work / SAMPLES_LOG).exists() or not (sheet_path.exists() and samples_path.exists()):
        return
    old = json.loads(sheet_path.read_text())
    old_cfg = TestbedConfig(**{k: v for k, v in old.get("config", {}).items() if k in TestbedConfig.__dataclass_fields__})
    if old_cfg.generation_key() != cfg.generation_key():
        return
    rows = read_jsonl_gz(samples_path)
    keep = ("responses", "n_tokens", "finished", "seconds")
    AppendLog(work / SAMPLES_LOG).append([{"id": r["id"], **{k: r[k] for k in keep}} for r in rows])
    greedy = [
        {
            "id": r["id"],
            "responses": [r["greedy"]["response"]],
            "n_tokens": [r["greedy"]["n_tokens"]],
            "finished": [None],
            "seconds": r["greedy"].get("seconds", 0.0),
        }
        for r in rows
        if r.get("greedy")
    ]
    AppendLog(work / GREEDY_LOG).append(greedy)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_testbed(
    out_dir: str | Path = "data/testbed",
    *,
    config: TestbedConfig | None = None,
    limit: int | None = None,
    resume: bool = True,
    progress: bool = True,
    model: Any = None,
    tokenizer: Any = None,
    **overrides: Any,
) -> TestbedReport:
    """Generate (or resume generating) the testbed and assemble its files in ``out_dir``.

    Settings come from ``config`` (default :class:`TestbedConfig`) updated by keyword
    ``overrides`` (``n_prompts``, ``k``, ``seed``, ``n_eval``, ``batch_size``,
    ``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``, ``policy``, ``dtype``). ``limit``
    caps the number of prompts generated in this call, per phase (for tests and time-boxed
    runs); the files are then assembled from what exists and marked incomplete. ``resume=False``
    deletes ``out_dir/work`` first. ``model``/``tokenizer`` may be given (e.g.
    :func:`effalign.models.tiny_policy` in tests); otherwise ``config.policy`` is loaded.
    Raises ``ValueError`` if ``work/`` was made with different generation settings.
    """
    cfg = dataclasses.replace(config or TestbedConfig(), **overrides)
    if cfg.k < 2:
        raise ValueError("k must be at least 2 to form pairs")
    out = Path(out_dir)
    work = out / "work"
    if not resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    key_path = work / "config.json"
    if key_path.exists():
        old = json.loads(key_path.read_text())
        if old != cfg.generation_key():
            raise ValueError(
                f"{work} was generated with {old}, not {cfg.generation_key()}; "
                "use another --out or delete the work folder (resume=False)"
            )
    else:
        _seed_cache_from_committed(out, work, cfg)
        key_path.write_text(json.dumps(cfg.generation_key(), indent=1) + "\n")

    prompts = generate_prompts(cfg.n_prompts, seed=cfg.seed, n_eval=cfg.n_eval)
    eval_prompts = [p for p in prompts if p.split == "eval"]
    samples_log, greedy_log = AppendLog(work / SAMPLES_LOG), AppendLog(work / GREEDY_LOG)

    need_greedy = any(p.id not in greedy_log.read() for p in eval_prompts)
    need_samples = any(p.id not in samples_log.read() for p in prompts)
    if (need_greedy or need_samples) and (limit is None or limit > 0):
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
        if model is None or tokenizer is None:
            from ..models import load_policy

            model, tokenizer = load_policy(cfg.policy, dtype=getattr(torch, cfg.dtype))
        model.eval()
        if need_greedy:
            _run_phase("greedy", eval_prompts, greedy_log, model, tokenizer, cfg, limit=limit, progress=progress)
        if need_samples:
            # training pool first: if a long build is cut short, the pairs matter most
            order = [p for p in prompts if p.split != "eval"] + eval_prompts
            _run_phase("sample", order, samples_log, model, tokenizer, cfg, limit=limit, progress=progress)

    report, sheet = _assemble(out, prompts, samples_log.read(), greedy_log.read(), cfg, _provenance(cfg))
    _write_atomic(out / "datasheet.json", json.dumps(sheet, indent=1, ensure_ascii=False) + "\n")
    _write_atomic(out / "DATASHEET.md", render_datasheet(sheet))
    report.files["datasheet"] = str(out / "DATASHEET.md")
    return report


# --------------------------------------------------------------------------- CLI


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``build`` options (one per :class:`TestbedConfig` field, plus --out/--limit/--no-resume)."""
    parser.add_argument("--out", default="data/testbed")
    for f in dataclasses.fields(TestbedConfig):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=type(f.default), default=None)
    parser.add_argument("--limit", type=int, default=None, help="generate for at most this many prompts")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="discard work/ first")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m effalign.testbed build [...]``."""
    parser = argparse.ArgumentParser(prog="python -m effalign.testbed")
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_arguments(sub.add_parser("build", help="generate or resume the testbed"))
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TestbedConfig) if getattr(args, f.name) is not None}
    report = build_testbed(args.out, limit=args.limit, resume=args.resume, **overrides)
    print(report)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
