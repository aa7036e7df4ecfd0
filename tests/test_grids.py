"""effalign.grids and the record helpers of effalign.experiment (no training)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from synthetic import record

from effalign import grids
from effalign.experiment import availability, collect, expand_grid, missing_specs, stored_records
from effalign.runs import ResultStore, RunSpec
from effalign.tables import concat


def sampler_records():
    return [record(s, b, seed, pref_accuracy=0.5 + 0.01 * seed) for s in ("random", "isa") for b in (5, 10)
            for seed in range(3)]


def test_store_helpers(tmp_path):
    store = ResultStore(tmp_path)
    recs = sampler_records()
    for r in recs[:4]:
        store.append(r)
    specs = [RunSpec.from_dict(r["spec"]) for r in recs]
    assert [r["key"] for r in stored_records(specs, store)] == [r["key"] for r in recs[:4]]
    assert len(missing_specs(specs, store)) == len(recs) - 4
    assert collect(specs, tmp_path, run=False) == stored_records(specs, store)
    avail = availability({"a": specs}, store)
    assert avail.loc["a", "runs"] == len(recs) and avail.loc["a", "stored"] == 4
    both = availability({"a": specs, "b": specs[:6]}, store)  # b shares every run with a
    assert both.loc["b", "stored"] == 4 and both.loc["all (distinct runs)"].tolist() == [len(recs), 4]
    assert concat({"a": pd.DataFrame(), "b": None}).empty
    assert list(concat({"x": pd.DataFrame({"v": [1]})}).index.names) == ["track", None]


def _profile(tmp_path, arms=None):
    rows = [{"prompt": f"Question {i}?", "chosen": f"Answer {i} in full.", "rejected": f"No {i}."} for i in range(30)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    track = {"metric": "pref_accuracy", "secondary": [], "data": {"source": str(data), "eval_size": 6}, "eval": {}}
    common = {"model": "tiny-random", "seeds": [0, 1], "scaling_seeds": [0], "train": {"epochs": 1},
              "tracks": {"t": track}, "scaling_fractions": [0.1, 0.5, 1.0], "samplers": ["random", "isa"],
              "budgets": [0.1, 0.25], "ablation": [{"score": "entropy"}], "ablation_budget": 0.25,
              "gpu_dpo": {"track": "t", "fraction": 0.25, "seed": 0, "cuda": {"model": "tiny-random"},
                          "cpu": {"model": "tiny-random", "data": {"pool_size": 10}, "train": {"lora": False}}}}
    if arms is not None:
        common["scaling_arms"] = arms
    return {"profile": "t", "common": common}


def test_grids_match_the_command_line(tmp_path):
    profile = _profile(tmp_path)
    built = grids.notebook_grids(profile, device="cpu")
    assert list(built) == ["t_scaling", "t_samplers", "t_full", "t_ablation", "gpu_dpo_full", "gpu_dpo_subset"]
    assert [g["experiment"] for g in built.values()] == ["t_subsets"] * 4 + ["gpu_dpo"] * 2
    assert built["gpu_dpo_subset"]["data"]["pool_size"] == 10
    assert built["gpu_dpo_subset"]["train"] == {"epochs": 1, "lora": False}
    keys = {name: {s.key for s in expand_grid(g)} for name, g in built.items()}
    assert len(keys["t_scaling"] & keys["t_samplers"]) == 1  # random at 10%, seed 0: one run for both grids
    assert keys["t_scaling"] & keys["t_full"]  # the whole pool at seed 0 is shared too
    (tmp_path / "params").mkdir()
    complete = {"base": None, **{k: v for k, v in profile.items() if k != "profile"}}  # merged over nothing
    (tmp_path / "params" / "t.yaml").write_text(yaml.safe_dump(complete))
    paths = grids.export_grids(str(tmp_path / "params" / "t.yaml"), tmp_path / "grids", device="cpu")
    assert [p.stem for p in paths] == list(built)
    for path, grid in zip(paths, built.values()):
        assert [s.key for s in expand_grid(yaml.safe_load(path.read_text()))] == [s.key for s in expand_grid(grid)]


def test_training_arms_are_extra_cells_sharing_identical_specs(tmp_path):
    arms = {"equal_steps": {"epochs": 3}, "fixed_epochs": {}}
    built = grids.notebook_grids(_profile(tmp_path, arms), device="cpu")
    assert {"t_scaling_equal_steps", "t_scaling_fixed_epochs"} <= set(built) and "t_scaling" not in built
    assert built["t_scaling_equal_steps"]["train"] == {"epochs": 3}
    keys = {name: {s.key for s in expand_grid(g)} for name, g in built.items()}
    assert not keys["t_scaling_equal_steps"] & keys["t_scaling_fixed_epochs"]
    plain = grids.notebook_grids(_profile(tmp_path), device="cpu")
    assert keys["t_scaling_fixed_epochs"] == {s.key for s in expand_grid(plain["t_scaling"])}
    assert grids.arm_of("scaling") == "default" and grids.arm_of("scaling_equal_steps") == "equal_steps"
    assert grids.arm_of("samplers") is None
    assert grids.equal_compute_arms({"a": {"budget": "steps"}, "b": {"budget": "epochs"}, "c": None}) == ["a"]


def test_make_grid_overrides_and_errors():
    track = {"data": {"source": "x", "pool_size": 10}, "eval": {"n_boot": 5}}
    g = grids.make_grid("hh", "dpo", track, model="m", seeds=[0], train={"epochs": 1}, budgets=["full"],
                        experiment="gpu_dpo", data_overrides={"pool_size": None, "eval_size": 3},
                        train_overrides={"lora": False}, eval_overrides={"n_boot": 9})
    assert g["experiment"] == "gpu_dpo" and g["data"] == {"source": "x", "eval_size": 3}
    assert g["train"] == {"epochs": 1, "lora": False} and g["eval"] == {"n_boot": 9}
    with pytest.raises(ValueError, match="exactly one"):
        grids.make_grid("hh", "x", track, model="m", seeds=[0], train={})
    assert grids.ablation_samplers([{"dim": 4}]) == ["random", "isa", {"name": "isa", "params": {"dim": 4}}]
