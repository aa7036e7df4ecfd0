"""Automatic progress bars: on a terminal for long work, never in a notebook's outputs."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from effalign import embed, progress


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("EFFALIGN_PROGRESS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    return monkeypatch


def test_terminal_shows_bars_for_long_work_only(clean_env):
    assert progress.auto_progress(None, long_work=True)
    assert not progress.auto_progress(None, long_work=False)


def test_notebook_kernel_hides_automatic_bars(clean_env):
    clean_env.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    clean_env.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.in_notebook()
    assert not progress.auto_progress(None, long_work=True)
    assert progress.auto_progress(True, long_work=False), "an explicit request wins"


def test_environment_switches(clean_env):
    clean_env.setenv("TQDM_DISABLE", "1")
    assert not progress.auto_progress(None, long_work=True)
    clean_env.setenv("EFFALIGN_PROGRESS", "1")
    assert progress.auto_progress(None, long_work=True), "EFFALIGN_PROGRESS=1 forces bars on"
    clean_env.setenv("EFFALIGN_PROGRESS", "0")
    clean_env.delenv("TQDM_DISABLE")
    assert not progress.auto_progress(None, long_work=True)
    assert not progress.auto_progress(False, long_work=True)


class _Encoder:
    def __init__(self):
        self.show = []

    def encode(self, texts, *, show_progress_bar, **kwargs):
        self.show.append(show_progress_bar)
        return np.ones((len(texts), embed.EMBED_DIM), dtype=np.float32)


@pytest.mark.parametrize("notebook, expected", [(False, True), (True, False)])
def test_embedding_many_texts_shows_a_bar_on_a_terminal_not_in_a_notebook(clean_env, notebook, expected):
    encoder = _Encoder()
    clean_env.setattr(embed, "load_embedder", lambda name: encoder)
    if notebook:
        clean_env.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
        clean_env.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    embed.embed_texts([f"text {i}" for i in range(300)], cache=False)
    embed.embed_texts(["one"], cache=False)
    assert encoder.show == [expected, False]
