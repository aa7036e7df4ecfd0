"""Performance plumbing: every run's cost breakdown, and the opt-in bf16 embeddings against float32."""

from __future__ import annotations

import math

import numpy as np
import pytest

from effalign import experiment, tables
from effalign.data import PreferencePair
from effalign.runs import RunSpec, make_record, record_problem


def test_a_testbed_run_records_its_cost_per_part(tmp_path, monkeypatch):
    from effalign import logps

    monkeypatch.setattr(logps, "cache_dir", lambda: tmp_path)  # reference log-probs computed afresh
    spec = RunSpec(experiment="tb", model="tiny-random", sampler="random", budget=4, seed=0,
                   data={"source": "testbed", "eval_source": "testbed-eval", "eval_size": 6, "gen_prompts": "testbed",
                         "gen_n": 2, "pool_size": 8, "val_size": 2, "pool_per_seed": True},
                   train={"batch_size": 4, "lora": False, "learning_rate": 1e-3, "max_prompt_tokens": 32,
                          "max_completion_tokens": 16},
                   eval={"generation": True, "max_new_tokens": 4, "kl_samples": 1, "n_boot": 20})
    ctx = experiment.Context()
    metrics = experiment.run_experiment(spec, ctx, progress=False)
    extra = metrics.pop("extra")
    record = make_record(spec, metrics, "t0", "t1", 1.0, extra)
    assert record_problem(record, "tb") is None
    m = record["metrics"]
    parts = ("reference", "selection", "training", "evaluation", "generation", "other")
    assert all(m[f"cost_{p}_s"] >= 0 for p in parts)
    assert sum(m[f"cost_{p}_s"] for p in parts) == pytest.approx(m["cost_run_s"], abs=0.05)
    # reference: pool (8) + validation (2) + evaluation (6) pairs were computed now; tokens = unpadded tokens
    assert m["cost_reference_tokens"] > 0 and m["cost_reference_s"] > 0
    assert m["cost_training_tokens"] == m["tokens"] and m["cost_training_s"] == m["wall_s"]
    assert 0 < m["cost_evaluation_tokens"] <= m["cost_reference_tokens"]
    # 2 greedy answers and 2 KL samples of at most 4 new tokens each
    assert 0 < m["cost_generation_tokens"] <= 4 * 4 + 4
    # a second run in the same process reads the evaluation reference from memory: no reference tokens
    again = experiment.run_experiment(spec.replace(budget=3), ctx, progress=False)
    assert again["cost_reference_tokens"] == 0
    frame = tables.cost_table([record])
    assert frame.loc[0, "evaluation_share"] == pytest.approx(m["cost_evaluation_s"] / m["cost_run_s"])
    table = tables.cost_breakdown_table(record)
    assert list(table["part"]) == [*parts, "whole run"] and table["share"].iloc[:-1].sum() == pytest.approx(1, abs=0.01)


def test_old_records_without_a_breakdown_read_as_missing():
    record = {"key": "k", "spec": {"sampler": "random", "seed": 0}, "metrics": {"wall_s": 3.0}}
    frame = tables.cost_table([record])
    assert math.isnan(frame.loc[0, "training_s"]) and math.isnan(frame.loc[0, "evaluation_share"])
    with pytest.raises(ValueError, match="no cost breakdown"):
        tables.cost_breakdown_table(record)


TEXTS = [
    "How do I keep basil alive on a windowsill through the winter?",
    "Water it when the top of the soil is dry, give it the sunniest window, and pinch off flower buds.",
    "I can't help with that.",
    "What is the capital of Australia? Many people think it is Sydney, but it is Canberra, chosen as a compromise.",
    "Explain, step by step, how a bicycle's derailleur moves the chain between sprockets while pedalling.",
    "ok",
]


def test_bf16_embeddings_agree_with_float32_and_are_cached_apart(tmp_path):
    from effalign.embed import MINILM_ALIAS, embed_texts, embedder_id

    assert embedder_id(MINILM_ALIAS + "@bf16") == embedder_id(MINILM_ALIAS) + "@bf16"
    cache = tmp_path / "emb.sqlite"
    fp32 = embed_texts(TEXTS, cache=cache, progress=False)
    bf16 = embed_texts(TEXTS, model=MINILM_ALIAS + "@bf16", cache=cache, progress=False)
    cos = np.sum(fp32 * bf16, axis=1)
    assert cos.min() >= 0.999, cos
    assert not np.array_equal(fp32, bf16)  # really computed in bf16, not read from the float32 entries
    # cached: the float32 vectors are still the float32 ones
    np.testing.assert_array_equal(embed_texts(TEXTS, cache=cache, progress=False), fp32)


def test_eager_training_attention_is_opt_in_and_evaluation_stays_on_sdpa(tmp_path):
    from effalign.logps import reference_logps
    from effalign.models import tiny_policy
    from effalign.train import DPOTrainConfig, train_dpo

    with pytest.raises(ValueError, match="train_attention"):
        DPOTrainConfig(train_attention="flash")
    assert DPOTrainConfig().train_attention == "sdpa"
    pairs = [PreferencePair([{"role": "user", "content": f"Question {i}: what about {w}?"}],
                            [{"role": "assistant", "content": f"A careful answer about {w}."}],
                            [{"role": "assistant", "content": f"No {i}."}])
             for i, w in enumerate(["tea", "owls", "maps", "rain"] * 2)]
    losses = {}
    for kernel in ("sdpa", "eager"):
        model, tok = tiny_policy(seed=0)
        config = DPOTrainConfig(epochs=2, batch_size=4, lora=False, learning_rate=2e-3, max_prompt_tokens=32,
                                max_completion_tokens=16, train_attention=kernel)
        ref = reference_logps(pairs, (model, tok), config=config.tokenize, cache=False, progress=False)
        result = train_dpo((model, tok), pairs, config, ref=ref, progress=False)
        assert result.model.config._attn_implementation == "sdpa"  # evaluated like the reference
        assert result.metrics["cpu_s"] > 0
        losses[kernel] = [c["loss"] for c in result.loss_curve]
    # the same training, up to rounding: the kernels agree closely on the tiny float32 model
    assert np.allclose(losses["sdpa"], losses["eager"], atol=1e-3)
