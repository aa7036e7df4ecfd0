"""Evaluation: held-out preference metrics, and generation scored by a reward function.

Preference metrics use DPO's implicit reward ``r(x, y) = β·(log πθ(y|x) − log πref(y|x))`` on
held-out pairs. The primary endpoint is the mean implicit-reward **margin**
``r(x, y_chosen) − r(x, y_rejected)`` (``pref_margin``) with the held-out DPO loss
``−log σ(margin)`` (``pref_loss``); accuracy (a pair counts as correct when its margin is
positive, a tie one half) is secondary. The untrained policy equals the reference, so every
reward is 0, every pair ties, its accuracy is exactly 0.5, its margin 0 and its loss log 2 *by
construction*: the metrics measure what training changed, not the reference model's own
judgement (:func:`reference_preference_accuracy` gives the latter).

Generation evaluation answers held-out prompts (greedy, batched, left padding) and scores the
answers with a pluggable reward function ``reward_fn(prompts, responses) -> scores`` (the
testbed's gold reward, for example). It reports the mean reward with a bootstrap interval, the
win rate against the reference policy's answers to the same prompts (ties count one half), and
the KL divergence to the reference: for ``kl_samples`` responses per prompt *sampled* from the
policy (temperature 1, sampled token ids kept as drawn), the exact per-token KL
``Σ_v πθ(v|x, y<t) log(πθ(v|x, y<t) / πref(v|x, y<t))`` summed along the response
(:func:`trajectory_kl`): an unbiased estimate of the sequence-level KL(πθ‖πref) with lower
variance than the log-ratio of the sampled tokens, and never negative.

Every evaluation also returns its per-item outcomes (:meth:`PreferenceEval.items`,
:meth:`GenerationEval.items`) in the layout the run records store, with content-hash item ids
(:func:`pair_item_id`, :func:`prompt_item_id`) that are the same across runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .logps import (
    ReferenceLogps,
    TokenizeConfig,
    TokenizedPair,
    check_same_precision,
    collate,
    completion_log_softmax,
    completion_logps,
    length_sorted_batches,
    pair_batch,
    tokenize_pairs,
)

ITEM_DECIMALS = 4  # per-item floats in run records are rounded to this many decimals

RewardFn = Callable[[Sequence[Any], Sequence[str]], Sequence[float]]


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    stats = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def paired_outcomes(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """1 where chosen > rejected, 0.5 on ties, 0 otherwise."""
    return np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))


def messages_text(messages: Sequence[dict[str, str]] | str) -> str:
    """A prompt as one string: a single user turn is its bare content, otherwise
    ``role: content`` lines (as :attr:`effalign.data.PreferencePair.prompt_text`)."""
    if isinstance(messages, str):
        return messages
    messages = list(messages)
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def prompt_item_id(prompt: Sequence[dict[str, str]] | str) -> str:
    """10-hex content hash of a prompt's text (:func:`messages_text`): a held-out prompt's id, and
    the cluster of every pair that shares the prompt."""
    return hashlib.sha256(messages_text(prompt).encode("utf-8")).hexdigest()[:10]


def pair_item_id(pair: Any) -> str:
    """10-hex content hash of a pair (prompt, chosen, rejected), as the reference log-prob cache
    keys it (:func:`effalign.logps.pair_key`)."""
    payload = json.dumps([pair.prompt, pair.chosen, pair.rejected], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:10]


def _rounded(values: Sequence[float] | np.ndarray) -> list[float]:
    return [round(float(v), ITEM_DECIMALS) for v in np.asarray(values, dtype=float)]


def dpo_loss(margins: np.ndarray) -> np.ndarray:
    """Per-pair DPO loss ``−log σ(margin)`` (numerically stable)."""
    return np.logaddexp(0.0, -np.asarray(margins, dtype=float))


@dataclass
class PreferenceEval:
    """Held-out preference metrics and their per-pair values (``margins``, ``outcomes``)."""

    accuracy: float
    accuracy_ci: tuple[float, float]
    margin: float
    margin_ci: tuple[float, float]
    loss: float
    loss_ci: tuple[float, float]
    n: int
    ties: int
    margins: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    outcomes: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    tokens: int = 0  #: tokens the policy ran over (prompt + completions, padding excluded; cost accounting)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pref_accuracy": self.accuracy,
            "pref_accuracy_ci": list(self.accuracy_ci),
            "pref_margin": self.margin,
            "pref_margin_ci": list(self.margin_ci),
            "pref_loss": self.loss,
            "pref_loss_ci": list(self.loss_ci),
            "pref_n": self.n,
            "pref_ties": self.ties,
        }

    def items(self, pairs: Sequence[Any]) -> dict[str, list[Any]]:
        """Per-pair outcomes in the run-record layout: ``id``, ``cluster`` (the prompt's id),
        ``margin`` (4 decimals) and ``correct`` (1, 0.5 on a tie, 0)."""
        if len(pairs) != len(self.margins):
            raise ValueError(f"{len(pairs)} pairs for {len(self.margins)} evaluated margins")
        return {
            "id": [pair_item_id(p) for p in pairs],
            "cluster": [prompt_item_id(p.prompt) for p in pairs],
            "margin": _rounded(self.margins),
            "correct": [float(o) for o in self.outcomes],
        }


@torch.no_grad()
def policy_logps(model: Any, tokenized: Sequence[TokenizedPair], pad_id: int, *, batch_size: int = 8,
                 progress: bool = False, desc: str = "policy log-probs") -> tuple[np.ndarray, np.ndarray]:
    """Summed completion log-probs of chosen and rejected responses under ``model``."""
    was_training = model.training
    model.eval()
    chosen = np.zeros(len(tokenized))
    rejected = np.zeros(len(tokenized))
    for idx in tqdm(length_sorted_batches([t.n_tokens for t in tokenized], batch_size), desc=desc,
                    disable=not progress, unit="batch"):
        lp = completion_logps(model, pair_batch([tokenized[j] for j in idx], pad_id))
        lp = lp.float().cpu().numpy()
        chosen[idx] = lp[: len(idx)]
        rejected[idx] = lp[len(idx):]
    model.train(was_training)
    return chosen, rejected


def preference_accuracy(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Any],
    ref: ReferenceLogps,
    *,
    beta: float = 0.1,
    config: TokenizeConfig = TokenizeConfig(),
    batch_size: int = 8,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> PreferenceEval:
    """Held-out implicit-reward margin, DPO loss and accuracy, with 95% bootstrap intervals.

    The untrained policy scores exactly 0.5 (all ties), margin 0, loss log 2, by construction;
    see the module docstring.
    """
    check_same_precision(model, ref)  # an untrained policy must tie with its own reference
    tokenized, _ = tokenize_pairs(pairs, tokenizer, config)
    chosen, rejected = policy_logps(model, tokenized, tokenizer.pad_token_id, batch_size=batch_size, progress=progress)
    result = preference_eval_from_logps(chosen, rejected, ref, beta=beta, n_boot=n_boot, seed=seed)
    result.tokens = sum(t.n_tokens for t in tokenized)
    return result


def preference_eval_from_logps(chosen: np.ndarray, rejected: np.ndarray, ref: ReferenceLogps, *,
                               beta: float = 0.1, n_boot: int = 2000, seed: int = 0) -> PreferenceEval:
    """Preference metrics from policy and reference log-probs (see :func:`preference_accuracy`)."""
    r_chosen = beta * (np.asarray(chosen) - ref.chosen)
    r_rejected = beta * (np.asarray(rejected) - ref.rejected)
    outcomes = paired_outcomes(r_chosen, r_rejected)
    margins = r_chosen - r_rejected
    losses = dpo_loss(margins)
    return PreferenceEval(
        accuracy=float(outcomes.mean()),
        accuracy_ci=bootstrap_ci(outcomes, n_boot=n_boot, seed=seed),
        margin=float(margins.mean()),
        margin_ci=bootstrap_ci(margins, n_boot=n_boot, seed=seed),
        loss=float(losses.mean()),
        loss_ci=bootstrap_ci(losses, n_boot=n_boot, seed=seed),
        n=len(outcomes),
        ties=int((r_chosen == r_rejected).sum()),
        margins=margins,
        outcomes=outcomes,
    )


def reference_preference_accuracy(ref: ReferenceLogps) -> float:
    """Share of pairs where the reference policy itself gives the chosen response a higher log-prob."""
    return float(paired_outcomes(ref.chosen, ref.rejected).mean())


# --------------------------------------------------------------------------- generation


def _prompt_messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if hasattr(prompt, "prompt"):
        return prompt.prompt
    return list(prompt)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int = 96,
    do_sample: bool = False,
    temperature: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Answer prompts (strings, message lists or pairs) in batches; greedy unless ``do_sample``.

    Prompts are batched longest first; batch ``b`` samples with seed ``seed * 100003 + b``.
    Decoding is :func:`effalign.generation.decode` (drops finished sequences early).
    """
    from .generation import decode, render_chat

    was_training = model.training
    model.eval()
    texts = [render_chat(tokenizer, _prompt_messages(p)) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: list[str] = [""] * len(texts)
    try:
        for b, start in enumerate(tqdm(range(0, len(order), batch_size), desc="generate", disable=not progress,
                                       unit="batch")):
            idx = order[start: start + batch_size]
            res = decode(model, tokenizer, [texts[i] for i in idx], k=1, do_sample=do_sample,
                         temperature=temperature, max_new_tokens=max_new_tokens, seed=seed * 100_003 + b)
            for i, r in zip(idx, res):
                out[i] = r[0]["text"]
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def trajectory_kl(model: Any, ref_model: Any, sequences: Sequence[tuple[list[int], list[int]]], pad_id: int, *,
                  batch_size: int = 8, autocast: bool | None = None) -> np.ndarray:
    """Exact KL(πθ‖πref) summed along each response: ``Σ_t Σ_v πθ(v|·) (log πθ(v|·) − log πref(v|·))``.

    ``sequences`` are ``(prompt ids, response ids)`` with the response ids exactly as sampled
    (no end-of-turn token added to a response cut at the token limit). Each position's KL over
    the whole vocabulary is computed in float32 and clipped at 0 (rounding can leave −1e-7), so
    the result is never negative. ``autocast`` is passed to
    :func:`effalign.logps.completion_log_softmax` for both models (default: each model's own path).
    """
    out = np.zeros(len(sequences))
    was = model.training, ref_model.training
    model.eval()
    ref_model.eval()
    try:
        for idx in length_sorted_batches([len(p) + len(c) for p, c in sequences], batch_size):
            batch = collate([sequences[j] for j in idx], pad_id)
            rows, _, logp = completion_log_softmax(model, batch, autocast=autocast)
            ref_rows, _, ref_logp = completion_log_softmax(ref_model, batch, autocast=autocast)
            if not torch.equal(rows.cpu(), ref_rows.cpu()):  # pragma: no cover - same batch, same mask
                raise RuntimeError("policy and reference disagree on the completion positions")
            per_pos = (logp.exp() * (logp - ref_logp.to(logp.device))).sum(-1).clamp(min=0.0)
            sums = torch.zeros(len(idx), dtype=torch.float64).index_add(0, rows.cpu(), per_pos.double().cpu())
            out[idx] = sums.numpy()
    finally:
        model.train(was[0])
        ref_model.train(was[1])
    return out


@dataclass
class KLEstimate:
    """Per-prompt KL to the reference (mean over its samples) and what the samples looked like."""

    per_prompt: np.ndarray
    per_sample: np.ndarray
    samples_per_prompt: int
    cut_share: float  # share of samples that hit the token limit without an end-of-turn token
    mean_tokens: float


def sample_kl(model: Any, ref_model: Any, tokenizer: Any, prompts: Sequence[Any], *, n_samples: int = 2,
              max_new_tokens: int = 96, batch_size: int = 16, seed: int = 0, autocast: bool | None = None,
              progress: bool = True) -> KLEstimate:
    """KL(πθ‖πref) per prompt from ``n_samples`` responses sampled from ``model`` at temperature 1
    (no top-k/top-p), scored with :func:`trajectory_kl` on the sampled token ids.

    Prompts are batched longest first; batch ``b`` samples with seed ``seed * 100003 + b``.
    ``autocast`` goes to :func:`trajectory_kl` (default: each model's own numeric path).
    """
    from .generation import decode, prompt_token_ids, render_chat

    if n_samples < 1:
        raise ValueError("sample_kl needs n_samples >= 1")
    texts = [render_chat(tokenizer, _prompt_messages(p)) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    sequences: list[tuple[list[int], list[int]]] = [([], [])] * (len(texts) * n_samples)
    cut = 0
    was_training = model.training
    model.eval()
    try:
        for b, start in enumerate(tqdm(range(0, len(order), batch_size), desc="KL samples", disable=not progress,
                                       unit="batch")):
            idx = order[start: start + batch_size]
            res = decode(model, tokenizer, [texts[i] for i in idx], k=n_samples, do_sample=True, temperature=1.0,
                         max_new_tokens=max_new_tokens, seed=seed * 100_003 + b)
            for i, samples in zip(idx, res):
                p_ids = prompt_token_ids(tokenizer, texts[i])
                for j, smp in enumerate(samples):
                    sequences[i * n_samples + j] = (p_ids, smp["ids"])
                    cut += not smp["finished"]
    finally:
        model.train(was_training)
    per_sample = trajectory_kl(model, ref_model, sequences, tokenizer.pad_token_id, autocast=autocast)
    return KLEstimate(per_sample.reshape(len(texts), n_samples).mean(axis=1), per_sample, n_samples,
                      cut / len(sequences), float(np.mean([len(c) for _, c in sequences])))


@dataclass
class GenerationEval:
    """Generation metrics and their per-prompt values (``scores``, ``ref_scores``, ``kl_per_prompt``)."""

    reward: float
    reward_ci: tuple[float, float]
    ref_reward: float | None
    ref_reward_ci: tuple[float, float] | None
    win_rate: float | None
    win_rate_ci: tuple[float, float] | None
    kl: float | None
    kl_ci: tuple[float, float] | None
    n: int
    responses: list[str]
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    ref_scores: np.ndarray | None = field(default=None, repr=False)
    kl_estimate: KLEstimate | None = field(default=None, repr=False)
    #: new tokens decoded by the policy (greedy answers, counted by re-tokenising them, plus KL samples;
    #: cost accounting, the reference policy's answers not included)
    tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {
            "gen_reward": self.reward,
            "gen_reward_ci": list(self.reward_ci),
            "gen_ref_reward": self.ref_reward,
            "gen_ref_reward_ci": list(self.ref_reward_ci) if self.ref_reward_ci else None,
            "gen_win_rate": self.win_rate,
            "gen_win_rate_ci": list(self.win_rate_ci) if self.win_rate_ci else None,
            "gen_kl": self.kl,
            "gen_kl_ci": list(self.kl_ci) if self.kl_ci else None,
            "gen_n": self.n,
        }
        if self.kl_estimate is not None:
            out.update(gen_kl_samples=self.kl_estimate.samples_per_prompt,
                       gen_kl_cut_share=round(self.kl_estimate.cut_share, 4),
                       gen_kl_sample_tokens=round(self.kl_estimate.mean_tokens, 2))
        return out

    def items(self, prompts: Sequence[Any]) -> dict[str, list[Any]]:
        """Per-prompt outcomes in the run-record layout: ``id`` (= ``cluster``), ``reward`` and,
        when evaluated, ``ref_reward`` and ``kl`` (4 decimals)."""
        if len(prompts) != len(self.scores):
            raise ValueError(f"{len(prompts)} prompts for {len(self.scores)} scores")
        ids = [prompt_item_id(_prompt_messages(p)) for p in prompts]
        out: dict[str, list[Any]] = {"id": ids, "cluster": list(ids), "reward": _rounded(self.scores)}
        if self.ref_scores is not None:
            out["ref_reward"] = _rounded(self.ref_scores)
        if self.kl_estimate is not None:
            out["kl"] = _rounded(self.kl_estimate.per_prompt)
        return out


def generation_eval(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    reward_fn: RewardFn,
    *,
    ref_model: Any | None = None,
    ref_responses: Sequence[str] | None = None,
    ref_scores: Sequence[float] | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 16,
    kl_samples: int = 2,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> GenerationEval:
    """Greedy answers scored by ``reward_fn``; win rate and KL against ``ref_model`` when given.

    ``ref_responses``/``ref_scores`` reuse the reference policy's answers (they do not change
    between runs); otherwise they are generated with ``ref_model`` (same decoding).
    ``kl_samples`` sampled responses per prompt estimate KL(πθ‖πref) (:func:`sample_kl`); 0 skips it.
    """
    responses = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         progress=progress)
    scores = np.asarray(reward_fn(prompts, responses), dtype=float)
    if scores.shape != (len(prompts),):
        raise ValueError(f"reward_fn returned {scores.shape} scores for {len(prompts)} prompts")
    win = win_ci = kl = kl_ci = ref_mean = ref_ci = ref_arr = estimate = None
    if ref_scores is None and (ref_responses is not None or ref_model is not None):
        if ref_responses is None:
            ref_responses = generate(ref_model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                     batch_size=batch_size, progress=progress)
        ref_scores = reward_fn(prompts, ref_responses)
    if ref_scores is not None:
        ref_arr = np.asarray(ref_scores, dtype=float)
        if ref_arr.shape != scores.shape:
            raise ValueError(f"{ref_arr.shape[0]} reference scores for {len(prompts)} prompts")
        ref_mean = float(ref_arr.mean())
        ref_ci = bootstrap_ci(ref_arr, n_boot=n_boot, seed=seed)
        outcomes = paired_outcomes(scores, ref_arr)
        win, win_ci = float(outcomes.mean()), bootstrap_ci(outcomes, n_boot=n_boot, seed=seed)
    if ref_model is not None and kl_samples > 0:
        estimate = sample_kl(model, ref_model, tokenizer, prompts, n_samples=kl_samples, max_new_tokens=max_new_tokens,
                             batch_size=batch_size, seed=seed, progress=progress)
        kl, kl_ci = float(estimate.per_prompt.mean()), bootstrap_ci(estimate.per_prompt, n_boot=n_boot, seed=seed)
    tokens = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)
    if estimate is not None:
        tokens += int(round(estimate.mean_tokens * estimate.per_sample.size))
    return GenerationEval(float(scores.mean()), bootstrap_ci(scores, n_boot=n_boot, seed=seed), ref_mean, ref_ci,
                          win, win_ci, kl, kl_ci, len(prompts), responses, scores, ref_arr, estimate, tokens)
