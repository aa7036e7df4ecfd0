"""effalign.report: records to tables, statistics and computed sentences (synthetic records)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from effalign import report
from effalign.data import PreferencePair
from effalign.runs import ResultStore, RunSpec, make_record


def record(sampler="random", budget=10, seed=0, experiment="hh_samplers", params=None, pool=100, **metrics):
    spec = RunSpec(experiment=experiment, data={"source": "x"}, model="tiny-random", sampler=sampler,
                   budget=budget, seed=seed, sampler_params=params or {})
    n = pool if budget is None else budget
    m = {"n_train": n, "pool_size": pool, "fraction": n / pool, "pref_accuracy_ci": [0.4, 0.6],
         "wall_s": 2.0, "select_s": 0.1, "tokens": 1000 * n, "tokens_per_s": 500.0, "pairs_per_s": 4.0,
         "peak_memory_mb": 2048.0, "steps": 3, **metrics}
    rec = make_record(spec, m, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:10+00:00", 10.0,
                      extra={"loss_curve": [{"step": 1, "epoch": 0.5, "loss": 0.69, "margin": 0.0, "accuracy": 0.5,
                                             "seconds": 1.0},
                                            {"step": 2, "epoch": 1.0, "loss": 0.6, "margin": 0.1, "accuracy": 0.7,
                                             "seconds": 2.0}]})
    return rec


def sampler_records():
    recs = []
    diffs = {0: 0.05, 1: 0.02, 2: 0.04, 3: -0.01}
    for seed, d in diffs.items():
        for budget in (5, 10):
            base = 0.55 + 0.01 * seed + 0.001 * budget
            recs.append(record("random", budget, seed, pref_accuracy=base))
            recs.append(record("isa", budget, seed, pref_accuracy=base + d))
            recs.append(record("isa", budget, seed, params={"score": "entropy"}, pref_accuracy=base - d))
    return recs, diffs


def test_runs_frame_columns_and_labels():
    recs, _ = sampler_records()
    frame = report.runs_frame(recs)
    assert len(frame) == len(recs)
    for col in ("label", "budget", "seed", "n_train", "fraction", "pref_accuracy", "pref_accuracy_lo",
                "pref_accuracy_hi", "seconds", "device_name"):
        assert col in frame
    assert set(frame["label"]) == {"random", "isa", "isa (score=entropy)"}
    assert frame["device_name"].iloc[0].startswith(("CPU", "GPU"))
    assert report.runs_frame([]).empty


def test_summarize_bootstrap_interval_contains_mean():
    recs, _ = sampler_records()
    s = report.summarize(report.runs_frame(recs), "pref_accuracy")
    assert len(s) == 6 and (s["n"] == 4).all()
    assert ((s["lo"] <= s["mean"]) & (s["mean"] <= s["hi"])).all()
    one = report.summarize(report.runs_frame(recs[:1]), "pref_accuracy")
    assert math.isnan(one["lo"].iloc[0]) and "one run" in one["note"].iloc[0]


def test_paired_differences_match_scipy():
    recs, diffs = sampler_records()
    p = report.paired_differences(report.runs_frame(recs), "pref_accuracy")
    row = p[(p["label"] == "isa") & (p["budget"] == 10)].iloc[0]
    d = np.array(list(diffs.values()))
    assert row["n_pairs"] == 4 and row["mean_diff"] == pytest.approx(d.mean())
    assert row["t_p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(d).pvalue)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert row["lo"] == pytest.approx(d.mean() - half) and row["hi"] == pytest.approx(d.mean() + half)
    assert row["wins"] == 3
    text = report.paired_statements(p, "pref_accuracy")
    assert len(text) == 2 and all("isa minus random" in t for t in text)
    ablation = report.paired_differences(report.runs_frame(recs), "pref_accuracy", baseline="isa")
    assert set(ablation["label"]) == {"random", "isa (score=entropy)"}


def test_paired_differences_degenerate_cases():
    one_seed = [record("random", 5, 0, pref_accuracy=0.5), record("isa", 5, 0, pref_accuracy=0.6)]
    p = report.paired_differences(report.runs_frame(one_seed), "pref_accuracy")
    assert "one seed" in p["note"].iloc[0] and math.isnan(p["t_p"].iloc[0])
    same = [record(s, 5, k, pref_accuracy=0.5 + (0.1 if s == "isa" else 0) + 0.01 * k)
            for s in ("random", "isa") for k in range(3)]
    p = report.paired_differences(report.runs_frame(same), "pref_accuracy")
    assert "identical" in p["note"].iloc[0]
    assert report.paired_differences(report.runs_frame([]), "pref_accuracy").empty
    assert "No paired runs" in report.paired_statements(pd.DataFrame(), "pref_accuracy")[0]


def scaling_frame(noise=0.01, seeds=3, fn=None):
    rng = np.random.default_rng(0)
    fn = fn or (lambda n: 0.8 - 0.3 * np.exp(-n / 150))
    rows = []
    for seed in range(seeds):
        for n in (20, 50, 100, 200, 500, 1000):
            rows.append(record("random" if n < 1000 else "full", n if n < 1000 else None, seed,
                               experiment="hh_scaling", pool=1000, pref_accuracy=fn(n) + rng.normal(0, noise)))
    return report.runs_frame(rows)


def test_scaling_analysis_recovers_plateau():
    out = report.scaling_analysis(scaling_frame(), "pref_accuracy", n_boot=50)
    assert out.ok and out.report.best == "exp_plateau"
    text = out.statements()
    assert text[0].startswith("Akaike weights") and any("n95 = " in t for t in text)
    assert "exponential plateau is favoured" in out.verdict()
    table = out.table()
    assert "akaike_weight" in table and table.loc["exp_plateau", "best"]
    sat = report.empirical_saturation(scaling_frame(), "pref_accuracy")
    assert 0 < sat["fraction"] <= 1 and "95%" in sat["sentence"]


@pytest.mark.parametrize("case", ["constant", "few_sizes", "empty", "missing_metric"])
def test_scaling_analysis_explains_instead_of_raising(case):
    frame = {
        "constant": scaling_frame(noise=0, fn=lambda n: 0.5),
        "few_sizes": scaling_frame()[lambda f: f["n_train"] < 200],
        "empty": report.runs_frame([]),
        "missing_metric": scaling_frame(),
    }[case]
    metric = "gen_reward" if case == "missing_metric" else "pref_accuracy"
    out = report.scaling_analysis(frame, metric, n_boot=10)
    assert not out.ok and out.reason
    assert out.statements()[0].startswith("No scaling fit") and out.table().empty
    assert out.verdict().startswith("No scaling fit")


def test_scaling_statements_never_print_absurd_extrapolations():
    # a falling, noisy curve: fits exist but are degenerate
    frame = scaling_frame(noise=0.05, seeds=1, fn=lambda n: 0.6 - 0.02 * np.log(n))
    out = report.scaling_analysis(frame, "pref_accuracy", n_boot=20)
    assert out.ok
    for sentence in out.statements():
        numbers = [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*", sentence)]
        assert all(x < 1e6 for x in numbers), sentence


def test_empirical_saturation_without_gain():
    frame = scaling_frame(noise=0, fn=lambda n: 0.5 - 0.0001 * n)
    assert "did not improve" in report.empirical_saturation(frame, "pref_accuracy")["sentence"]
    frame = frame.assign(gen_reward=0.3, gen_ref_reward=0.2)
    assert report.metric_baseline(frame, "gen_reward") == pytest.approx(0.2)
    assert math.isnan(report.metric_baseline(frame, "unknown_metric"))


def test_cost_table_curves_and_statements():
    recs = [record("full", None, 0, experiment="gpu_dpo", pref_accuracy=0.6),
            record("isa", 10, 0, experiment="gpu_dpo", pref_accuracy=0.58)]
    cost = report.cost_table(recs)
    assert list(cost["label"]) == ["full", "isa"]
    assert cost["device_hours"].iloc[0] == pytest.approx(10 / 3600) and cost["peak_gib"].iloc[0] == pytest.approx(2.0)
    curves = report.loss_curves(recs)
    assert len(curves) == 4 and set(curves.columns) >= {"label", "step", "loss", "seconds"}
    text = report.cost_statements(recs, "pref_accuracy")
    assert text[0].startswith("The full pool") and "10.0% of the pool" in text[1]
    assert "not stored" in report.cost_statements(recs[1:], "pref_accuracy")[0]
    assert "produced on" in report.device_statements(recs)[0]
    assert "No runs" in report.device_statements([])[0]
    assert report.loss_curves([]).empty


def test_selector_statements_and_metric_table():
    recs, _ = sampler_records()
    frame = report.runs_frame(recs)
    text = report.selector_statements(report.summarize(frame, "pref_accuracy"), "pref_accuracy")
    assert len(text) == 2 and all("highest mean" in t for t in text)
    table = report.metric_table(frame, ["pref_accuracy", "not_there"])
    assert list(table.columns) == ["label", "budget", "share of pool", "runs", "pref_accuracy"]
    assert table["pref_accuracy"].str.contains(r"\[").all()
    assert len(report.compute_table(frame, "pref_accuracy")) == 6


def test_store_helpers(tmp_path):
    store = ResultStore(tmp_path)
    recs, _ = sampler_records()
    for r in recs[:4]:
        store.append(r)
    specs = [RunSpec.from_dict(r["spec"]) for r in recs]
    assert [r["key"] for r in report.stored_records(specs, store)] == [r["key"] for r in recs[:4]]
    assert len(report.missing_specs(specs, store)) == len(recs) - 4
    assert report.collect(specs, tmp_path, run=False) == report.stored_records(specs, store)
    avail = report.availability({"a": specs}, store)
    assert avail.loc["a", "runs"] == len(recs) and avail.loc["a", "stored"] == 4
    both = report.availability({"a": specs, "b": specs[:6]}, store)  # b shares every run with a
    assert both.loc["b", "stored"] == 4 and both.loc["all (distinct runs)"].tolist() == [len(recs), 4]
    assert report.concat({"a": pd.DataFrame(), "b": None}).empty
    assert list(report.concat({"x": pd.DataFrame({"v": [1]})}).index.names) == ["track", None]


def test_grids_match_the_command_line(tmp_path):
    from effalign.book import export_grids, notebook_grids
    from effalign.experiment import expand_grid

    rows = [{"prompt": f"Question {i}?", "chosen": f"Answer {i} in full.", "rejected": f"No {i}."} for i in range(30)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    track = {"metric": "pref_accuracy", "secondary": [], "data": {"source": str(data), "eval_size": 6}, "eval": {}}
    profile = {"profile": "t", "common": {
        "model": "tiny-random", "seeds": [0, 1], "scaling_seeds": [0], "train": {"epochs": 1},
        "tracks": {"t": track}, "scaling_fractions": [0.1, 0.5, 1.0], "samplers": ["random", "isa"],
        "budgets": [0.1, 0.25], "ablation": [{"score": "entropy"}], "ablation_budget": 0.25,
        "gpu_dpo": {"track": "t", "fraction": 0.25, "seed": 0, "cuda": {"model": "tiny-random"},
                    "cpu": {"model": "tiny-random", "data": {"pool_size": 10}, "train": {"lora": False}}},
    }}
    grids = notebook_grids(profile, device="cpu")
    assert list(grids) == ["t_scaling", "t_samplers", "t_ablation", "gpu_dpo_full", "gpu_dpo_subset"]
    assert [g["experiment"] for g in grids.values()] == ["t_subsets"] * 3 + ["gpu_dpo"] * 2
    assert grids["gpu_dpo_subset"]["data"]["pool_size"] == 10
    assert grids["gpu_dpo_subset"]["train"] == {"epochs": 1, "lora": False}
    # random subsets of the same size are one run, shared by the scaling and sampler grids
    shared = {s.key for s in expand_grid(grids["t_scaling"])} & {s.key for s in expand_grid(grids["t_samplers"])}
    assert len(shared) == 1  # random at 10%, seed 0
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "t.yaml").write_text(yaml.safe_dump({k: v for k, v in profile.items() if k != "profile"}))
    paths = export_grids(str(tmp_path / "params" / "t.yaml"), tmp_path / "grids", device="cpu")
    assert [p.stem for p in paths] == list(grids)
    for path, grid in zip(paths, grids.values()):
        from_file = expand_grid(yaml.safe_load(path.read_text()))
        assert [s.key for s in from_file] == [s.key for s in expand_grid(grid)]


def test_make_grid_overrides_and_errors():
    track = {"data": {"source": "x", "pool_size": 10}, "eval": {"n_boot": 5}}
    g = report.make_grid("hh", "dpo", track, model="m", seeds=[0], train={"epochs": 1}, budgets=["full"],
                         experiment="gpu_dpo", data_overrides={"pool_size": None, "eval_size": 3},
                         train_overrides={"lora": False}, eval_overrides={"n_boot": 9})
    assert g["experiment"] == "gpu_dpo" and g["data"] == {"source": "x", "eval_size": 3}
    assert g["train"] == {"epochs": 1, "lora": False} and g["eval"] == {"n_boot": 9}
    with pytest.raises(ValueError, match="exactly one"):
        report.make_grid("hh", "x", track, model="m", seeds=[0], train={})
    assert report.ablation_samplers([{"dim": 4}]) == ["random", "isa", {"name": "isa", "params": {"dim": 4}}]
    assert report.sampler_label("isa", {"dim": 4, "score": "mixed"}) == "isa (dim=4, score=mixed)"


def pairs(n):
    return [PreferencePair([{"role": "user", "content": f"prompt {i} " * (i % 5 + 1)}],
                           [{"role": "assistant", "content": "good " * (i + 1)}],
                           [{"role": "assistant", "content": "bad"}]) for i in range(n)]


def test_data_views():
    from effalign.samplers import get_sampler

    pool = pairs(40)
    X = np.random.default_rng(0).normal(size=(40, 6))
    X[:20] += 4
    isa = get_sampler("isa", dim=None)
    picks = isa.select(X, 8, 0)
    draws = get_sampler("random").select(X, 8, 0)
    view = report.isa_frame(isa, draws)
    assert len(view) == 40 and view["isa"].sum() == 8 and view["random"].sum() == 8
    assert {"pc1", "pc2", "component", "surprisal", "entropy", "score"} <= set(view.columns)
    mix = report.mixture_table(isa)
    assert len(mix) == 2 and mix["ISA budget"].sum() == 8
    prof = report.subset_profile(pool, {"ISA": picks, "random": draws}, isa)
    assert list(prof.index) == ["pool", "ISA", "random"] and prof.loc["ISA", "pairs"] == 8
    sbs = report.side_by_side(pool, picks, draws, k=2, width=10)
    assert sbs.shape == (2, 6) and all(len(v) <= 10 for v in sbs.to_numpy().ravel())
    lengths = report.length_frame({"a": pool})
    assert len(lengths) == 120 and set(lengths["part"]) == {"prompt", "chosen", "rejected"}


def headline_records(isa_shift: float, plateau: bool = True):
    """Scaling runs (pool 100) on an exponential plateau, and sampler runs at 5 and 10 pairs."""
    recs = []
    for seed in range(3):
        for n in (2, 5, 10, 20, 50, None):
            size = 100 if n is None else n
            y = 0.5 + 0.2 * (1 - math.exp(-size / 8)) if plateau else 0.5 + 0.001 * size
            recs.append(record("full" if n is None else "random", n, seed, experiment="hh_scaling",
                               pref_accuracy=y + 0.002 * (seed - 1)))
        for n in (5, 10):
            base = 0.5 + 0.2 * (1 - math.exp(-n / 8)) + 0.002 * (seed - 1)
            recs.append(record("random", n, seed, pref_accuracy=base))
            recs.append(record("isa", n, seed, pref_accuracy=base + isa_shift + 0.001 * seed))
            recs.append(record("longest", n, seed, pref_accuracy=base - 0.05))
    return recs


def test_track_findings_and_claims_when_isa_wins():
    recs = headline_records(isa_shift=0.08)
    frame = report.runs_frame(recs)
    scaling, samplers = frame[frame["experiment"] == "hh_scaling"], frame[frame["experiment"] == "hh_samplers"]
    f = report.track_findings(scaling, samplers, "pref_accuracy", n_boot=50)
    assert f["full_n"] == 3 and f["untrained"] == 0.5
    b10 = f["budgets"][0.1]
    assert b10["rank"] == 1 and b10["best"] == "isa" and b10["wins"] == 3
    assert b10["diff"] == pytest.approx(0.081, abs=1e-9)
    gain = f["full_mean"] - 0.5
    assert b10["share_of_gain"] == pytest.approx((b10["label_mean"] - 0.5) / gain)
    claims = report.claim_statements(f)
    assert claims[0].startswith("Plateau claim") and ": holds" in claims[0]
    assert "Small-subset claim" in claims[1] and ": holds" in claims[1]
    assert "Sampler claim" in claims[2] and ": holds" in claims[2]
    table = report.headline_frame({"hh": f})
    assert list(table["budget"]) == [0.05, 0.1]
    assert table["isa rank"].tolist() == [1, 1]


def test_claims_fail_when_isa_loses_and_no_plateau():
    frame = report.runs_frame(headline_records(isa_shift=-0.1, plateau=False))
    scaling, samplers = frame[frame["experiment"] == "hh_scaling"], frame[frame["experiment"] == "hh_samplers"]
    f = report.track_findings(scaling, samplers, "pref_accuracy", n_boot=50)
    claims = report.claim_statements(f)
    assert ": holds" not in claims[0]
    assert "Small-subset claim" in claims[1] and ": fails" in claims[1]
    assert "Sampler claim" in claims[2] and ": fails" in claims[2]
    assert f["budgets"][0.05]["rank"] == 3


def test_claims_without_runs_say_not_resolved():
    empty = report.runs_frame([])
    f = report.track_findings(empty, empty, "pref_accuracy", n_boot=10)
    claims = report.claim_statements(f)
    assert "not resolved" in claims[0] and "not resolved" in claims[1]
    assert report.headline_frame({"hh": f}).empty


def test_plateau_claim_fails_only_when_the_exponential_has_no_weight():
    rng = np.random.default_rng(0)
    recs = []
    for seed in range(3):
        for n in (2, 5, 10, 20, 50, None):
            size = 100 if n is None else n
            recs.append(record("full" if n is None else "random", n, seed, experiment="hh_scaling",
                               pref_accuracy=0.5 + 0.05 * math.log(size) + rng.normal(0, 0.001)))
    frame = report.runs_frame(recs)
    f = report.track_findings(frame, frame.iloc[0:0], "pref_accuracy", n_boot=20)
    text = report.claim_statements(f)[0]
    w = f["scaling"].report.weights
    assert f["scaling"].report.best == "log_law"
    assert (": fails" in text) == (w["exp_plateau"] < 0.1) and ": holds" not in text
