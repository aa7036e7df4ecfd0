"""Shared fixtures. Tests run offline; caches of materialised models are shared across runs
(``~/.cache/effalign`` or ``$EFFALIGN_CACHE``), embeddings caches are per test where it matters."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def smollm2():
    """The materialised SmolLM2-135M-Instruct policy (bf16) and its tokenizer."""
    from effalign.models import load_policy

    return load_policy("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny():
    """A tiny random Llama with SmolLM2's tokenizer (float32)."""
    from effalign.models import tiny_policy

    return tiny_policy(seed=0)


@pytest.fixture(scope="session")
def hh_path():
    from effalign.data import resolve_source

    path = resolve_source("hh-harmless")
    if not os.path.exists(path):
        pytest.skip(f"shared HH data not found at {path} (set EFFALIGN_SHARED)")
    return path


def write_tiny_pairs(path, n: int = 24):
    """A small plain-string preference file (``n`` pairs: a helpful chosen answer and a terse
    rejected one per question) for end-to-end grid tests with the tiny model; returns ``path``."""
    import json

    words = ["tea", "owls", "maps", "rain", "salt", "bees", "ink", "moss"]
    rows = [{"prompt": f"Question {i} about {w}?", "chosen": f"A helpful answer on {w}.", "rejected": f"Nope {i}."}
            for i, w in enumerate((words * (n // len(words) + 1))[:n])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
