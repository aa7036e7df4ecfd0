"""The experiment runner end to end with the tiny model: grid expansion, storage, skipping stored runs."""

from __future__ import annotations

import json

import pytest

from effalign import experiment
from effalign.runs import ResultStore


@pytest.fixture()
def setup(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("EFFALIGN_CACHE", str(tmp_path / "cache"))
    model, tok = tiny
    model_dir = tmp_path / "tiny-model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rows = [{"prompt": f"Question {i} about {w}?", "chosen": f"A helpful answer on {w}.", "rejected": f"Nope {i}."}
            for i, w in enumerate(["tea", "owls", "maps", "rain", "salt", "bees", "ink", "moss"] * 3)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    grid = {
        "experiment": "tiny_grid",
        "data": {"source": str(data), "eval_size": 6, "split_seed": 0},
        "model": str(model_dir),
        "samplers": ["random", {"name": "longest", "params": {}}],
        "budgets": [4, "full"],
        "seeds": [0],
        "train": {"epochs": 1, "batch_size": 4, "lora": False, "learning_rate": 1e-3,
                  "max_prompt_tokens": 32, "max_completion_tokens": 16},
        "eval": {"n_boot": 100},
    }
    return grid, tmp_path / "results"


def test_grid_runs_stores_and_skips(setup, monkeypatch):
    grid, store_dir = setup
    specs = experiment.expand_grid(grid)
    assert [(s.sampler, s.budget) for s in specs] == [("random", 4), ("full", None), ("longest", 4)]
    calls = []
    real = experiment.train_dpo
    monkeypatch.setattr(experiment, "train_dpo", lambda *a, **k: calls.append(1) or real(*a, **k))
    records = experiment.run_specs(specs, store_dir, progress=False)
    assert len(records) == 3 and len(calls) == 3
    by_sampler = {r["spec"]["sampler"]: r for r in records}
    assert by_sampler["random"]["metrics"]["n_train"] == 4
    assert by_sampler["full"]["metrics"]["n_train"] == by_sampler["full"]["metrics"]["pool_size"]
    for r in records:
        m = r["metrics"]
        assert 0 <= m["pref_accuracy"] <= 1 and m["pref_n"] >= 6
        assert len(r["extra"]["loss_curve"]) >= 1 and len(r["extra"]["selected"]) == m["n_train"]
        assert r["provenance"]["git_commit"]
    again = experiment.run_specs(specs, store_dir, progress=False)
    assert len(calls) == 3 and [r["key"] for r in again] == [r["key"] for r in records]
    assert len(ResultStore(store_dir).records("tiny_grid")) == 3


def test_grid_errors(setup):
    grid, _ = setup
    with pytest.raises(ValueError, match="exactly one of 'budgets' or 'fractions'"):
        experiment.expand_grid({**grid, "fractions": [0.5]})
    with pytest.raises(ValueError, match="missing"):
        experiment.expand_grid({"experiment": "x"})
    with pytest.raises(ValueError, match="unknown data fields"):
        experiment.load_split({"source": "x", "colour": 1})
