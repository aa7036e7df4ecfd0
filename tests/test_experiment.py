"""The experiment runner end to end with the tiny model: grid expansion, storage, skipping stored runs."""

from __future__ import annotations

import json

import pytest
from conftest import write_tiny_pairs

from effalign import experiment
from effalign.runs import ResultStore


@pytest.fixture()
def setup(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("EFFALIGN_CACHE", str(tmp_path / "cache"))
    model, tok = tiny
    model_dir = tmp_path / "tiny-model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = write_tiny_pairs(tmp_path / "pairs.jsonl")
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
    seeds = [int(line.split()[3]) for line in lines[1:-1]]
    assert seeds == [0, 0, 0, 0, 1, 1, 1, 1]  # every grid's seed 0 first
    assert all(line.endswith("to run") for line in lines[1:-1]) and lines[-1].startswith("0 of 8 distinct runs stored")


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


# --------------------------------------------------------------------------- pools, budgets, per-item outcomes


def _prompts(data):
    return {str(p.prompt) for p in data}


def test_pool_per_seed_draws_a_fresh_pool_with_a_fixed_eval_set(setup):
    grid, _ = setup
    source = grid["data"]["source"]
    data = {"source": source, "eval_size": 6, "split_seed": 0, "pool_size": 8, "val_size": 4, "pool_per_seed": True}
    s0, s1, again = (experiment.load_splits(data, seed) for seed in (0, 1, 0))
    assert (len(s0.pool), len(s0.eval), len(s0.val)) == (8, 6, 4)
    assert s0.eval.fingerprint() == s1.eval.fingerprint()  # the evaluation set does not depend on the seed
    assert s0.pool.fingerprint() != s1.pool.fingerprint() and s0.val.fingerprint() != s1.val.fingerprint()
    assert s0.pool.fingerprint() == again.pool.fingerprint()  # seeded: the same pool for every sampler of a seed
    for s in (s0, s1):
        assert not _prompts(s.pool) & _prompts(s.eval) and not _prompts(s.val) & (_prompts(s.pool) | _prompts(s.eval))
    fixed = {k: v for k, v in data.items() if k != "pool_per_seed"}
    assert experiment.load_splits(fixed, 0).pool.fingerprint() == experiment.load_splits(fixed, 1).pool.fingerprint()
    with pytest.raises(ValueError, match="pool_size 30 but only"):
        experiment.load_splits({**data, "pool_size": 30}, 0)


def test_without_the_new_fields_the_split_is_the_original_one(setup):
    import numpy as np

    from effalign.data import load_preferences, split_by_prompt

    grid, _ = setup
    data = {"source": grid["data"]["source"], "eval_size": 6, "split_seed": 3, "pool_size": 9}
    rest, ev = split_by_prompt(load_preferences(data["source"]), 6, seed=3)
    expected = rest.subset(sorted(np.random.default_rng(3).permutation(len(rest))[:9].tolist()))
    for seed in (0, 4):
        s = experiment.load_splits(data, seed)
        assert s.pool.fingerprint() == expected.fingerprint() and s.eval.fingerprint() == ev.fingerprint()
        assert len(s.val) == 0


ARMS = {
    "epochs": {},
    "steps": {"budget": "steps", "max_steps": 5},
    "converge": {"budget": "converge", "max_steps": 12, "val_every": 2, "patience": 2},
}


def test_budget_arms_store_compute_and_per_item_outcomes(setup, monkeypatch):
    from effalign.evaluate import pair_item_id

    grid, store_dir = setup
    data = {**grid["data"], "pool_size": 10, "val_size": 4, "pool_per_seed": True}
    computed = []
    real = experiment.reference_logps
    monkeypatch.setattr(experiment, "reference_logps",
                        lambda *a, **k: (lambda r: computed.append(r.computed) or r)(real(*a, **k)))
    specs = [s for arm in ARMS.values() for s in experiment.expand_grid(
        {**grid, "data": data, "samplers": ["random"], "budgets": [4], "seeds": [0, 1],
         "train": {**grid["train"], **arm}})]
    assert len({s.key for s in specs}) == 6  # each arm is a train override with its own run keys
    records = experiment.run_specs(specs, store_dir, progress=False)
    splits = {seed: experiment.load_splits(data, seed) for seed in (0, 1)}
    distinct = {pair_item_id(p) for s in splits.values() for part in (s.pool, s.eval, s.val) for p in part}
    assert sum(computed) == len(distinct)  # every pair's reference log-probs computed once, for all runs
    for rec in records:
        m, arm = rec["metrics"], rec["spec"]["train"].get("budget", "epochs")
        assert m["budget"] == arm and m["n_train"] == 4 and m["pool_size"] == 10 and m["val_n"] == 4
        for name in ("steps", "epochs", "pairs_seen", "tokens", "stopped_step", "pref_loss", "pref_margin"):
            assert m[name] is not None, name
        assert m["lr_first"] > 0 and m["val_loss"] > 0
        if arm == "steps":
            assert m["steps"] == 5 and m["pairs_seen"] == 20 and m["epochs"] == 5
        elif arm == "epochs":
            assert m["steps"] == 1 and m["pairs_seen"] == 4
        else:
            assert m["stopped_step"] <= 12 and m["best_step"] <= m["stopped_step"] and rec["extra"]["val_curve"]
        items = rec["items"]["pairs"]
        assert set(rec["items"]) == {"pairs"} and "items" not in m
        ev = splits[rec["spec"]["seed"]].eval
        assert items["id"] == [pair_item_id(p) for p in ev] and len(items["margin"]) == m["pref_n"] == 6
        assert set(items["correct"]) <= {0.0, 0.5, 1.0}
        assert abs(sum(items["margin"]) / 6 - m["pref_margin"]) < 1e-3
        assert sum(items["correct"]) / 6 == pytest.approx(m["pref_accuracy"])
    pools = {rec["spec"]["seed"]: rec["extra"]["data_fingerprint"]["pool"] for rec in records}
    evals = {rec["extra"]["data_fingerprint"]["eval"] for rec in records}
    assert pools[0] != pools[1] and len(evals) == 1


def test_testbed_prompts_are_a_seeded_sample_not_the_first_ones():
    from effalign.testbed import load_eval_prompts

    every = load_eval_prompts()
    assert len(experiment.testbed_eval_prompts({"gen_prompts": "testbed"})) == len(every) == 400
    sample = experiment.testbed_eval_prompts({"gen_prompts": "testbed", "gen_n": 20, "split_seed": 0})
    texts = [p.messages()[0]["content"] for p in sample]
    assert len(sample) == 20 and texts != [p.messages()[0]["content"] for p in every[:20]]
    again = experiment.testbed_eval_prompts({"gen_prompts": "testbed", "gen_n": 20, "split_seed": 0})
    assert [p.messages() for p in again] == [p.messages() for p in sample]


def test_smoke_profile_runs_every_budget_arm(hh_path, tmp_path, monkeypatch):
    """The smoke profile's arms (a train override each) on its HH track, through the runner."""
    from effalign.book import load_profile
    from effalign.runs import RunSpec

    from effalign import logps

    monkeypatch.setattr(logps, "cache_dir", lambda: tmp_path)  # reference log-probs only; models stay cached
    common = load_profile("smoke")["common"]
    assert set(common["arms"]) == {"epochs", "steps", "converge"}
    track = common["tracks"]["hh"]
    ctx = experiment.Context()
    for name, arm in common["arms"].items():
        spec = RunSpec(experiment="smoke_arms", data=track["data"], model=common["model"], sampler="random",
                       budget=8, seed=0, train={**common["train"], **(track.get("train") or {}), **arm},
                       eval={**(track.get("eval") or {}), "n_boot": 50})
        m = experiment.run_experiment(spec, ctx, progress=False)
        assert m["budget"] == name and m["steps"] >= 1 and m["pref_n"] == len(m["items"]["pairs"]["id"])
        if name != "epochs":
            assert m["stopped_step"] <= arm["max_steps"]
        if name == "steps":
            assert m["steps"] == arm["max_steps"]


def test_testbed_run_stores_per_prompt_outcomes(tmp_path, monkeypatch):
    from effalign.runs import RunSpec, make_record

    from effalign import logps

    monkeypatch.setattr(logps, "cache_dir", lambda: tmp_path)  # reference log-probs only; models stay cached
    spec = RunSpec(experiment="tb", model="tiny-random", sampler="random", budget=4, seed=0,
                   data={"source": "testbed", "eval_source": "testbed-eval", "eval_size": 10, "gen_prompts": "testbed",
                         "gen_n": 3, "pool_size": 12, "val_size": 4, "pool_per_seed": True},
                   train={"batch_size": 4, "lora": False, "learning_rate": 1e-3, "max_prompt_tokens": 32,
                          "max_completion_tokens": 16},
                   eval={"generation": True, "max_new_tokens": 4, "n_boot": 50})
    metrics = experiment.run_experiment(spec, progress=False)
    extra = metrics.pop("extra")
    record = make_record(spec, metrics, "t0", "t1", 1.0, extra)
    prompts = record["items"]["prompts"]
    assert set(prompts) == {"id", "cluster", "reward", "ref_reward", "kl"} and len(prompts["id"]) == 3
    assert prompts["id"] == prompts["cluster"] and min(prompts["kl"]) >= 0
    assert record["metrics"]["gen_kl_samples"] == 2 and record["metrics"]["gen_n"] == 3
    assert abs(sum(prompts["reward"]) / 3 - record["metrics"]["gen_reward"]) < 1e-3
    assert len(record["items"]["pairs"]["id"]) == record["metrics"]["pref_n"] == 10


def test_an_unchanged_policy_ties_on_every_held_out_pair_whatever_the_cache_holds(tmp_path, monkeypatch):
    """Evaluation reference log-probs share the policy's evaluation batches (bf16 sums depend on them)."""
    import numpy as np

    from effalign import logps
    from effalign.logps import TokenizeConfig, reference_logps
    from effalign.models import load_policy, tiny_policy
    from effalign.runs import RunSpec

    monkeypatch.setattr(logps, "cache_dir", lambda: tmp_path)
    model, tok = tiny_policy(seed=0, hidden_size=256)  # wide enough for bf16 sums to depend on the batch
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    rows = [{"prompt": "Why " * (3 + 5 * i) + "?", "chosen": "Because " * (1 + 3 * i), "rejected": "No " * (2 + 7 * i % 11)}
            for i in range(16)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {"source": str(tmp_path / "d.jsonl"), "eval_size": 8, "split_seed": 0}
    _, ev = experiment.load_split(data)
    base = load_policy(str(tmp_path / "m"))  # bf16, as LoRA trains it
    tokenize = TokenizeConfig(32, 16)
    cached = reference_logps(ev, base, config=tokenize, batch_size=1, progress=False)  # other batches, on disk
    batched = reference_logps(ev, base, config=tokenize, batch_size=4, cache=False, progress=False)
    assert not np.array_equal(cached.chosen - cached.rejected, batched.chosen - batched.rejected)
    spec = RunSpec(experiment="t", data=data, model=str(tmp_path / "m"), sampler="random", budget=4, seed=0,
                   train={"batch_size": 4, "lora": True, "learning_rate": 0.0, "max_prompt_tokens": 32,
                          "max_completion_tokens": 16},  # LoRA at rate 0: the weights do not move
                   eval={"n_boot": 50, "batch_size": 4})
    m = experiment.run_experiment(spec, progress=False)
    assert m["pref_ties"] == m["pref_n"] == 8 and m["pref_margin"] == 0.0 and m["pref_accuracy"] == 0.5
