"""effalign.findings and effalign.verdicts: verdicts from pre-registered rules, with planted effects.

Acceptance (issue 12): synthetic per-seed and per-item data sets with (a) a true plateau, (b) a straight
line, (c) ISA = random, (d) ISA − random = 2 × the design's MDE and (e) a subset equivalent to the whole
pool give the right verdict in at least 95% of 200 data sets each, and the reported 95% intervals cover
the truth in 93–97% of simulated data sets. The simulations call the estimators and the rules the
findings use (:mod:`effalign.inference`, :mod:`effalign.verdicts`); the frame plumbing around them is
checked against the same numbers once.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from synthetic import item_ids, record
from synthetic import items as items_of
from synthetic import runs as runs_of

from effalign import findings, tables
from effalign.book import load_profile
from effalign.inference import Estimate, holm, over_items, paired_over_seeds
from effalign.verdicts import AnalysisPlan, plateau_verdict, sampler_verdict, subset_verdict

ROOT = Path(__file__).resolve().parents[1]
PLAN = AnalysisPlan(primary_budget=0.1, primary_metric={"t": "pref_margin"}, equivalence_margin=0.02,
                    plateau_delta=0.02)
N_SETS = 200


class World:
    """Planted effects. Per seed: every cell's run shares a seed effect (a common pool) plus its own run
    noise. Per item: prompts (clusters of two pairs) carry an effect shared by every run, a cell × prompt
    effect shared across seeds, a run effect and item noise."""

    def __init__(self, rng: np.random.Generator, *, seeds: int, per_item: bool, run_sd: float = 0.01,
                 prompts: int = 40, per_prompt: int = 2, inter_sd: float = 0.005, noise_sd: float = 0.05):
        self.rng, self.seeds, self.per_item = rng, seeds, per_item
        self.run_sd, self.inter_sd, self.noise_sd = run_sd, inter_sd, noise_sd
        self.clusters = np.repeat(np.arange(prompts), per_prompt)

    def draw(self, means: dict[str, float]) -> dict[str, np.ndarray]:
        """Per cell: seeds values (per seed) or seeds × items values (per item)."""
        rng, S = self.rng, self.seeds
        if not self.per_item:
            shared = rng.normal(0, 0.02, S)
            return {c: m + shared + rng.normal(0, self.run_sd, S) for c, m in means.items()}
        C, I = self.clusters.max() + 1, self.clusters.size
        prompt = rng.normal(0, 0.05, C)[self.clusters]
        return {c: (m + prompt + rng.normal(0, self.inter_sd, C)[self.clusters])[None, :]
                + rng.normal(0, self.run_sd, (S, 1)) + rng.normal(0, self.noise_sd, (S, I)) for c, m in means.items()}

    def estimate(self, data: dict[str, np.ndarray], a: str, b: str) -> Estimate:
        if not self.per_item:
            return paired_over_seeds(dict(enumerate(data[a])), dict(enumerate(data[b])))
        return over_items([(self.clusters, data[a][s] - data[b][s]) for s in range(self.seeds)])

    def true_se(self) -> float:
        if not self.per_item:
            return self.run_sd * math.sqrt(2 / self.seeds)
        C, I, S = self.clusters.max() + 1, self.clusters.size, self.seeds
        return math.sqrt(2 * self.run_sd**2 / S + 2 * self.inter_sd**2 / C + 2 * self.noise_sd**2 / (S * I))

    def mde(self, alpha: float = 0.05, power: float = 0.8) -> float:
        df = self.seeds - 1  # the seed term's degrees of freedom: conservative for the item design
        return (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * self.true_se()


# Sized so that each rule has the power to give the right verdict (the equivalence rules need intervals
# well inside the margin): the per-seed standard error of a contrast is 0.0045, the per-item one 0.0039.
DESIGNS = {"per seed": dict(seeds=10, per_item=False), "per item": dict(seeds=8, per_item=True, run_sd=0.005)}


def share(rule, world: World, means: dict[str, float], a: str, b: str, accept: set[str]) -> float:
    """Share of N_SETS data sets whose verdict is in ``accept``."""
    return float(np.mean([rule(world.estimate(world.draw(means), a, b)).verdict in accept for _ in range(N_SETS)]))


@pytest.mark.parametrize("design", list(DESIGNS))
def test_plateau_verdicts_with_planted_curves(design):
    """(a) a true plateau holds; (b) a straight line (the whole pool 0.05 above half of it) fails."""
    world = World(np.random.default_rng(1), **DESIGNS[design])
    rule = lambda e: plateau_verdict(e, 0.02, PLAN)  # noqa: E731
    assert share(rule, world, {"full": 0.6, "half": 0.6}, "full", "half", {"holds"}) >= 0.95
    assert share(rule, world, {"full": 0.6, "half": 0.55}, "full", "half", {"fails"}) >= 0.95


@pytest.mark.parametrize("design", list(DESIGNS))
def test_sampler_verdicts_with_planted_effects(design):
    """(c) ISA = random: never 'holds' beyond the test's level; (d) ISA − random = 2 × MDE: holds."""
    world = World(np.random.default_rng(2), **DESIGNS[design])
    rule = lambda e: sampler_verdict(e, PLAN)  # noqa: E731
    assert share(rule, world, {"isa": 0.3, "random": 0.3}, "isa", "random", {"not resolved", "fails"}) >= 0.95
    effect = 2 * world.mde(PLAN.alpha, PLAN.power)
    assert share(rule, world, {"isa": 0.3 + effect, "random": 0.3}, "isa", "random", {"holds"}) >= 0.95
    assert share(rule, world, {"isa": 0.3 - effect, "random": 0.3}, "isa", "random", {"fails"}) >= 0.95  # both ways


@pytest.mark.parametrize("design", list(DESIGNS))
def test_subset_equivalent_to_the_whole_pool(design):
    """(e) a subset as good as the whole pool is 'equivalent'; one 0.05 worse is 'worse'."""
    world = World(np.random.default_rng(3), **DESIGNS[design])
    rule = lambda e: subset_verdict(e, 0.02, PLAN)  # noqa: E731
    assert share(rule, world, {"isa": 0.5, "full": 0.5}, "isa", "full", {"holds"}) >= 0.95
    worse = [subset_verdict(world.estimate(world.draw({"isa": 0.45, "full": 0.5}), "isa", "full"), 0.02, PLAN)
             for _ in range(50)]
    assert np.mean([(v.verdict, v.detail) == ("fails", "worse") for v in worse]) >= 0.95


@pytest.mark.parametrize("design", list(DESIGNS))
def test_reported_intervals_cover_95_percent(design):
    world = World(np.random.default_rng(4), **DESIGNS[design])
    hits = []
    for _ in range(1000):
        lo, hi = world.estimate(world.draw({"isa": 0.31, "random": 0.3}), "isa", "random").interval(0.95)
        hits.append(lo <= 0.01 <= hi)
    assert 0.93 <= np.mean(hits) <= 0.97


def test_mde_matches_the_power_of_the_paired_t_test():
    """Defect 10: at the reported MDE the paired t-test has 80% power."""
    world = World(np.random.default_rng(5), seeds=10, per_item=False)
    effect = world.mde()
    p = [world.estimate(world.draw({"a": effect, "b": 0.0}), "a", "b").p_value() for _ in range(1000)]
    assert 0.76 <= np.mean(np.array(p) < 0.05) <= 0.84


def test_frames_give_the_same_estimates_as_the_arrays():
    world = World(np.random.default_rng(6), seeds=4, per_item=True, prompts=10)
    data = world.draw({("isa", 0.1): 0.4, ("random", 0.1): 0.3})
    clusters = np.array([f"p{c}" for c in world.clusters])
    frame, its = runs_of({c: v.mean(axis=1) for c, v in data.items()}), items_of(data, clusters)
    by_items = tables.contrast(frame, "pref_accuracy", ("isa", 0.1), ("random", 0.1), items=its)
    direct = over_items([(clusters, data[("isa", 0.1)][s] - data[("random", 0.1)][s]) for s in range(4)])
    assert (by_items.value, by_items.se, by_items.df) == pytest.approx((direct.value, direct.se, direct.df))
    by_seed = tables.contrast(frame, "pref_accuracy", ("isa", 0.1), ("random", 0.1))
    d = data[("isa", 0.1)].mean(axis=1) - data[("random", 0.1)].mean(axis=1)
    assert (by_seed.value, by_seed.se) == pytest.approx((d.mean(), d.std(ddof=1) / 2))


# ----------------------------------------------------------------------------- the defects of the old verdicts


def test_sampler_verdict_is_symmetric():
    """Defect 5: ISA behind random on every seed, but not significantly: not resolved (the old rule
    said 'fails' from point estimates, and 'holds' only when significant)."""
    est = paired_over_seeds({0: 0.50, 1: 0.52, 2: 0.47}, {0: 0.51, 1: 0.60, 2: 0.48})
    v = sampler_verdict(est, PLAN, effect=0.02)
    assert est.value < 0 and est.p_value() > 0.05 and v.verdict == "not resolved"
    assert "rule S" in v.sentence() and "MDE" in v.sentence() and "seeds would detect" in v.sentence()


def test_small_subset_claim_needs_equivalence_not_a_point_estimate():
    """Defect 4: reaching 96% of the full-data gain on average is not 'about as well' when the interval
    is wide; it is equivalent only when the interval lies inside the margin."""
    wide = paired_over_seeds({0: 0.60, 1: 0.50, 2: 0.58}, {0: 0.56, 1: 0.56, 2: 0.58})
    assert subset_verdict(wide, 0.02, PLAN).verdict == "not resolved"
    tight = paired_over_seeds({k: 0.56 + 0.001 * k for k in range(6)}, {k: 0.56 + 0.0012 * k for k in range(6)})
    assert (subset_verdict(tight, 0.02, PLAN).verdict, subset_verdict(tight, 0.02, PLAN).detail) == ("holds", "equivalent")
    worse = paired_over_seeds({k: 0.50 + 0.002 * k for k in range(4)}, {k: 0.56 for k in range(4)})
    assert subset_verdict(worse, 0.02, PLAN).detail == "worse"


def test_holm_adjustment():
    adj = holm([0.01, 0.04, 0.03, np.nan])
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adj[3])


def test_plan_from_profiles_and_errors():
    from effalign.design import analysis_plan

    for name in ("smoke", "default", "paper"):
        c = load_profile(name)["common"]
        plan = analysis_plan(c)
        for track, spec in c["tracks"].items():
            assert plan.metric(track) == spec["metric"] and plan.margin(track) > 0 and plan.delta(track) > 0
        assert plan.primary_budget == c["design"]["primary"]["fraction"]
        assert plan.plateau_arm == c["design"]["primary"]["arm"]
    with pytest.raises(ValueError, match="unknown key"):
        AnalysisPlan.from_profile({"alfa": 0.05})
    with pytest.raises(ValueError, match="no value for track 'x'"):
        AnalysisPlan.from_profile({"equivalence_margin": {"y": 0.1}}, {"x": {"metric": "m"}})
    with pytest.raises(ValueError, match="alpha"):
        AnalysisPlan.from_profile({"alpha": 0.7})


def test_methods_chapter_holds_the_generated_rules_table():
    from effalign.design import analysis_plan

    prof = load_profile("default")
    plan = analysis_plan(prof["common"])
    text = (ROOT / "book" / "methods.md").read_text()
    block = re.search(r"<!-- BEGIN rules -->\n(.*?)<!-- END rules -->", text, re.S)
    assert block, "book/methods.md lacks the generated rules section"
    assert block.group(1) == findings.rules_markdown(plan, list(prof["common"]["tracks"]), source="`common.design`"), \
        "book/methods.md rules table is out of date: run python benchmarks/report.py"


# ----------------------------------------------------------------------------- one track end to end


def track_records(isa_shift: float, seeds: int = 4, with_items: bool = False):
    """A pool of 100: scaling runs on a plateau, the whole pool, and samplers at 5% and 10%."""
    rng = np.random.default_rng(0)
    ids = item_ids(30)
    recs = []
    for seed in range(seeds):
        for n, label in [(2, "random"), (5, "random"), (10, "random"), (20, "random"), (50, "random"), (None, "full")]:
            size = 100 if n is None else n
            y = 0.5 + 0.2 * (1 - math.exp(-size / 8)) + rng.normal(0, 0.003)
            recs.append(record(label, n, seed, pref_accuracy=y, items=_items(ids, y, rng) if with_items else None))
        for n in (5, 10):
            base = 0.5 + 0.2 * (1 - math.exp(-n / 8)) + rng.normal(0, 0.003)
            for label, y in (("random", base), ("isa", base + isa_shift), ("longest", base - 0.05)):
                recs.append(record(label, n, seed, pref_accuracy=y, items=_items(ids, y, rng) if with_items else None))
    return recs


def _items(ids, y, rng):
    correct = (rng.random(len(ids)) < y).astype(float)
    return {"pairs": {"id": ids, "cluster": [i[:3] for i in ids], "margin": list(correct - 0.5), "correct": list(correct)}}


def test_track_findings_end_to_end():
    recs = track_records(isa_shift=0.08)
    frame = tables.runs_frame(recs)
    plan = AnalysisPlan(primary_metric={"hh": "pref_accuracy"})
    scaling = frame[frame["fraction"].isin([0.02, 0.05, 0.1, 0.2, 0.5, 1.0]) & frame["label"].isin(["random", "full"])]
    runs = findings.TrackRuns(scaling={"default": scaling}, samplers=frame[frame["label"] != "full"],
                              full=frame[frame["label"] == "full"], items=tables.items_frame(recs, "pref_accuracy"))
    f = findings.track_findings("hh", plan, runs, n_boot=20)
    assert f.untrained == 0.5 and f.plateau_arm == "default"
    assert f.sampler.verdict == "holds" and f.plateau["default"].verdict == "holds"
    assert f.subset.verdict == "not resolved" or f.subset.detail == "worse"
    assert f.ranks is None and "10 seeds" in f.ranks_note
    assert f.scaling["default"].ok and f.scaling["default"].report.bounds == (0.0, 1.0)
    sat = f.saturation["default"]
    assert 2 <= sat["n95"] <= 100 and sat["n95_lo"] <= sat["n95"] <= sat["n95_hi"]
    assert "4 seeds)" in sat["sentence"]
    itemised = track_records(isa_shift=0.08, with_items=True)  # per-item outcomes give one seed an interval
    seed0 = tables.runs_frame(itemised).query("seed == 0 and label in ['random', 'full']")
    one = findings.saturation(seed0, "pref_accuracy", plan, items=tables.items_frame(itemised, "pref_accuracy"))
    assert "1 seed)" in one["sentence"]
    text = findings.claim_statements(f)
    assert [re.search(r"rule ([PES])", t).group(1) for t in text[:3]] == ["P", "E", "S"]
    assert all("MDE" in t for t in text[:3])
    head = findings.headline_frame({"hh": f})
    assert list(head["rule"]) == ["P", "E", "S"] and head["mde"].notna().all()
    assert "hh" in findings.means_frame({"hh": f})["track"].tolist()
    fig_text = tables.format_frame(head).to_string()
    assert "nan" not in fig_text.lower()


def test_track_findings_use_items_when_stored():
    recs = track_records(isa_shift=0.0, with_items=True)
    frame = tables.runs_frame(recs)
    runs = findings.TrackRuns(scaling={"default": frame[frame["label"].isin(["random", "full"])]},
                              samplers=frame[frame["label"] != "full"], items=tables.items_frame(recs, "pref_accuracy"))
    f = findings.track_findings("hh", AnalysisPlan(primary_metric={"hh": "pref_accuracy"}), runs, n_boot=0)
    assert f.sampler.estimate.method.startswith("per item, clustered by prompt")
    assert f.sampler.estimate.n_clusters > 1
    # one curve per arm, and each fit's sentence says which arm it is (several arms print one after another)
    assert f.scaling["default"].arm == "default" and "(default arm)" in f.scaling["default"].verdict()


def test_findings_on_the_stored_records_say_what_they_support():
    """The default profile's stored records: every claim names its rule and carries its MDE where the
    data give an estimate; 'not resolved' says how many seeds would resolve it."""
    from effalign.notebook import profile_findings

    plan, result = profile_findings("default", ROOT / "results", n_boot=10)
    assert set(result) == set(load_profile("default")["common"]["tracks"])
    for f in result.values():
        for v in f.claims:
            text = v.sentence()
            assert f"rule {v.rule}" in text
            if v.estimate is not None and v.estimate.ok:
                assert "MDE" in text
            if v.verdict == "not resolved" and v.estimate is not None and v.estimate.ok and v.estimate.n_seeds > 1:
                assert "seeds would detect" in text or "more seeds alone" in text or "had the power" in text
        for outcome in f.scaling.values():
            if outcome.ok and outcome.report.best not in ("exp_plateau", "power_law"):
                assert "no plateau is identified" in outcome.verdict()
    # the default design gives the equal-steps and fixed-epoch arms three sizes: their curves can never be
    # fitted, and the chapter says so instead of waiting for runs; the converge arm has four
    hh = result["hh"].scaling
    for arm in ("equal_steps", "fixed_epochs"):
        assert not hh[arm].ok and "rule P alone" in hh[arm].verdict() and "(10%, 50%, the whole pool)" in hh[arm].verdict()
    assert "rule P alone" not in hh["converge"].verdict()
    head = findings.headline_frame(result)
    assert len(head) == 3 * len(result) and not tables.format_frame(head).to_string().lower().count("nan")


def test_data_or_compute_sets_fixed_epochs_against_the_arm_of_exactly_equal_steps():
    """With three arms (an equal step cap with early stopping, exactly equal steps, fixed epochs), the
    question "data or compute?" compares fixed epochs with the arm of exactly equal steps, whatever the
    order of the arms; without such an arm, the equal cap stands in and is named as a cap."""
    rising = Estimate(value=0.08, se=0.005, df=20, n_seeds=4, n_clusters=500, method="per item")
    level = Estimate(value=0.001, se=0.002, df=20, n_seeds=4, n_clusters=500, method="per item")
    plateau = {"converge": plateau_verdict(rising, 0.02, PLAN, arm="converge"),
               "equal_steps": plateau_verdict(level, 0.02, PLAN, arm="equal_steps"),
               "fixed_epochs": plateau_verdict(rising, 0.02, PLAN, arm="fixed_epochs")}
    text = findings.data_or_compute(plateau, ["converge", "equal_steps"], ["equal_steps"])
    assert "at equal steps (equal_steps: holds" in text and "a compute effect here" in text
    without = {a: v for a, v in plateau.items() if a != "equal_steps"}
    text = findings.data_or_compute(without, ["converge", "equal_steps"], ["equal_steps"])
    assert "under an equal cap of steps (converge: fails" in text and "a data effect here" in text


def test_plateau_needs_half_the_pool_and_says_so():
    frame = runs_of({("full", 1.0): np.array([0.6, 0.61]), ("random", 0.25): np.array([0.5, 0.52])})
    v = findings.plateau_finding(frame, "default", "t", PLAN)
    assert v.verdict == "not resolved" and "half the pool" in v.sentence()
    empty = findings.plateau_finding(pd.DataFrame(), "equal_steps", "t", PLAN)
    assert "no runs of the equal_steps arm" in empty.sentence()


def test_ranks_only_from_a_bootstrap_over_ten_seeds():
    """Rule R: 'rank 1 of 7' from three seeds has probability 1/7 under the null; ranks need a
    bootstrap over at least ten seeds, and then come as probabilities."""
    rng = np.random.default_rng(8)
    cells = {("isa", 0.1): 0.40 + rng.normal(0, 0.01, 10), ("random", 0.1): 0.30 + rng.normal(0, 0.01, 10),
             ("kcenter", 0.1): 0.31 + rng.normal(0, 0.01, 10)}
    plan = AnalysisPlan(primary_metric={"t": "pref_accuracy"})
    f = findings.track_findings("t", plan, findings.TrackRuns(scaling={}, samplers=runs_of(cells)), n_boot=0)
    assert f.ranks is not None and f.ranks["label"].iloc[0] == "isa"
    assert f.ranks["P(rank 1)"].iloc[0] > 0.99 and f.ranks["P(rank 1)"].sum() == pytest.approx(1.0)
    few = findings.TrackRuns(scaling={}, samplers=runs_of({c: v[:3] for c, v in cells.items()}))
    g = findings.track_findings("t", plan, few, n_boot=0)
    assert g.ranks is None and "3 stored" in g.ranks_note
    assert g.plateau["default"].verdict == "not resolved"  # no scaling runs: said, not raised


# ----------------------------------------------------------------------------- the design's pilot rule


def _pilot_records(diffs, shift=0.0):
    return [rec for seed, d in enumerate(diffs) for rec in (
        record("random", 10, seed, experiment="t_v2", pref_margin=0.1),
        record("isa", 10, seed, experiment="t_v2", pref_margin=0.1 + shift + d))]


def test_paired_t_power_and_seeds():
    from effalign.design import paired_t_mde, paired_t_power, paired_t_seeds

    # a standardised effect of 1 with 10 pairs: power 0.80 (two-sided 0.05; tabulated 0.803)
    assert paired_t_power(1.0, 1.0, 10) == pytest.approx(0.803, abs=0.005)
    n = paired_t_seeds(0.5, 1.0)
    assert paired_t_power(0.5, 1.0, n) >= 0.8 > paired_t_power(0.5, 1.0, n - 1)
    assert paired_t_power(paired_t_mde(1.0, 12), 1.0, 12) == pytest.approx(0.8, abs=1e-6)
    rng = np.random.default_rng(3)
    sims = rng.normal(0.5, 1.0, (4000, n))
    t = sims.mean(1) / (sims.std(1, ddof=1) / np.sqrt(n))
    assert np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1)) == pytest.approx(paired_t_power(0.5, 1.0, n), abs=0.03)


def test_pilot_rule_uses_the_variance_of_the_first_seeds_only():
    from effalign.design import paired_t_seeds, seeds_needed

    diffs = [0.01, -0.02, 0.03, -0.01, 0.5, 0.6]  # seeds 4 and 5 lie outside the pilot
    kw = dict(track="t", metric="pref_margin", sampler="isa", baseline="random", fraction=0.1, effect=0.02,
              pilot_seeds=4, min_seeds=5, seeds=40)
    rule = seeds_needed(_pilot_records(diffs), **kw)
    sd = float(np.std(diffs[:4], ddof=1))
    assert rule.sd == pytest.approx(sd) and rule.needed == paired_t_seeds(0.02, sd)
    assert rule.seeds == min(max(rule.needed, 5), 40) and "seeds" in rule.sentence()
    shifted = seeds_needed(_pilot_records(diffs, shift=0.3), **kw)
    assert (shifted.sd, shifted.seeds) == pytest.approx((rule.sd, rule.seeds)), "the contrast itself is never used"
    assert seeds_needed(_pilot_records(diffs), **{**kw, "seeds": 8}).seeds == 8
    assert seeds_needed(_pilot_records([0.0] * 4), **kw).seeds == 5
    early = seeds_needed(_pilot_records(diffs[:3]), **kw)
    assert early.seeds is None and "3 of the 4 pilot seeds" in early.sentence()


def test_variance_components_split_run_and_item_noise():
    from effalign.design import variance_components

    ids = item_ids(40)
    rng = np.random.default_rng(1)
    recs = []
    for seed in range(6):
        run_effect = {"random": rng.normal(0, 0.05), "isa": rng.normal(0, 0.05)}
        for label in ("random", "isa"):
            margins = run_effect[label] + rng.normal(0, 0.5, len(ids))
            items = {"pairs": {"id": ids, "cluster": ids, "margin": margins.round(4).tolist(),
                               "correct": (margins > 0).astype(float).tolist()}}
            recs.append(record(label, 10, seed, experiment="t_v2", pref_margin=float(margins.mean()), items=items))
    vc = variance_components(recs, "pref_margin", sampler="isa", baseline="random", fraction=0.1)
    assert vc["items"] == 40 and vc["item_sd"] == pytest.approx(0.5, rel=0.15)
    assert vc["item_se"] == pytest.approx(0.5 / np.sqrt(40), rel=0.2)
    assert vc["pairs"] == 6 and np.isfinite(vc["diff_sd"]) and np.isfinite(vc["diff_item_se"])
    assert vc["run_sd"] == pytest.approx(np.sqrt(0.05**2 + 0.5**2 / 40), rel=0.6)


def test_one_seed_never_decides_a_verdict():
    """A per-item interval from one seed leaves out the run-to-run noise: however clear it looks,
    no rule may decide from it (the same estimate with two seeds does decide)."""
    from effalign.inference import Estimate
    from effalign.verdicts import sampler_verdict, subset_verdict

    one = Estimate(value=0.5, se=0.01, df=999, n_seeds=1, n_clusters=1000, method="per item")
    two = Estimate(value=0.5, se=0.01, df=999, n_seeds=2, n_clusters=1000, method="per item")
    assert sampler_verdict(one, PLAN).verdict == "not resolved"
    assert "run-to-run noise is not measured" in sampler_verdict(one, PLAN).reason
    noted = Estimate(value=0.5, se=0.01, df=999, n_seeds=1, n_clusters=1000, method="per item",
                     note="one seed: run-to-run noise is not in this interval")
    assert sampler_verdict(noted, PLAN).sentence().count("run-to-run noise") == 1  # said once, not twice
    assert "seeds would detect" not in sampler_verdict(noted, PLAN, effect=0.6).sentence()  # no spread to size from
    # powered for the effect of interest and not significant: say so, and whether the interval excludes it
    null = Estimate(value=0.001, se=0.005, df=11, n_seeds=12, n_clusters=400, method="per item", var_seed=12 * 0.005**2)
    text = sampler_verdict(null, PLAN, effect=0.03).sentence()
    assert "not resolved" in text and "had the power to detect 0.030" in text and "excludes ±0.030" in text
    assert "seeds would detect" not in text
    assert subset_verdict(one, 0.02, PLAN).verdict == "not resolved"
    assert sampler_verdict(two, PLAN).verdict == "holds"
    assert subset_verdict(two, 0.02, PLAN).verdict == "holds"


def test_staged_grids_run_the_pilot_then_the_rule_seeds_then_the_rest(monkeypatch):
    """`make experiments` stages a design: the primary grids' pilot seeds, then as many primary seeds as
    the pilot rule gives from the stored records, then the secondary grids (a grid's `tracks` keeps it
    off the other tracks)."""
    import effalign.experiment
    from effalign.design import design_grids, planned_grids, seeds_needed, staged_grids

    prof = load_profile("smoke")
    c = prof["common"]
    for t in c["tracks"].values():
        t["metric"] = "pref_margin"
    c["design"]["primary"].update(fraction=0.1, seeds=40, pilot_seeds=4, min_seeds=5, effect=0.02)
    c["design"]["grids"]["samplers"]["tracks"] = ["hh"]
    diffs = [0.01, -0.02, 0.03, -0.01]
    stored = {"n": 0}
    monkeypatch.setattr(effalign.experiment, "stored_records", lambda specs, store: _pilot_records(diffs[:stored["n"]]))

    pilot = staged_grids(prof, "pilot", "unused")
    assert set(pilot) == {f"{t}_primary" for t in c["tracks"]} and all(g["seeds"] == [0, 1, 2, 3] for g in pilot.values())
    stored["n"] = 3  # the pilot is not complete yet: its seeds again
    assert all(g["seeds"] == [0, 1, 2, 3] for g in staged_grids(prof, "primary", "unused").values())
    stored["n"] = 4
    want = seeds_needed(_pilot_records(diffs), track="hh", metric="pref_margin", sampler="isa", baseline="random",
                        fraction=0.1, effect=0.02, pilot_seeds=4, min_seeds=5, seeds=40).seeds
    assert 5 <= want < 40
    assert all(g["seeds"] == list(range(want)) for g in staged_grids(prof, "primary", "unused").values())
    planned = planned_grids(prof, "unused")  # what the chapters read and call missing: the rule's seeds
    assert planned["hh_primary"]["seeds"] == list(range(want)) and planned["hh_full_pool"] == design_grids(prof)["hh_full_pool"]
    stored["n"] = 3
    assert planned_grids(prof, "unused")["hh_primary"]["seeds"] == list(range(40))  # rule not fixed: the maximum

    secondary = staged_grids(prof, "secondary", "unused")
    every = design_grids(prof)
    assert list(secondary) == [n for n in every if not n.endswith("_primary")]
    assert "hh_samplers" in secondary and "testbed_samplers" not in secondary
    with pytest.raises(ValueError, match="unknown stage"):
        staged_grids(prof, "later", "unused")
    no_pilot = {**prof, "common": {**c, "design": {**c["design"], "primary": {**c["design"]["primary"], "pilot_seeds": 0}}}}
    assert staged_grids(no_pilot, "pilot", "unused") == {}  # no internal pilot: no pilot stage, all seeds primary
    assert all(len(g["seeds"]) == 40 for g in staged_grids(no_pilot, "primary", "unused").values())
    c["design"]["grids"]["samplers"]["tracks"] = ["elsewhere"]  # a track this profile leaves out: no grid
    assert not any(n.endswith("_samplers") for n in design_grids(prof))


def test_a_claim_the_design_leaves_off_a_track_says_so(tmp_path):
    """A grid limited to some `tracks`: the other tracks' verdicts name the design, not missing runs."""
    from effalign.notebook import profile_findings

    prof = load_profile("smoke")
    grids = prof["common"]["design"]["grids"]
    grids["full_pool"]["tracks"] = ["hh"]
    grids["scaling_steps"]["tracks"] = ["hh"]
    _, fs = profile_findings(prof, tmp_path, n_boot=20)
    assert "design has no whole-pool runs" in fs["testbed"].subset.sentence()
    assert fs["testbed"].subset.row()["verdict"] == "not resolved (not in the design)"
    assert fs["hh"].subset.row()["verdict"] == "not resolved"
    assert "design has no" not in fs["hh"].subset.sentence()  # designed, just not run yet
    assert "design has no equal_steps-arm runs" in fs["testbed"].plateau["equal_steps"].sentence()
    assert "design has no" not in fs["hh"].plateau["equal_steps"].sentence()


def test_length_statements_flag_a_selector_that_picks_shorter_answers():
    frame = pd.DataFrame({"label": ["random", "isa", "kcenter", "full"], "chosen_chars": [150.0, 100.0, 160.0, 155.0],
                          "chosen vs pool": [0.97, 0.65, 1.05, 1.0], "chosen_minus_rejected": [-40.0, -80.0, -30.0, -45.0]})
    said = findings.length_statements(frame, "random")
    assert len(said) == 1 and said[0].startswith("isa picks shorter chosen answers than its pools hold: 100 characters, "
                                                 "0.650 times the pool's")
    assert "(random's subsets: 150 characters" in said[0]
    longer = findings.length_statements(frame.assign(**{"chosen vs pool": [1.0, 1.3, 1.0, 1.0]}), "random")
    assert longer[0].startswith("isa picks longer")
    assert findings.length_statements(frame.assign(**{"chosen vs pool": 1.0}), "random")[0].startswith("No selector")


def test_item_group_contrasts_split_a_length_effect_and_say_what_they_show():
    rng = np.random.default_rng(5)
    seeds, n = 8, 200
    clusters = np.arange(n)
    base = rng.normal(0.0, 1.0, size=(seeds, n))
    effect = np.where(np.arange(n) < 120, 0.3, -0.2)  # isa gains on the first 120 items, loses on the other 80
    isa = base + effect + rng.normal(0.0, 0.3, size=(seeds, n)) + rng.normal(0.0, 0.05, size=(seeds, 1))
    cells = {("random", 0.1): base, ("isa", 0.1): isa}
    frame = runs_of({cell: v.mean(axis=1) for cell, v in cells.items()}, metric="pref_margin")
    items = items_of(cells, clusters, untrained=0.0)
    ids = item_ids(n)
    groups = {"chosen shorter": ids[:120], "chosen longer": ids[120:]}
    split = tables.item_group_contrasts(frame, "pref_margin", ("isa", 0.1), ("random", 0.1), items, groups)
    assert list(split) == ["chosen shorter", "chosen longer", "chosen shorter − chosen longer"]
    diff = (isa - base).mean(axis=0)
    assert split["chosen shorter"].value == pytest.approx(diff[:120].mean())
    assert split["chosen shorter − chosen longer"].value == pytest.approx(diff[:120].mean() - diff[120:].mean())
    lo, hi = split["chosen shorter − chosen longer"].interval(0.95)
    assert lo < 0.5 < hi and lo > 0, "covers the true difference of 0.5 and excludes zero"
    text = findings.length_split_statements(split, groups, "isa", "random")[0]
    assert text.startswith("Exploratory") and "on the 120 held-out pairs" in text and "excludes zero" in text
    assert f"MDE at 80% power {tables.fmt(split['chosen shorter − chosen longer'].mde(0.05, 0.8))}" in text
    # without per-item outcomes, or for a metric that scores prompts, there is no split and the sentence says why
    assert tables.item_group_contrasts(frame, "pref_margin", ("isa", 0.1), ("random", 0.1), None, groups) == {}
    assert "stored no per-item outcomes" in findings.length_split_statements({}, groups, "isa", "random")[0]
    assert "scores answers to prompts" in findings.length_split_statements({}, {}, "isa", "random")[0]
