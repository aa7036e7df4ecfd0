"""effalign.tables: records to frames, paired contrasts (per seed and per item), formatting; the first
chapter's data views (effalign.notebook)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic import item_ids, record

from effalign import findings, notebook, tables
from effalign.data import PreferencePair
from effalign.inference import cluster_bootstrap_ci, over_seeds


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
    frame = tables.runs_frame(recs)
    assert len(frame) == len(recs)
    for col in ("label", "budget", "seed", "n_train", "fraction", "pref_accuracy", "pref_accuracy_lo",
                "pref_accuracy_hi", "seconds", "device_name"):
        assert col in frame
    assert set(frame["label"]) == {"random", "isa", "isa (score=entropy)"}
    assert frame["device_name"].iloc[0].startswith(("CPU", "GPU"))
    assert tables.runs_frame([]).empty and "label" in tables.runs_frame([])


def test_summarize_uses_t_intervals_over_seeds():
    recs, _ = sampler_records()
    s = tables.summarize(tables.runs_frame(recs), "pref_accuracy")
    assert len(s) == 6 and (s["n"] == 4).all()
    row = s[(s["label"] == "isa") & (s["fraction"] == 0.1)].iloc[0]
    y = np.array([0.55 + 0.01 * k + 0.01 + d for k, d in enumerate((0.05, 0.02, 0.04, -0.01))])
    half = stats.t.ppf(0.975, 3) * y.std(ddof=1) / 2
    assert (row["lo"], row["hi"]) == (pytest.approx(y.mean() - half), pytest.approx(y.mean() + half))
    one = tables.summarize(tables.runs_frame(recs[:1]), "pref_accuracy")
    assert math.isnan(one["lo"].iloc[0]) and "one seed" in one["note"].iloc[0]


def test_t_intervals_over_three_seeds_cover_95_percent():
    """Defect 7: the percentile bootstrap over three seed means covered ~76%; the t interval that
    summarize reports covers 95%."""
    rng = np.random.default_rng(7)
    y = rng.normal(0.5, 0.02, (1000, 3))
    frame = pd.DataFrame({"label": "x", "fraction": 0.1, "pref_accuracy": y[0], "key": ["a", "b", "c"]})
    assert tables.summarize(frame, "pref_accuracy")[["lo", "hi"]].iloc[0].tolist() == \
        pytest.approx(list(over_seeds(y[0]).interval()))
    hits = np.mean([(lambda ci: ci[0] <= 0.5 <= ci[1])(over_seeds(row).interval()) for row in y])
    draws = rng.integers(0, 3, (1000, 200, 3))  # a percentile bootstrap of each row's three seeds
    means = np.take_along_axis(y[:, None, :], draws, axis=2).mean(axis=2)
    boot = np.mean((np.quantile(means, 0.025, axis=1) <= 0.5) & (0.5 <= np.quantile(means, 0.975, axis=1)))
    assert 0.93 <= hits <= 0.97
    assert boot < 0.85  # what the old intervals did


def test_paired_differences_match_scipy_and_adjust_with_holm():
    recs, diffs = sampler_records()
    p = tables.paired_differences(tables.runs_frame(recs), "pref_accuracy", primary=("isa", 0.1))
    row = p[(p["label"] == "isa") & (p["fraction"] == 0.1)].iloc[0]
    d = np.array(list(diffs.values()))
    assert row["n_seeds"] == 4 and row["mean_diff"] == pytest.approx(d.mean())
    assert row["p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert row["lo"] == pytest.approx(d.mean() - half) and row["hi"] == pytest.approx(d.mean() + half)
    assert row["wins"] == 3 and row["family"] == "primary" and row["p_adj"] == row["p"]
    others = p[p["family"] == "Holm"]
    assert len(others) == 3 and (others["p_adj"] >= others["p"]).all()
    smallest = others["p"].min()
    assert others.loc[others["p"].idxmin(), "p_adj"] == pytest.approx(min(1.0, 3 * smallest))
    mde = (stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * d.std(ddof=1) / 2
    assert row["mde"] == pytest.approx(mde)
    statements = findings.paired_statements(p, "pref_accuracy")
    assert len(statements) == 2 and all("isa minus random" in t and "MDE" in t for t in statements)
    ablation = tables.paired_differences(tables.runs_frame(recs), "pref_accuracy", baseline="isa")
    assert set(ablation["label"]) == {"random", "isa (score=entropy)"}


def test_a_test_that_cannot_reject_is_not_reported():
    """Defect 6: the signed-rank test cannot reach p < 0.05 with fewer than six seeds."""
    recs, _ = sampler_records()
    p = tables.paired_differences(tables.runs_frame(recs), "pref_accuracy")
    assert p["wilcoxon_p"].isna().all() and p["note"].str.contains("at least 6 seeds").all()
    six = [record(s, 5, k, pref_accuracy=0.5 + 0.01 * k + (0.03 + 0.001 * k if s == "isa" else 0))
           for s in ("random", "isa") for k in range(6)]
    p6 = tables.paired_differences(tables.runs_frame(six), "pref_accuracy")
    assert p6["wilcoxon_p"].iloc[0] == pytest.approx(0.03125)


def test_paired_differences_degenerate_cases():
    one_seed = [record("random", 5, 0, pref_accuracy=0.5), record("isa", 5, 0, pref_accuracy=0.6)]
    p = tables.paired_differences(tables.runs_frame(one_seed), "pref_accuracy")
    assert "one seed" in p["note"].iloc[0] and math.isnan(p["p"].iloc[0]) and math.isnan(p["mde"].iloc[0])
    same = [record(s, 5, k, pref_accuracy=0.5 + (0.1 if s == "isa" else 0) + 0.01 * k)
            for s in ("random", "isa") for k in range(3)]
    assert "identical" in tables.paired_differences(tables.runs_frame(same), "pref_accuracy")["note"].iloc[0]
    assert tables.paired_differences(tables.runs_frame([]), "pref_accuracy").empty
    assert "No paired runs" in findings.paired_statements(pd.DataFrame(), "pref_accuracy")[0]


def test_isa_against_the_whole_pool_is_paired_by_seed():
    """Defect 8: runs that share seeds are compared seed by seed, not by an unpaired Welch test."""
    rng = np.random.default_rng(3)
    seed_effect = rng.normal(0, 0.03, 4)
    recs = [record("full", None, k, pool=100, pref_accuracy=0.55 + seed_effect[k]) for k in range(4)]
    recs += [record("isa", 10, k, pool=100, pref_accuracy=0.54 + seed_effect[k] + 0.002 * k) for k in range(4)]
    est = tables.contrast(tables.runs_frame(recs), "pref_accuracy", ("isa", 0.1), ("full", 1.0))
    d = np.array([-0.01 + 0.002 * k for k in range(4)])
    assert est.method == "paired by seed"
    assert est.value == pytest.approx(d.mean()) and est.se == pytest.approx(d.std(ddof=1) / 2)
    only_isa = [r for r in recs if r["spec"]["sampler"] == "isa" and r["spec"]["seed"] < 2]
    others = [record("full", None, k, pool=100, pref_accuracy=0.55) for k in (5, 6, 7)]
    assert tables.contrast(tables.runs_frame(only_isa + others), "pref_accuracy", ("isa", 0.1),
                           ("full", 1.0)).method.startswith("unpaired")


def item_records(n_prompts=30, per_prompt=3, seeds=3, effect=0.0, seed=0):
    """Records with per-item outcomes: pairs share prompts (clusters) and a prompt effect."""
    rng = np.random.default_rng(seed)
    clusters = np.repeat(item_ids(n_prompts), per_prompt)
    ids = item_ids(n_prompts * per_prompt + 1000)[1000:]
    prompt_effect = np.repeat(rng.normal(0, 0.3, n_prompts), per_prompt)
    recs = []
    for k in range(seeds):
        for sampler, shift in (("random", 0.0), ("isa", effect)):
            margin = 0.1 + shift + prompt_effect + rng.normal(0, 0.05, clusters.size)
            recs.append(record(sampler, 10, k, pref_margin=float(margin.mean()),
                               items={"pairs": {"id": ids, "cluster": list(clusters), "margin": margin.round(4).tolist(),
                                                "correct": (margin > 0).astype(float).tolist()}}))
    return recs


def test_items_frame_and_item_level_contrast():
    recs = item_records()
    it = tables.items_frame(recs, "pref_margin")
    assert len(it) == 6 * 90 and set(it.columns) == {"key", "id", "cluster", "value", "untrained"}
    assert (it["untrained"] == 0.0).all()
    acc = tables.items_frame(recs, "pref_accuracy")
    assert set(acc["value"]) <= {0.0, 1.0} and (acc["untrained"] == 0.5).all()
    assert tables.items_frame(recs, "gen_reward").empty
    frame = tables.runs_frame(recs)
    est = tables.contrast(frame, "pref_margin", ("isa", 0.1), ("random", 0.1), items=it)
    assert est.method.startswith("per item, clustered by prompt") and est.n_clusters == 30 and est.n_seeds == 3
    seedwise = tables.contrast(frame, "pref_margin", ("isa", 0.1), ("random", 0.1))
    assert est.value == pytest.approx(seedwise.value, abs=1e-4)
    gain = tables.contrast(frame, "pref_margin", ("random", 0.1), None, items=it)
    assert gain.value == pytest.approx(it[it["key"].isin(frame[frame["label"] == "random"]["key"])]["value"].mean())


def test_prompt_clusters_widen_item_intervals():
    """Defect 9: pairs that share a prompt are not independent; the cluster bootstrap resamples prompts."""
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(27), 12)  # 324 pairs from 27 prompts
    hits_cluster = hits_pairs = 0
    for i in range(120):
        values = np.repeat(rng.normal(0, 1, 27), 12) + rng.normal(0, 0.3, clusters.size)
        lo, hi = cluster_bootstrap_ci(values, clusters, n_boot=300, seed=i)
        hits_cluster += lo <= 0 <= hi
        lo, hi = cluster_bootstrap_ci(values, np.arange(values.size), n_boot=300, seed=i)  # one pair = one cluster
        hits_pairs += lo <= 0 <= hi
    assert hits_cluster / 120 >= 0.9 and hits_pairs / 120 < 0.5


def test_one_run_interval_is_over_prompts_when_items_are_stored():
    recs = item_records(seeds=1)[:1]
    frame = tables.runs_frame(recs)
    s = tables.summarize(frame, "pref_margin", items=tables.items_frame(recs, "pref_margin"))
    assert np.isfinite(s["lo"].iloc[0]) and "cluster bootstrap" in s["note"].iloc[0]


def test_fmt_and_format_frame_never_show_nan_or_e_notation():
    assert tables.fmt(float("nan")) == "—" and tables.fmt(None) == "—" and tables.fmt(float("inf")) == "—"
    assert tables.fmt(3.9e73) == "3.9×10⁷³" and "e" not in tables.fmt(1.2e-7)
    assert tables.fmt(0.0139, "signed") == "+0.014" and tables.fmt(-0.5, "signed") == "−0.500"
    assert tables.fmt(0.0004, "p") == "< 0.001" and tables.fmt(0.583, "pct") == "58%" and tables.fmt(1234.4, "int") == "1,234"
    assert tables.fmt(0.05, "pct") == "5%" and tables.fmt(0.058, "pct") == "5.8%"
    # small and large magnitudes keep positional digits: no ×10ⁿ between a millionth and a trillion
    assert tables.fmt(9.0e-4) == "0.00090" and tables.fmt(-2.75e-4, "signed") == "−0.00028"
    assert tables.fmt(0.001169, "sig") == "0.00117" and tables.fmt(12345678) == "12,345,678"
    for exp in range(-6, 12):
        for v in (1.234 * 10**exp, -5.6 * 10**exp):
            for style in ("num", "signed", "sig"):
                text = tables.fmt(v, style)
                assert "×" not in text and "e" not in text.lower(), (v, style, text)
    frame = pd.DataFrame({"label": ["a", None], "mean_diff": [0.01, np.nan], "p": [0.2, np.nan], "n95": [3.9e73, 12.0],
                          "fraction": [0.1, 0.05], "ok": [True, False]})
    text = tables.format_frame(frame).to_string()
    assert "nan" not in text.lower() and "e+" not in text and "NaN" not in text
    assert "3.9×10⁷³" in text and "+0.010" in text and "10%" in text and "yes" in text


def test_budget_label_shows_share_and_pairs_when_known():
    assert tables.budget_label(0.1, 60) == "10% (60)" and tables.budget_label(0.05) == "5%"
    assert tables.budget_label(1.0, float("nan")) == "100%"
    assert tables.budget_label(0.5, 1300, sep="\n", unit=" pairs") == "50%\n(1,300 pairs)"


def test_metric_table_concat_cost_and_curves():
    recs, _ = sampler_records()
    frame = tables.runs_frame(recs)
    table = tables.metric_table(frame, ["pref_accuracy", "not_there"])
    assert list(table.columns) == ["label", "share of pool", "runs", "pref_accuracy"]
    assert table["pref_accuracy"].str.contains(r"\[").all()
    assert len(tables.compute_table(frame, "pref_accuracy")) == 6
    text = findings.selector_statements(tables.summarize(frame, "pref_accuracy"), "pref_accuracy", "ranks are not reported")
    assert len(text) == 3 and all("highest mean" in t for t in text[:2]) and text[2].startswith("Ranks")
    runs = [record("full", None, 0, experiment="gpu_dpo", pref_accuracy=0.6),
            record("isa", 10, 0, experiment="gpu_dpo", pref_accuracy=0.58)]
    cost = tables.cost_table(runs)
    assert list(cost["label"]) == ["full", "isa"]
    assert cost["device_hours"].iloc[0] == pytest.approx(10 / 3600) and cost["peak_gib"].iloc[0] == pytest.approx(2.0)
    curves = tables.loss_curves(runs)
    assert len(curves) == 4 and set(curves.columns) >= {"label", "step", "loss", "seconds"}
    assert tables.loss_curves([]).empty
    text = findings.cost_statements(runs, "pref_accuracy")
    assert text[0].startswith("The full pool") and "10% of the pool" in text[1] and "of the whole pool's device-hours" in text[1]
    assert "not stored" in findings.cost_statements(runs[1:], "pref_accuracy")[0]
    assert "produced on" in findings.device_statements(runs)[0] and "No runs" in findings.device_statements([])[0]
    frame = tables.runs_frame([record("random", 5, 0, gen_reward=0.3, gen_ref_reward=0.2)])
    assert tables.metric_baseline(frame, "gen_reward") == pytest.approx(0.2)
    assert math.isnan(tables.metric_baseline(frame, "unknown_metric"))


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
    view = notebook.isa_frame(isa, draws)
    assert len(view) == 40 and view["isa"].sum() == 8 and view["random"].sum() == 8
    assert {"pc1", "pc2", "component", "surprisal", "entropy", "score"} <= set(view.columns)
    mix = notebook.mixture_table(isa)
    assert len(mix) == 2 and mix["ISA budget"].sum() == 8
    prof = notebook.subset_profile(pool, {"ISA": picks, "random": draws}, isa)
    assert list(prof.index) == ["pool", "ISA", "random"] and prof.loc["ISA", "pairs"] == 8
    sbs = notebook.side_by_side(pool, picks, draws, k=2, width=10)
    assert sbs.shape == (2, 6) and all(len(v) <= 10 for v in sbs.to_numpy().ravel())
    lengths = notebook.length_frame({"a": pool})
    assert len(lengths) == 120 and set(lengths["part"]) == {"prompt", "chosen", "rejected"}
    summary = notebook.length_summary(lengths)
    assert list(summary.index) == [("a", "prompt"), ("a", "chosen"), ("a", "rejected")]
    assert (summary["pairs"] == 40).all() and (summary["longest (characters)"] >= summary["median (characters)"]).all()
