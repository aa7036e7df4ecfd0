"""Embeddings: shape, normalisation, on-disk cache hits."""

from __future__ import annotations

import numpy as np
import pytest

from effalign import embed
from effalign.data import PreferencePair


def test_embeddings_shape_normalised_and_cached(tmp_path, monkeypatch):
    cache = tmp_path / "emb.sqlite"
    texts = ["The cat sat on the mat.", "A feline rested on a rug.", "Quarterly tax filing deadlines.", "The cat sat on the mat."]
    vecs = embed.embed_texts(texts, cache=cache)
    assert vecs.shape == (4, embed.EMBED_DIM) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs[0], vecs[3])
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2]  # paraphrase closer than an unrelated sentence

    def boom(*args, **kwargs):  # a cache hit must not load or run the model
        raise AssertionError("model called on a cache hit")

    monkeypatch.setattr(embed, "load_embedder", boom)
    again = embed.embed_texts(texts[:3], cache=cache)
    assert np.array_equal(again, vecs[:3])
    with pytest.raises(AssertionError, match="model called"):
        embed.embed_texts(["a sentence never seen"], cache=cache)


def test_pair_embeddings_and_bad_input(tmp_path):
    pair = PreferencePair([{"role": "user", "content": "Hi"}], [{"role": "assistant", "content": "Hello"}], [{"role": "assistant", "content": "Go away"}])
    out = embed.pair_embeddings([pair, pair], cache=tmp_path / "e.sqlite")
    assert set(out) == {"prompt", "chosen", "rejected"} and out["prompt"].shape == (2, embed.EMBED_DIM)
    assert embed.embed_texts([], cache=False).shape == (0, embed.EMBED_DIM)
    with pytest.raises(TypeError, match="item 1 is int"):
        embed.embed_texts(["a", 3], cache=False)
