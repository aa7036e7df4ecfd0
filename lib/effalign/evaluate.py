"""Evaluation: held-out preference accuracy, and generation scored by a reward function.

Preference accuracy uses DPO's implicit reward ``r(x, y) = β·(log πθ(y|x) − log πref(y|x))``:
a pair counts as correct when ``r`` is larger for the chosen than for the rejected response, and
a tie counts one half. The untrained policy equals the reference, so every reward is 0, every
pair ties, and its accuracy is exactly 0.5 *by construction*: the metric measures what training
changed, not the reference model's own judgement. (:func:`reference_preference_accuracy` gives
the latter: the share of pairs where the reference itself prefers the chosen response.)

Generation evaluation answers held-out prompts (greedy by default, batched, left padding) and
scores the answers with a pluggable reward function ``reward_fn(prompts, responses) -> scores``
(the testbed's gold reward, for example). It reports the mean reward with a bootstrap interval,
the win rate against the reference policy's answers to the same prompts (ties count one half),
and a sequence-level KL estimate: the mean of ``log πθ(y|x) − log πref(y|x)`` over responses
``y`` *sampled* from the policy (an unbiased Monte-Carlo estimate of KL(πθ‖πref)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    completion_logps,
    length_sorted_batches,
    pair_batch,
    tokenize_pairs,
)

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


@dataclass
class PreferenceEval:
    accuracy: float
    accuracy_ci: tuple[float, float]
    margin: float
    margin_ci: tuple[float, float]
    n: int
    ties: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "pref_accuracy": self.accuracy,
            "pref_accuracy_ci": list(self.accuracy_ci),
            "pref_margin": self.margin,
            "pref_margin_ci": list(self.margin_ci),
            "pref_n": self.n,
            "pref_ties": self.ties,
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
    """Held-out preference accuracy of the implicit reward, mean margin, and 95% bootstrap intervals.

    The untrained policy scores exactly 0.5 (all ties), by construction; see the module docstring.
    """
    check_same_precision(model, ref)  # an untrained policy must tie with its own reference
    tokenized, _ = tokenize_pairs(pairs, tokenizer, config)
    chosen, rejected = policy_logps(model, tokenized, tokenizer.pad_token_id, batch_size=batch_size, progress=progress)
    return preference_eval_from_logps(chosen, rejected, ref, beta=beta, n_boot=n_boot, seed=seed)


def preference_eval_from_logps(chosen: np.ndarray, rejected: np.ndarray, ref: ReferenceLogps, *,
                               beta: float = 0.1, n_boot: int = 2000, seed: int = 0) -> PreferenceEval:
    """Preference accuracy from policy and reference log-probs (see :func:`preference_accuracy`)."""
    r_chosen = beta * (np.asarray(chosen) - ref.chosen)
    r_rejected = beta * (np.asarray(rejected) - ref.rejected)
    outcomes = paired_outcomes(r_chosen, r_rejected)
    margins = r_chosen - r_rejected
    return PreferenceEval(
        accuracy=float(outcomes.mean()),
        accuracy_ci=bootstrap_ci(outcomes, n_boot=n_boot, seed=seed),
        margin=float(margins.mean()),
        margin_ci=bootstrap_ci(margins, n_boot=n_boot, seed=seed),
        n=len(outcomes),
        ties=int((r_chosen == r_rejected).sum()),
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
def sequence_logps(model: Any, tokenizer: Any, prompts: Sequence[Any], responses: Sequence[str], *,
                   config: TokenizeConfig = TokenizeConfig(max_prompt_tokens=512, max_completion_tokens=512),
                   batch_size: int = 8) -> np.ndarray:
    """Summed log-probs of each response given its prompt (same tokenisation as training)."""
    from .data import PreferencePair

    pairs = [PreferencePair(_prompt_messages(p), [{"role": "assistant", "content": r}],
                            [{"role": "assistant", "content": r}]) for p, r in zip(prompts, responses)]
    tokenized, _ = tokenize_pairs(pairs, tokenizer, config)
    out = np.zeros(len(pairs))
    was_training = model.training
    model.eval()
    for idx in length_sorted_batches([t.n_tokens for t in tokenized], batch_size):
        batch = collate([(tokenized[j].prompt_ids, tokenized[j].chosen_ids) for j in idx], tokenizer.pad_token_id)
        out[idx] = completion_logps(model, batch).float().cpu().numpy()
    model.train(was_training)
    return out


@dataclass
class GenerationEval:
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

    def to_dict(self) -> dict[str, Any]:
        return {
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
    kl_samples: int = 1,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = True,
) -> GenerationEval:
    """Greedy answers scored by ``reward_fn``; win rate and KL against ``ref_model`` when given.

    ``ref_responses``/``ref_scores`` reuse the reference policy's answers (they do not change
    between runs); otherwise they are generated with ``ref_model``. ``kl_samples`` sampled
    responses per prompt estimate KL(πθ‖πref); 0 skips it.
    """
    responses = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         progress=progress)
    scores = np.asarray(reward_fn(prompts, responses), dtype=float)
    if scores.shape != (len(prompts),):
        raise ValueError(f"reward_fn returned {scores.shape} scores for {len(prompts)} prompts")
    win = win_ci = kl = kl_ci = ref_mean = ref_ci = None
    if ref_scores is None and (ref_responses is not None or ref_model is not None):
        if ref_responses is None:
            ref_responses = generate(ref_model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                     batch_size=batch_size, progress=progress)
        ref_scores = reward_fn(prompts, ref_responses)
    if ref_scores is not None:
        ref_arr = np.asarray(ref_scores, dtype=float)
        ref_mean = float(ref_arr.mean())
        ref_ci = bootstrap_ci(ref_arr, n_boot=n_boot, seed=seed)
        outcomes = paired_outcomes(scores, ref_arr)
        win, win_ci = float(outcomes.mean()), bootstrap_ci(outcomes, n_boot=n_boot, seed=seed)
    if ref_model is not None and kl_samples > 0:
        rep_prompts = [p for p in prompts for _ in range(kl_samples)]
        sampled = generate(model, tokenizer, rep_prompts, max_new_tokens=max_new_tokens, do_sample=True,
                           batch_size=batch_size, seed=seed, progress=progress)
        log_ratio = sequence_logps(model, tokenizer, rep_prompts, sampled) - sequence_logps(
            ref_model, tokenizer, rep_prompts, sampled)
        kl, kl_ci = float(log_ratio.mean()), bootstrap_ci(log_ratio, n_boot=n_boot, seed=seed)
    return GenerationEval(float(scores.mean()), bootstrap_ci(scores, n_boot=n_boot, seed=seed), ref_mean, ref_ci,
                          win, win_ci, kl, kl_ci, len(prompts), responses)
