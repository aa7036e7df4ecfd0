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


# --------------------------------------------------------------------------- schedule and budgets


def _config(**kw):
    base = dict(batch_size=8, lora=False, learning_rate=2e-3, max_prompt_tokens=32, max_completion_tokens=16)
    return DPOTrainConfig(**{**base, **kw})


def test_no_step_at_learning_rate_zero():
    from effalign.train import lr_factor

    for schedule in ("linear", "cosine", "constant"):
        for total, warm in ((1, 0), (5, 0), (20, 2), (120, 12)):
            factors = [lr_factor(s, warmup=warm, total=total, schedule=schedule) for s in range(total)]
            assert min(factors) > 0, (schedule, total, warm)
            assert max(factors) == pytest.approx(1.0)
            if warm:
                assert factors[0] == pytest.approx(1 / (warm + 1)) and factors[warm] == pytest.approx(1.0)
    assert lr_factor(119, warmup=12, total=120, schedule="linear") == pytest.approx(1 / 108)


def test_first_step_uses_a_positive_learning_rate(tmp_path):
    model, tok = tiny_policy(seed=0)
    pairs = make_pairs(8)
    config = _config(budget="steps", max_steps=20, warmup_ratio=0.1, batch_size=4)
    ref = reference_logps(pairs, (model, tok), config=config.tokenize, cache=tmp_path / "r.sqlite", progress=False)
    result = train_dpo((model, tok), pairs, config, ref=ref, progress=False)
    lrs = [c["lr"] for c in result.loss_curve]
    assert len(lrs) == 20 and result.metrics["lr_first"] == lrs[0]
    assert lrs[0] == pytest.approx(2e-3 / 3)  # two warm-up steps: 1/3, 2/3, then the peak
    assert lrs[2] == pytest.approx(2e-3) and min(lrs) > 0
    assert result.loss_curve[1]["loss"] < result.loss_curve[0]["loss"]  # step 1 already moved the weights


def test_steps_budget_gives_every_subset_size_the_same_steps(tmp_path):
    pairs = make_pairs(16)
    config = _config(budget="steps", max_steps=5)
    seen = {}
    for n in (3, 16):
        model, tok = tiny_policy(seed=0)
        ref = reference_logps(pairs[:n], (model, tok), config=config.tokenize, cache=tmp_path / "r.sqlite",
                              progress=False)
        m = train_dpo((model, tok), pairs[:n], config, ref=ref, progress=False).metrics
        assert m["budget"] == "steps" and m["steps"] == 5 and m["stopped_step"] == 5
        seen[n] = m
    assert seen[3]["pairs_seen"] == 15 and seen[3]["epochs"] == pytest.approx(5.0)  # 3 pairs a step, 5 epochs
    assert seen[16]["pairs_seen"] == 40 and seen[16]["epochs"] == pytest.approx(2.5)  # full batches of 8
    assert seen[16]["tokens"] > seen[3]["tokens"] > 0


def test_converge_stops_early_on_the_validation_loss_and_keeps_the_best_weights(tmp_path):
    model, tok = tiny_policy(seed=0)
    pairs = make_pairs(16)
    # validation pairs whose preference is the reverse of training's: their loss rises from the start
    val = [PreferencePair(p.prompt, p.rejected, p.chosen) for p in make_pairs(24)[16:]]
    config = _config(budget="converge", max_steps=60, val_every=2, patience=2, learning_rate=5e-3, warmup_ratio=0)
    cache = tmp_path / "r.sqlite"
    ref = reference_logps(pairs, (model, tok), config=config.tokenize, cache=cache, progress=False)
    val_ref = reference_logps(val, (model, tok), config=config.tokenize, cache=cache, progress=False)
    result = train_dpo((model, tok), pairs, config, ref=ref, val_pairs=val, val_ref=val_ref, progress=False)
    m = result.metrics
    assert m["early_stopped"] and m["stopped_step"] == 6  # evaluations at 2 (best), 4 and 6 (no improvement)
    assert m["best_step"] == 2 and m["steps"] == 6
    losses = [v["loss"] for v in result.val_curve]
    assert [v["step"] for v in result.val_curve] == [2, 4, 6] and losses[0] < losses[1] < losses[2]
    assert m["best_val_loss"] == pytest.approx(losses[0]) and m["val_loss"] == pytest.approx(losses[0])
    # the returned weights are the best evaluation's: their validation DPO loss is the best one
    again = preference_accuracy(result.model, tok, val, val_ref, beta=config.beta, config=config.tokenize,
                                progress=False)
    assert again.loss == pytest.approx(losses[0], abs=2e-3)
    assert again.loss < losses[-1] - 1e-3


def test_budget_settings_are_checked():
    with pytest.raises(ValueError, match="needs max_steps"):
        DPOTrainConfig(budget="steps")
    with pytest.raises(ValueError, match="budget must be one of"):
        DPOTrainConfig(budget="tokens")
    with pytest.raises(ValueError, match="takes no max_steps"):
        DPOTrainConfig(budget="epochs", max_steps=10)
    assert DPOTrainConfig(max_steps=-1).max_steps is None  # older specs' "no limit"
    with pytest.raises(ValueError, match="needs validation pairs"):
        train_dpo("tiny-random", make_pairs(2), DPOTrainConfig(budget="converge", max_steps=4), progress=False)


# --------------------------------------------------------------------------- endpoints and per-item outcomes


def test_held_out_dpo_loss_and_per_item_outcomes():
    from effalign.evaluate import pair_item_id, prompt_item_id
    from effalign.logps import pair_key

    ref = ReferenceLogps(np.full(4, -10.0), np.full(4, -10.0))
    ev = preference_eval_from_logps(np.array([-9.0, -8.0, -10.0, -10.0]), np.array([-10.0, -10.0, -9.0, -10.0]), ref,
                                    beta=0.5)
    margins = np.array([0.5, 1.0, -0.5, 0.0])
    assert ev.loss == pytest.approx(np.mean(np.log1p(np.exp(-margins))))
    assert ev.to_dict()["pref_loss"] == ev.loss and len(ev.to_dict()["pref_loss_ci"]) == 2
    pairs = make_pairs(3) + [PreferencePair(make_pairs(1)[0].prompt, [{"role": "assistant", "content": "Other."}],
                                            [{"role": "assistant", "content": "No."}])]
    items = ev.items(pairs)
    assert set(items) == {"id", "cluster", "margin", "correct"}
    assert items["margin"] == [0.5, 1.0, -0.5, 0.0] and items["correct"] == [1.0, 1.0, 0.0, 0.5]
    assert items["id"][0] == pair_key(pairs[0])[:10] and len(set(items["id"])) == 4
    assert items["cluster"][0] == items["cluster"][3] == prompt_item_id(pairs[0].prompt) != items["cluster"][1]
    assert pair_item_id(make_pairs(1)[0]) == items["id"][0]  # a content hash: the same in every run
    assert prompt_item_id("Tell me about rivers (0).") == items["cluster"][0]
    with pytest.raises(ValueError):
        ev.items(pairs[:2])
    rounded = preference_eval_from_logps(np.array([-9.123456]), np.array([-10.0]), ReferenceLogps(
        np.array([-10.0]), np.array([-10.0])), beta=0.1).items(pairs[:1])
    assert rounded["margin"] == [0.0877]


def test_untrained_policy_has_dpo_loss_log_two(tiny, tmp_path):
    model, tok = tiny
    pairs = make_pairs(6)
    ref = reference_logps(pairs, (model, tok), config=TOK, cache=tmp_path / "r.sqlite", progress=False)
    ev = preference_accuracy(model, tok, pairs, ref, config=TOK, progress=False)
    assert ev.loss == pytest.approx(np.log(2)) and ev.items(pairs)["margin"] == [0.0] * 6


# --------------------------------------------------------------------------- KL to the reference


def _brute_force_kl(model, ref_model, prompt_ids, response_ids):
    """Σ_t KL(π(·|prefix_t) ‖ πref(·|prefix_t)) with one unpadded float64 forward per prefix."""
    total = 0.0
    for t in range(len(response_ids)):
        ids = torch.tensor([prompt_ids + response_ids[:t]])
        with torch.no_grad():
            p = torch.log_softmax(model(input_ids=ids).logits[0, -1].double(), -1)
            q = torch.log_softmax(ref_model(input_ids=ids).logits[0, -1].double(), -1)
        total += float((p.exp() * (p - q)).sum())
    return total


def test_exact_kl_matches_a_brute_force_computation():
    from effalign.evaluate import sample_kl, trajectory_kl

    model, tok = tiny_policy(seed=0)
    ref_model, _ = tiny_policy(seed=1)
    prompts = [[{"role": "user", "content": q}] for q in ("Hi.", "Tell me a long story about owls and maps.")]
    est = sample_kl(model, ref_model, tok, prompts, n_samples=2, max_new_tokens=5, seed=3, autocast=False,
                    progress=False)
    fast = sample_kl(model, ref_model, tok, prompts, n_samples=2, max_new_tokens=5, seed=3, progress=False)
    assert est.per_sample.shape == (4,) and est.per_prompt.shape == (2,) and est.samples_per_prompt == 2
    assert np.all(est.per_sample > 0)
    # recompute from the very samples the estimate used (same seeds, same batch), one prefix at a time
    from effalign.generation import decode, prompt_token_ids, render_chat

    texts = [render_chat(tok, p) for p in prompts]
    order = sorted(range(2), key=lambda i: -len(texts[i]))
    res = decode(model, tok, [texts[i] for i in order], k=2, do_sample=True, temperature=1.0, max_new_tokens=5,
                 seed=3 * 100_003)
    brute = np.zeros(4)
    sequences = []
    for i, samples in zip(order, res):
        for j, s in enumerate(samples):
            # a sample cut at the limit keeps its 5 sampled tokens, no end-of-turn token appended
            assert len(s["ids"]) == s["n_tokens"] and (s["finished"] or len(s["ids"]) == 5)
            assert s["finished"] == (s["ids"][-1] == tok.eos_token_id)
            brute[i * 2 + j] = _brute_force_kl(model, ref_model, prompt_token_ids(tok, texts[i]), s["ids"])
            sequences.append((prompt_token_ids(tok, texts[i]), s["ids"]))
    assert est.per_sample == pytest.approx(brute, rel=1e-4, abs=1e-5)
    assert est.per_prompt == pytest.approx(brute.reshape(2, 2).mean(1), rel=1e-4)
    assert est.mean_tokens == pytest.approx(np.mean([len(c) for _, c in sequences]))
    assert fast.per_sample == pytest.approx(brute, rel=1e-2)  # the default bf16-autocast path of float32 weights
    # padding in a batch of unequal lengths changes nothing; a model against itself has KL exactly 0
    unequal = [sequences[0], (sequences[1][0], sequences[1][1][:2])]
    batched = trajectory_kl(model, ref_model, unequal, tok.pad_token_id, batch_size=2, autocast=False)
    assert batched[1] == pytest.approx(_brute_force_kl(model, ref_model, *unequal[1]), rel=1e-4)
    assert np.all(trajectory_kl(model, model, sequences, tok.pad_token_id) == 0.0)


def test_generation_eval_stores_per_prompt_outcomes(tiny):
    from effalign.evaluate import prompt_item_id

    model, tok = tiny
    other, _ = tiny_policy(seed=1)
    prompts = [[{"role": "user", "content": f"Say something about {w}."}] for w in ("cats", "rain", "tea")]

    def reward(ps, responses):
        return [float(len(r) % 3) for r in responses]

    ev = generation_eval(model, tok, prompts, reward, ref_model=other, max_new_tokens=4, n_boot=100, progress=False)
    items = ev.items(prompts)
    assert set(items) == {"id", "cluster", "reward", "ref_reward", "kl"}
    assert items["id"] == items["cluster"] == [prompt_item_id(p) for p in prompts]
    assert items["reward"] == [round(x, 4) for x in reward(prompts, ev.responses)]
    assert ev.kl_estimate.samples_per_prompt == 2 and min(items["kl"]) > 0  # two samples per prompt by default
    assert ev.kl == pytest.approx(np.mean(ev.kl_estimate.per_prompt))
    d = ev.to_dict()
    assert d["gen_kl_samples"] == 2 and 0 <= d["gen_kl_cut_share"] <= 1
    no_ref = generation_eval(model, tok, prompts, reward, max_new_tokens=4, n_boot=100, progress=False).items(prompts)
    assert set(no_ref) == {"id", "cluster", "reward"}  # only what was evaluated
