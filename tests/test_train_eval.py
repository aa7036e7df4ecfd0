"""DPO training and evaluation with the tiny random model (seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effalign import logps as logps_mod
from effalign.data import PreferencePair
from effalign.evaluate import (
    bootstrap_ci,
    generate,
    generation_eval,
    preference_accuracy,
    preference_eval_from_logps,
)
from effalign.logps import ReferenceLogps, TokenizeConfig, completion_logps, pair_batch, reference_logps, tokenize_pairs
from effalign.models import tiny_policy
from effalign.train import DPOTrainConfig, train_dpo

TOK = TokenizeConfig(max_prompt_tokens=32, max_completion_tokens=16)


def make_pairs(n: int) -> list[PreferencePair]:
    topics = ["rivers", "bread", "chess", "owls", "tea", "maps", "glass", "bees"]
    return [
        PreferencePair(
            [{"role": "user", "content": f"Tell me about {topics[i % 8]} ({i})."}],
            [{"role": "assistant", "content": f"Here is a clear, kind answer about {topics[i % 8]}."}],
            [{"role": "assistant", "content": f"No. Go away {i}."}],
        )
        for i in range(n)
    ]


def test_tokenisation_keeps_prompt_end_and_completion_start(tiny):
    _, tok = tiny
    long = PreferencePair([{"role": "user", "content": "word " * 200}], [{"role": "assistant", "content": "yes " * 100}],
                          [{"role": "assistant", "content": "no"}])
    (t,), report = tokenize_pairs([long], tok, TOK)
    assert len(t.prompt_ids) == 32 and len(t.chosen_ids) == 16
    full_prompt = tok.apply_chat_template(long.prompt, add_generation_prompt=True, tokenize=True)
    full_prompt = full_prompt["input_ids"] if hasattr(full_prompt, "keys") else full_prompt
    assert t.prompt_ids == list(full_prompt[-32:])  # the end of the prompt (generation prompt) is kept
    assert t.rejected_ids[-1] == tok.eos_token_id
    assert report.prompt_truncated == 1 and report.chosen_truncated == 1 and report.rejected_truncated == 0


def test_completion_logps_match_a_full_forward(tiny):
    model, tok = tiny
    tokenized, _ = tokenize_pairs(make_pairs(3), tok, TOK)
    batch = pair_batch(tokenized, tok.pad_token_id)
    with torch.no_grad():
        fast = completion_logps(model, batch)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    slow = (lp * batch.target_mask[:, 1:]).sum(1)
    assert torch.allclose(fast, slow, atol=0.5)  # bf16 autocast on a float32 model


def test_reference_logps_computed_once_per_pool(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    pairs = make_pairs(12)
    calls = []
    real = logps_mod.completion_logps
    monkeypatch.setattr(logps_mod, "completion_logps", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = tmp_path / "ref.sqlite"
    first = reference_logps(pairs, (model, tok), config=TOK, batch_size=4, cache=cache, progress=False)
    assert first.computed == 12 and first.forward_calls == 3 and len(calls) == 3
    subset = [pairs[i] for i in (7, 2, 5)]
    again = reference_logps(subset, (model, tok), config=TOK, batch_size=4, cache=cache, progress=False)
    assert again.computed == 0 and len(calls) == 3  # a subset reuses the pool's numbers
    assert np.allclose(again.chosen, first.chosen[[7, 2, 5]])
    other = reference_logps(pairs, (model, tok), config=TokenizeConfig(16, 8), cache=cache, progress=False)
    assert other.computed == 12  # other tokenisation, other numbers


def test_dpo_loss_falls_on_a_fixed_batch(tmp_path):
    model, tok = tiny_policy(seed=0)
    pairs = make_pairs(8)
    config = DPOTrainConfig(epochs=6, batch_size=8, lora=False, learning_rate=2e-3, warmup_ratio=0,
                            max_prompt_tokens=32, max_completion_tokens=16, group_by_length=False)
    ref = reference_logps(pairs, (model, tok), config=config.tokenize, cache=tmp_path / "r.sqlite", progress=False)
    result = train_dpo((model, tok), pairs, config, ref=ref, progress=False)
    losses = [c["loss"] for c in result.loss_curve]
    assert len(losses) == 6
    assert losses[0] == pytest.approx(np.log(2), abs=1e-3)  # policy == reference at step one
    assert losses[-1] < losses[0] - 0.1
    m = result.metrics
    assert m["steps"] == 6 and m["pairs_seen"] == 48 and m["tokens"] > 0 and m["pairs_per_s"] > 0
    assert m["peak_memory_mb"] > 0 and m["ref_computed"] == 8 and m["first_loss"] == losses[0]


def test_lora_training_changes_only_adapters_then_merges(tmp_path):
    model, tok = tiny_policy(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = DPOTrainConfig(epochs=2, batch_size=4, lora=True, lora_targets=("q_proj", "v_proj"), learning_rate=5e-3,
                            max_prompt_tokens=32, max_completion_tokens=16)
    pairs = make_pairs(8)
    ref = reference_logps(pairs, (model, tok), config=config.tokenize, cache=tmp_path / "r.sqlite", progress=False)
    result = train_dpo((model, tok), pairs, config, ref=ref, progress=False)
    after = result.model.state_dict()
    assert set(after) == set(before)  # merged back into a plain model
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)


def test_preference_accuracy_known_answer():
    ref = ReferenceLogps(np.array([-10.0, -10.0, -10.0, -10.0]), np.array([-10.0, -10.0, -10.0, -10.0]))
    # pair 0, 1: chosen up (correct); pair 2: rejected up (wrong); pair 3: unchanged (tie)
    chosen = np.array([-9.0, -8.0, -10.0, -10.0])
    rejected = np.array([-10.0, -10.0, -9.0, -10.0])
    ev = preference_eval_from_logps(chosen, rejected, ref, beta=0.5)
    assert ev.accuracy == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert ev.ties == 1 and ev.n == 4
    assert ev.margin == pytest.approx(0.5 * np.mean([1, 2, -1, 0]))
    lo, hi = ev.accuracy_ci
    assert 0 <= lo <= ev.accuracy <= hi <= 1


def test_untrained_policy_scores_one_half(tiny, tmp_path):
    model, tok = tiny
    pairs = make_pairs(10)
    ref = reference_logps(pairs, (model, tok), config=TOK, cache=tmp_path / "r.sqlite", progress=False)
    ev = preference_accuracy(model, tok, pairs, ref, config=TOK, progress=False)
    assert ev.accuracy == 0.5 and ev.ties == 10 and ev.margin == 0.0


def test_bootstrap_ci_is_seeded_and_sane():
    x = np.r_[np.ones(60), np.zeros(40)]
    a, b = bootstrap_ci(x, seed=1), bootstrap_ci(x, seed=1)
    assert a == b and a[0] < 0.6 < a[1] and a[1] - a[0] < 0.25
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_generation_eval_with_reward_and_reference(tiny):
    model, tok = tiny
    prompts = [[{"role": "user", "content": f"Say something about {w}."}] for w in ("cats", "rain", "tea")]
    greedy1 = generate(model, tok, prompts, max_new_tokens=6, progress=False)
    greedy2 = generate(model, tok, prompts, max_new_tokens=6, progress=False)
    assert greedy1 == greedy2 and tok.padding_side != "left" or greedy1 == greedy2

    def reward(ps, responses):
        return [float(len(r) % 3) for r in responses]

    same = generation_eval(model, tok, prompts, reward, ref_model=model, max_new_tokens=6, kl_samples=1,
                           n_boot=200, progress=False)
    assert same.n == 3 and same.win_rate == 0.5  # the reference against itself ties everywhere
    assert same.kl == pytest.approx(0.0, abs=1e-6)
    assert same.reward == pytest.approx(np.mean(reward(prompts, same.responses)))


def test_fast_decoding_matches_transformers_greedy(tiny):
    from effalign.generation import decode, render_chat

    model, tok = tiny
    texts = [render_chat(tok, [{"role": "user", "content": q}]) for q in ("Hi there.", "A much longer question about owls?")]
    ours = decode(model, tok, texts, do_sample=False, max_new_tokens=8)
    side, tok.padding_side = tok.padding_side, "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    tok.padding_side = side
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    for row, r in enumerate(ours):
        expected = ids[row, enc["input_ids"].shape[1]:].tolist()
        assert tok.decode(expected, skip_special_tokens=True).strip() == r[0]["text"]


def test_length_batched_sampler_groups_lengths_and_shuffles_batches():
    from effalign.train import LengthBatchedSampler

    lengths = [5, 100, 7, 98, 50, 52, 6, 99]
    sampler = LengthBatchedSampler(lengths, batch_size=2, seed=0)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(8)) and len(sampler) == 8
    batches = [sorted(lengths[i] for i in first[j:j + 2]) for j in range(0, 8, 2)]
    assert sorted(batches) == [[5, 6], [7, 50], [52, 98], [99, 100]]  # neighbours in length share a batch
    assert first != second or len(set(map(tuple, batches))) == 1  # the batch order changes per epoch
    assert list(LengthBatchedSampler(lengths, 2, seed=0)) == first  # seeded
