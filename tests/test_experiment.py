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


def test_cli_run_takes_several_grids_seed_by_seed(setup, tmp_path, capsys):
    import yaml

    from effalign.cli import main

    grid, store_dir = setup
    paths = []
    for name in ("grid_a", "grid_b"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**grid, "experiment": name, "seeds": [0, 1], "budgets": [4]}))
        paths.append(path)
    assert main(["run", "--dry-run", "--grid", str(paths[0]), "--grid", str(paths[1]), "--store", str(store_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "8 runs in 2 grid(s)" in lines[0]
    seeds = [int(line.split()[-1]) for line in lines[1:]]
    assert seeds == [0, 0, 0, 0, 1, 1, 1, 1]  # every grid's seed 0 first


def test_eval_size_samples_a_separate_eval_source(setup, tmp_path):
    grid, _ = setup
    source = grid["data"]["source"]
    pool, ev = experiment.load_split({"source": source, "eval_source": source})
    assert len(ev) == len(pool) == 24
    pool, ev5 = experiment.load_split({"source": source, "eval_source": source, "eval_size": 5, "split_seed": 1})
    assert len(ev5) == 5 and {str(p.prompt) for p in ev5.pairs} <= {str(p.prompt) for p in ev.pairs}
    again = experiment.load_split({"source": source, "eval_source": source, "eval_size": 5, "split_seed": 1})[1]
    assert [p.prompt for p in again.pairs] == [p.prompt for p in ev5.pairs]


def test_rerun_reproduces_a_stored_run_and_reports_the_seed_spread(setup, capsys):
    from effalign.cli import main

    grid, store_dir = setup
    specs = experiment.expand_grid({**grid, "samplers": ["random"], "budgets": [4], "seeds": [0, 1]})
    records = experiment.run_specs(specs, store_dir, progress=False)
    key = records[0]["key"]
    assert main(["rerun", key, "--store", str(store_dir), "--quiet", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["key"] == key and out["threads"] == 1
    assert out["stored"] == records[0]["metrics"]["pref_accuracy"]
    assert out["new"] == pytest.approx(out["stored"], abs=1e-9)  # same data, seed and threads: same result
    assert out["seed_values"] == [r["metrics"]["pref_accuracy"] for r in records]  # this seed, then the other
    assert main(["rerun", "0" * 16, "--store", str(store_dir)]) == 2
