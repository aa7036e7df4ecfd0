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


# ----------------------------------------------------------------------------- the design path


def _design_profile(tmp_path):
    prof = _profile(tmp_path)
    c = prof["common"]
    for legacy in ("scaling_seeds", "scaling_fractions", "samplers", "budgets", "ablation", "ablation_budget"):
        c.pop(legacy)
    c["tracks"]["t"]["arms"] = {"equal_steps": {"budget": "steps", "max_steps": 3},
                                "fixed_epochs": {"budget": "epochs", "epochs": 1}}
    c["design"] = {
        "experiment": "{track}_v2",
        "primary": {"sampler": "isa", "baseline": "random", "fraction": 0.25, "arm": "equal_steps", "seeds": 4,
                    "pilot_seeds": 2, "min_seeds": 3, "effect": {"t": 0.05}, "alpha": 0.05, "power": 0.8},
        "secondary": {"multiplicity": "holm", "equivalence_margin": {"t": 0.05}},
        "grids": {"full_pool": {"samplers": ["random"], "fractions": [1.0], "arm": "equal_steps", "seeds": 3},
                  "samplers": {"samplers": ["kcenter"], "fractions": [0.25], "arm": "equal_steps", "seeds": 2},
                  "scaling_steps": {"samplers": ["random"], "fractions": [0.1, 0.5], "arm": "equal_steps", "seeds": 2},
                  "scaling_epochs": {"samplers": ["random"], "fractions": [0.5, 1.0], "arm": "fixed_epochs", "seeds": 2}}}
    c["analysis"] = {}
    c["gpu_dpo"]["cpu"] = {"design": True}
    return prof


def _store_design_runs(built, store, skip=()):
    """A record for every spec of the design's grids except the (grid, seed) pairs in ``skip``: accuracy
    0.6 + 0.1 · log(n) / log(pool), ISA 0.04 ahead, the fixed-epoch arm 0.02 behind, small seed noise."""
    import math

    from effalign.runs import make_record

    rng = __import__("numpy").random.default_rng(0)
    for name, grid in built.items():
        for spec in expand_grid(grid):
            if (name.split("_", 1)[1], spec.seed) in skip or spec.key in {r["key"] for r in store.records(spec.experiment)}:
                continue
            n = spec.budget or 24
            y = 0.6 + 0.1 * math.log(n) / math.log(24) + (0.04 if spec.sampler == "isa" else 0.0) \
                - (0.02 if grid["arm"] == "fixed_epochs" else 0.0) + rng.normal(0, 0.005)
            store.append(make_record(spec, {"n_train": n, "pool_size": 24, "fraction": n / 24, "pref_accuracy": y,
                                            "wall_s": float(n), "select_s": 0.5, "tokens": 100 * n},
                                     "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:10+00:00", 10.0))


def test_design_profiles_give_the_design_grids_and_its_analysis(tmp_path):
    from effalign.design import analysis_plan, design_grids

    prof = _design_profile(tmp_path)
    built = grids.notebook_grids(prof, device="cpu")
    assert list(built) == list(design_grids(prof)) and list(built)[0] == "t_primary"
    assert built["t_scaling_epochs"]["train"] == {"epochs": 1, "budget": "epochs"}
    plan = analysis_plan(prof["common"])
    assert (plan.primary_budget, plan.plateau_arm, plan.effect_of("t"), plan.margin("t"), plan.delta("t")) == \
        (0.25, "equal_steps", 0.05, 0.05, 0.05)
    prof["common"]["analysis"] = {"alpha": 0.1}
    with pytest.raises(ValueError, match="repeats"):
        analysis_plan(prof["common"])
    prof["common"]["analysis"] = {}
    design_keys = {s.key for g in built.values() for s in expand_grid(g)}
    pair = grids.gpu_dpo_grids(prof["common"]["gpu_dpo"], prof["common"]["tracks"], train=prof["common"]["train"],
                               device="cpu", design=prof["common"]["design"], model="tiny-random")
    pair_specs = [s for g in pair for s in expand_grid(g)]
    assert [s.sampler for s in pair_specs] == ["full", "isa"] and {s.key for s in pair_specs} <= design_keys
    prof["common"]["design"]["grids"]["full_pool"]["tracks"] = ["other"]  # the design runs no whole pool here
    with pytest.raises(ValueError, match="set gpu_dpo.track"):
        grids.gpu_dpo_grids(prof["common"]["gpu_dpo"], prof["common"]["tracks"], train=prof["common"]["train"],
                            device="cpu", design=prof["common"]["design"], model="tiny-random")


def test_design_findings_on_partial_records_say_what_is_missing(tmp_path):
    from effalign import findings
    from effalign.notebook import missing_cells, missing_statements, profile_findings, profile_runs

    prof = _design_profile(tmp_path)
    built = grids.notebook_grids(prof, device="cpu")
    store = ResultStore(tmp_path / "store")
    _store_design_runs(built, store, skip={("full_pool", 2), ("scaling_epochs", 0), ("scaling_epochs", 1)})
    cells = missing_cells(built, store)
    lacking = cells[cells["stored"] < cells["runs"]]
    assert set(lacking["grid"]) == {"t_full_pool", "t_scaling_epochs"}
    assert lacking.set_index("grid").loc["t_full_pool", "missing"] == "2"
    text = " ".join(missing_statements(cells))
    assert "Missing in t_full_pool: full on whole pool: seeds 2" in text
    runs = profile_runs(prof, store)
    plan, result = profile_findings(prof, store, n_boot=0, runs=runs)
    f = result["t"]
    assert set(f.plateau) == {"equal_steps", "fixed_epochs"} and f.plateau_arm == "equal_steps"
    # the equal-steps plateau pairs the whole pool (seeds 0, 1 stored) with scaling_steps' half (seeds 0, 1)
    assert f.plateau["equal_steps"].estimate.n_seeds == 2
    assert "no runs of the fixed_epochs arm" in f.plateau["fixed_epochs"].sentence()
    assert "not resolved" in f.data_or_compute()
    # the primary contrast uses the seeds the pilot rule fixed, though all 4 of the design's maximum are stored
    assert f.sampler.estimate.n_seeds == f.pilot.seeds and f.sampler.estimate.value == pytest.approx(0.04, abs=0.02)
    assert f.subset.estimate.n_seeds == 2 and not f.subset.caveats  # equal steps: no compute caveat
    assert list(f.secondary["label"]) == ["kcenter", "isa"] or set(f.secondary["label"]) == {"kcenter", "isa"}
    assert f.pilot is not None and f.pilot.seeds == 3 and f.pilot.stored_pilot_seeds == 2  # below the 4 stored
    sel = findings.selector_frame(f, runs["t"])
    assert list(sel["label"]) == ["random", "isa", "kcenter", "full"]
    assert sel.set_index("label").loc["full", "compute vs whole pool"] == pytest.approx(1.0)
    assert all(f"rule {r}" in s for r, s in zip("PES", findings.claim_statements(f)))
    assert "Stored runs" in findings.closing_statements(result, runs)[0]
