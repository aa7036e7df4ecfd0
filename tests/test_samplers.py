"""Tests for effalign.samplers: properties of every sampler, ISA on synthetic data, reference
margins, the difficulty sampler on a tiny model, metadata, determinism across thread counts, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effalign.export import export_subset, sidecar_path
from effalign.features import PairFeatures
from effalign.samplers import (
    SAMPLERS,
    ClusterSampler,
    ISASampler,
    KCenterSampler,
    allocate_budget,
    available_samplers,
    expected_random_overlap,
    get_sampler,
    gumbel_top_k,
    selection_overlap,
)

FEATURE_SAMPLERS = ["isa", "kcenter", "cluster", "random"]
ALL = [name for name in available_samplers() if name != "difficulty"]  # difficulty trains a model: own tests


def _synthetic(n: int, d: int, seed: int, ties: bool = False) -> tuple[np.ndarray, dict[str, dict]]:
    """Features and, per sampler, the parameters that make it feature-only (lengths, margins)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if ties:  # duplicated rows and tied lengths/margins
        X[n // 2 :] = X[: n - n // 2]
    lengths = rng.integers(0, 4 if ties else 1000, size=n)
    margins = np.round(rng.normal(size=n), 0 if ties else 6)
    params = {name: {} for name in ALL}
    params["longest"] = {"lengths": lengths}
    params["ref_margin_low"] = {"margins": margins}
    params["ref_margin_high"] = {"margins": margins}
    return X, params


# --------------------------------------------------------------------------- properties, every sampler


def test_registry() -> None:
    assert set(ALL) == {"isa", "random", "kcenter", "cluster", "longest", "ref_margin_low", "ref_margin_high"}
    assert set(SAMPLERS) == {*ALL, "difficulty"}
    assert isinstance(get_sampler("ISA", dim=4), ISASampler)
    assert get_sampler("isa", dim=4).dim == 4
    with pytest.raises(ValueError, match="known samplers: isa, random"):
        get_sampler("nope")
    with pytest.raises(ValueError, match="does not take parameter.*bogus.*its parameters: dim"):
        get_sampler("isa", bogus=1)
    # the old names are refused with the new ones named (records keep the old names in their specs)
    for old, new in (("margin_low", "ref_margin_low"), ("margin-high", "ref_margin_high")):
        with pytest.raises(ValueError, match=f"renamed '{new}'.*'difficulty'"):
            get_sampler(old)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(3, 40), d=st.integers(1, 5), frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**31), ties=st.booleans()
)
def test_sampler_properties(name: str, n: int, d: int, frac: float, seed: int, ties: bool) -> None:
    X, params = _synthetic(n, d, seed % 1000, ties)
    budget = max(1, int(round(frac * n)))
    a = get_sampler(name, **params[name]).select(X, budget, seed)
    b = get_sampler(name, **params[name]).select(X, budget, seed)
    assert a.dtype == np.int64 and a.shape == (budget,)
    assert np.unique(a).size == budget  # no duplicates, budget met exactly
    assert a.min() >= 0 and a.max() < n
    np.testing.assert_array_equal(a, b)  # deterministic for a seed


@pytest.mark.parametrize("name", ALL)
def test_full_budget_and_seed_dependence(name: str) -> None:
    X, params = _synthetic(60, 3, 0)
    s = get_sampler(name, **params[name])
    assert sorted(s.select(X, 60, 1).tolist()) == list(range(60))
    np.testing.assert_array_equal(s.selected_, s.select(X, 60, 1))
    info = s.selection_info()
    assert all(len(v) == 60 for v in info.values())
    json.dumps(s.get_params())  # params are JSON-ready (arrays summarised)


def test_random_depends_on_seed() -> None:
    X, _ = _synthetic(100, 2, 0)
    r = get_sampler("random")
    assert not np.array_equal(r.select(X, 10, 0), r.select(X, 10, 1))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("budget", [0, -3, 21, 2.5, True, "5", None])
def test_budget_errors(name: str, budget: object) -> None:
    X, params = _synthetic(20, 2, 0)
    with pytest.raises(ValueError, match="budget.*(pool size 20|got)"):
        get_sampler(name, **params[name]).select(X, budget, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["isa", "kcenter", "cluster"])
def test_nan_features_error(name: str) -> None:
    X, _ = _synthetic(20, 3, 0)
    X[7, 1] = np.nan
    X[12, 0] = np.inf
    with pytest.raises(ValueError, match="features contain NaN or inf in 2 of 20 rows \\(first at index 7\\)"):
        get_sampler(name).select(X, 5, 0)


@pytest.mark.parametrize("name,param", [("longest", "lengths"), ("ref_margin_low", "margins"), ("ref_margin_high", "margins")])
def test_scalar_errors(name: str, param: str) -> None:
    X, _ = _synthetic(10, 2, 0)
    bad = np.arange(10.0)
    bad[3] = np.nan
    with pytest.raises(ValueError, match=f"{param} contain NaN.*first at index 3"):
        get_sampler(name, **{param: bad}).select(X, 2, 0)
    with pytest.raises(ValueError, match=f"9 {param} for a pool of 10"):
        get_sampler(name, **{param: np.arange(9.0)}).select(X, 2, 0)
    with pytest.raises(ValueError, match="needs"):  # a raw array carries no lengths or margins
        get_sampler(name).select(X, 2, 0)


def test_other_errors() -> None:
    X, _ = _synthetic(20, 2, 0)
    with pytest.raises(ValueError, match="score must be one of"):
        ISASampler(score="nope").select(X, 3, 0)
    with pytest.raises(ValueError, match="temperature"):
        ISASampler(temperature=-1.0).select(X, 3, 0)
    with pytest.raises(ValueError, match="seed"):
        get_sampler("random").select(X, 3, -1)
    with pytest.raises(ValueError, match="2-D"):
        get_sampler("isa").select(np.zeros(5), 2, 0)
    with pytest.raises(ValueError, match="backend"):
        KCenterSampler(backend="gpu").select(X, 3, 0)


# --------------------------------------------------------------------------- simple samplers


def test_longest_and_margins_order_and_ties() -> None:
    lengths = np.array([5, 1, 9, 9, 3, 9, 0])
    s = get_sampler("longest", lengths=lengths)
    top = s.select(np.zeros((7, 1)), 2, 0)
    assert set(top) <= {2, 3, 5}
    picks = {tuple(sorted(s.select(np.zeros((7, 1)), 2, seed))) for seed in range(20)}
    assert len(picks) > 1  # ties broken by the seed
    np.testing.assert_array_equal(s.select(np.zeros((7, 1)), 5, 0)[3:], [0, 4])
    m = np.array([0.5, -2.0, 3.0, 1.0])
    np.testing.assert_array_equal(get_sampler("ref_margin_low", margins=m).select(np.zeros((4, 1)), 4, 0), [1, 0, 3, 2])
    np.testing.assert_array_equal(get_sampler("ref_margin_high", margins=m).select(np.zeros((4, 1)), 2, 0), [2, 3])


def test_pair_features_pool() -> None:
    rng = np.random.default_rng(0)
    e = [rng.normal(size=(30, 8)) for _ in range(3)]
    feats = PairFeatures(*e, chosen_lengths=np.arange(30), ref_margins=-np.arange(30.0))
    assert len(feats) == 30 and feats.raw().shape == (30, 16)
    np.testing.assert_allclose(feats.raw()[:, 8:], e[1] - e[2], atol=1e-6)
    assert get_sampler("longest").select(feats, 3, 0).tolist() == [29, 28, 27]
    assert get_sampler("ref_margin_high").select(feats, 2, 0).tolist() == [0, 1]
    assert get_sampler("isa", dim=4).select(feats, 5, 0).shape == (5,)
    with pytest.raises(ValueError, match="entries for 30 pairs"):
        PairFeatures(*e, chosen_lengths=np.arange(3))
    with pytest.raises(ValueError, match="disagree on n"):
        PairFeatures(e[0][:5], e[1], e[2])


def test_kcenter_farthest_first() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    s = KCenterSampler(dim=None, standardize=False)
    sel = s.select(X, 40, 0)
    assert np.isinf(s.radii_[0])
    assert np.all(np.diff(s.radii_[1:]) <= 1e-5)  # greedy radii never grow
    # every point lies within the last radius of some centre (2-approximate k-center cover)
    d = np.sqrt(((X[:, None, :] - X[None, sel[:-1], :]) ** 2).sum(-1)).min(1)
    assert d.max() <= s.radii_[-1] + 1e-4
    assert sel[1] == np.argmax(((X - X[sel[0]]) ** 2).sum(1))
    np.testing.assert_array_equal(sel, KCenterSampler(dim=None, standardize=False, backend="torch").select(X, 40, 0))


def test_cluster_one_per_blob_and_shared_nearest() -> None:
    rng = np.random.default_rng(2)
    centres = np.array([[0, 0], [20, 0], [0, 20], [20, 20]])
    X = np.concatenate([c + rng.normal(size=(50, 2)) for c in centres])
    sel = ClusterSampler(dim=None).select(X, 4, 0)
    assert sorted(sel // 50) == [0, 1, 2, 3]
    # 3 distinct points, 6 clusters: centroids share nearest points, picks stay unique
    Y = np.repeat(np.eye(3), 4, axis=0)
    s = ClusterSampler(dim=None)
    assert np.unique(s.select(Y, 6, 0)).size == 6
    assert np.all(s.distances_ >= 0)


# --------------------------------------------------------------------------- ISA on synthetic data


def test_allocate_budget() -> None:
    np.testing.assert_array_equal(allocate_budget(7, [0.5, 0.3, 0.2], [100, 100, 100]), [4, 2, 1])
    np.testing.assert_array_equal(allocate_budget(10, [0.5, 0.5], [2, 100]), [2, 8])  # capped, redistributed
    np.testing.assert_array_equal(allocate_budget(5, [0.0, 1.0], [3, 2]), [3, 2])
    np.testing.assert_array_equal(allocate_budget(3, [1, 1, 1, 1], [5, 5, 5, 5]), [1, 1, 1, 0])  # ties: low index
    with pytest.raises(ValueError, match="capacity"):
        allocate_budget(11, [0.5, 0.5], [5, 5])


@settings(max_examples=60, deadline=None)
@given(
    w=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
    caps=st.lists(st.integers(0, 30), min_size=6, max_size=6),
    frac=st.floats(0.0, 1.0),
)
def test_allocate_budget_properties(w: list[float], caps: list[int], frac: float) -> None:
    cap = np.array(caps[: len(w)])
    budget = int(round(frac * cap.sum()))
    a = allocate_budget(budget, w, cap)
    assert a.sum() == budget and np.all(a <= cap) and np.all(a >= 0)
    if sum(w) > 0 and np.all(budget * np.array(w) / sum(w) <= cap - 1):  # nothing capped: largest remainder
        assert np.all(np.abs(a - budget * np.array(w) / sum(w)) < 1)


def _two_blobs(n0: int = 700, n1: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal([-5, 0], 1, size=(n0, 2)), rng.normal([5, 0], 1, size=(n1, 2))])


def test_isa_rare_far_cluster_highest_surprisal() -> None:
    rng = np.random.default_rng(3)
    X = np.concatenate([
        rng.normal([-4, 0], 1, size=(1000, 2)),
        rng.normal([4, 0], 1, size=(1000, 2)),
        rng.normal([0, 25], 0.5, size=(10, 2)),  # rare and far: indices 2000..2009
    ])
    s = ISASampler(dim=None, stratify=False)
    sel = s.select(X, 10, 0)
    assert set(np.argsort(-s.surprisal_)[:10]) == set(range(2000, 2010))
    assert set(sel) == set(range(2000, 2010))
    np.testing.assert_allclose(s.surprisal_, -s.mixture_.score_samples(s.features_))


def test_isa_component_shares_follow_weights() -> None:
    X = _two_blobs(700, 300)
    s = ISASampler(dim=None, temperature=0.5)
    sel = s.select(X, 100, 0)
    w = s.mixture_.weights_
    np.testing.assert_allclose(sorted(w), [0.3, 0.7], atol=0.01)
    np.testing.assert_array_equal(s.component_budget_, allocate_budget(100, w, s.component_sizes_))
    assert sorted(s.component_budget_.tolist()) == [30, 70]
    np.testing.assert_array_equal(np.bincount(s.labels_[sel], minlength=2), s.component_budget_)
    big = int(np.argmax(w))
    assert np.all((X[s.labels_ == big, 0] < 0)) or np.all((X[s.labels_ == big, 0] > 0))


def test_isa_temperature_zero_is_top_k() -> None:
    X = _two_blobs(300, 200, seed=1)
    flat = ISASampler(dim=None, stratify=False)
    sel = flat.select(X, 40, 0)
    np.testing.assert_array_equal(sel, np.argsort(-flat.scores_, kind="stable")[:40])
    strat = ISASampler(dim=None)
    sel = strat.select(X, 40, 5)
    for k, quota in enumerate(strat.component_budget_):
        members = np.flatnonzero(strat.labels_ == k)
        top = members[np.argsort(-strat.scores_[members], kind="stable")[:quota]]
        assert set(top) == set(sel[strat.labels_[sel] == k])
    # a tiny temperature gives the same set; a large one does not, and depends on the seed
    assert set(ISASampler(dim=None, temperature=1e-9).select(X, 40, 3)) == set(sel)
    hot = [set(ISASampler(dim=None, temperature=100.0).select(X, 40, sd)) for sd in (0, 1)]
    assert hot[0] != set(sel) and hot[0] != hot[1]


def test_gumbel_top_k_distribution() -> None:
    rng = np.random.default_rng(0)
    scores = np.array([0.0, np.log(3.0)])
    picks = [gumbel_top_k(scores, 1, 1.0, rng.gumbel(size=2))[0] for _ in range(4000)]
    assert abs(np.mean(picks) - 0.75) < 0.03  # P(item) ~ exp(score / T)


def test_isa_entropy_and_mixed_scores() -> None:
    X = _two_blobs(500, 500, seed=4)
    s = ISASampler(dim=None, score="entropy", stratify=False)
    sel = s.select(X, 10, 0)
    # highest assignment entropy: responsibilities nearest 1/2, i.e. the boundary between the blobs
    assert set(sel) == set(np.argsort(np.abs(s.responsibilities_[:, 0] - 0.5))[:10])
    assert np.all(np.searchsorted(np.sort(np.abs(X[:, 0])), np.abs(X[sel, 0])) < 20)
    assert np.all((s.entropy_ >= 0) & (s.entropy_ <= np.log(2) + 1e-9))
    m = ISASampler(dim=None, score="mixed")
    m.select(X, 10, 0)
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    np.testing.assert_allclose(m.scores_, z(m.surprisal_) + z(m.entropy_))


def test_isa_pca_dim() -> None:
    X = np.random.default_rng(5).normal(size=(200, 50))
    s = ISASampler(dim=8)
    s.select(X, 20, 0)
    assert s.features_.shape == (200, 8) and s.pca_.n_components_ == 8
    assert s.responsibilities_.shape == (200, 2)


# --------------------------------------------------------------------------- export


def _write_pool(path) -> None:
    topics = ["cats", "tax law", "bread", "rust", "jazz", "sleep", "chess", "rain", "maps", "tea"]
    rows = []
    for i in range(30):
        t = topics[i % 10]
        rows.append({
            "prompt": f"Tell me something about {t} (question {i}).",
            "chosen": f"Here is a careful answer about {t}: " + "detail " * (1 + i % 7),
            "rejected": "I won't." if i % 2 else f"{t} is boring.",
        })
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_export_round_trip(tmp_path, monkeypatch) -> None:
    from effalign.cli import main
    from effalign.data import load_preferences

    monkeypatch.setenv("EFFALIGN_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "pool.jsonl"
    _write_pool(src)
    out = tmp_path / "sub" / "isa.jsonl"
    text = export_subset(str(src), "isa", out, fraction=0.2, seed=0, params={"dim": 8})
    assert "isa: 6 of 30 pairs" in text and "component 1" in text
    meta = json.loads(sidecar_path(out).read_text())
    assert sidecar_path(out).name == ".isa.meta.json"
    assert meta["spec"]["budget"] == 6 and meta["spec"]["params"]["dim"] == 8
    assert meta["spec"]["load_report"]["rows_kept"] == 30
    assert meta["indices"] == sorted(meta["selection_order"])
    assert set(meta["scores"]) == {"score", "surprisal", "entropy", "component"}
    assert len(meta["scores"]["surprisal"]) == 6
    sub = load_preferences(out)
    assert len(sub) == 6 and sub.report.format == "trl"
    assert [p.metadata["pool_index"] for p in sub] == meta["indices"]
    pool = load_preferences(src)
    assert sub[0].chosen == pool[meta["indices"][0]].chosen
    row = json.loads(out.read_text().splitlines()[0])
    assert set(row) == {"prompt", "chosen", "rejected", "metadata"} and row["prompt"][0]["role"] == "user"
    # the cached embeddings make a second run cheap and identical
    export_subset(str(src), "isa", tmp_path / "again.jsonl.gz", budget=6, seed=0, params={"dim": 8})
    again = json.loads((tmp_path / ".again.meta.json").read_text())
    assert again["selection_order"] == meta["selection_order"]
    # the CLI wraps it; every embedding-free sampler works
    for name in ("random", "longest", "kcenter", "cluster"):
        assert main(["select", "--source", str(src), "--sampler", name, "--budget", "4", "--out", str(tmp_path / f"{name}.jsonl")]) == 0
    assert main(["select", "--source", str(src), "--sampler", "isa", "--budget", "31", "--out", str(tmp_path / "x.jsonl")]) == 2
    with pytest.raises(ValueError, match="exactly one"):
        export_subset(str(src), "random", tmp_path / "y.jsonl", fraction=0.1, budget=3)
    with pytest.raises(ValueError, match=".jsonl"):
        export_subset(str(src), "random", tmp_path / "y.csv", budget=3)


def _pairs(n: int) -> list:
    """Pairs with chosen answers of growing length and short rejected ones (varied lengths)."""
    from effalign.data import PreferencePair

    return [
        PreferencePair([{"role": "user", "content": f"Question {i} about topic {i % 3}?"}],
                       [{"role": "assistant", "content": "A good answer " * (i % 7 + 1)}],
                       [{"role": "assistant", "content": f"No {i}." + " really" * (i % 3)}])
        for i in range(n)
    ]


@pytest.mark.slow
def test_ref_margin_samplers_with_reference_logps(tmp_path, tiny) -> None:
    """Summed and per-token margins from effalign.logps under a tiny random policy, cached in tmp."""
    from effalign.logps import TokenizeConfig, reference_logps, tokenize_pairs

    policy = tiny
    pairs = _pairs(6)
    cache = str(tmp_path / "ref.sqlite")
    low = get_sampler("ref_margin_low", policy=policy, cache=cache)
    sel = low.select(pairs, 3, 0)
    ref = reference_logps(pairs, policy, cache=cache)
    assert ref.computed == 0  # the sampler's numbers were cached for training to reuse
    np.testing.assert_allclose(low.margins_, ref.chosen - ref.rejected)
    assert set(sel) == set(np.argsort(low.margins_)[:3])
    high = get_sampler("ref_margin_high", policy=policy, cache=cache).select(pairs, 3, 0)
    assert set(high) == set(np.argsort(-low.margins_)[:3])
    json.dumps(low.get_params())  # a (model, tokenizer) policy is summarised
    # per token: summed log-prob over the completion tokens the log-prob code scored
    tokenized, _ = tokenize_pairs(pairs, tiny[1], TokenizeConfig(128, 6))
    n_c = np.array([len(t.chosen_ids) for t in tokenized])
    n_r = np.array([len(t.rejected_ids) for t in tokenized])
    assert (np.r_[n_c, n_r] == 6).any() and (np.r_[n_c, n_r] < 6).any()  # the cut bites some answers only
    short = reference_logps(pairs, policy, config=TokenizeConfig(128, 6), cache=cache)
    per = get_sampler("ref_margin_low", policy=policy, cache=cache, per_token=True, max_completion_tokens=6)
    per.select(pairs, 3, 0)
    np.testing.assert_allclose(per.margins_, short.chosen / n_c - short.rejected / n_r)
    assert per.metadata()["margin"] == "per_token" and low.metadata()["margin"] == "summed"
    # the run's own reference log-probs (logps=...) give the same numbers
    given = get_sampler("ref_margin_low", policy=policy, per_token=True, logps=short, max_completion_tokens=6)
    given.select(pairs, 3, 0)
    np.testing.assert_array_equal(given.margins_, per.margins_)


def test_ref_margin_per_token_from_given_logps_and_errors() -> None:
    logps = {"chosen": np.array([-10.0, -40.0, -6.0]), "rejected": np.array([-5.0, -8.0, -6.0])}
    counts = np.array([[10, 5], [40, 4], [3, 3]])
    s = get_sampler("ref_margin_high", per_token=True, logps=logps, token_counts=counts)
    s.select(np.zeros((3, 1)), 3, 0)
    np.testing.assert_allclose(s.margins_, [-1.0 + 1.0, -1.0 + 2.0, -2.0 + 2.0])
    summed = get_sampler("ref_margin_high", logps=logps).select(np.zeros((3, 1)), 3, 0)
    assert summed.tolist() == [2, 0, 1]  # -> per token the order is 1 first: length no longer decides
    assert s.selected_[0] == 1
    assert json.loads(json.dumps(s.metadata()))["params"]["logps"] == {"chosen": "<array (3,)>", "rejected": "<array (3,)>"}
    with pytest.raises(ValueError, match="per_token needs the chosen and rejected log-probs separately"):
        get_sampler("ref_margin_low", per_token=True, margins=np.zeros(3)).select(np.zeros((3, 1)), 2, 0)
    with pytest.raises(ValueError, match="token counts"):
        get_sampler("ref_margin_low", per_token=True, logps=logps).select(np.zeros((3, 1)), 2, 0)


# --------------------------------------------------------------------------- metadata, overlap, threads


def test_metadata_and_length_profile() -> None:
    pairs = _pairs(40)
    c = np.array([len(p.chosen_text) for p in pairs], dtype=float)
    r = np.array([len(p.rejected_text) for p in pairs], dtype=float)
    s = get_sampler("longest")
    sel = s.select(pairs, 8, 0)
    meta = s.metadata()
    assert meta["sampler"] == "longest" and meta["budget"] == 8 and meta["pool_size"] == 40 and meta["seed"] == 0
    prof = meta["length_profile"]
    assert prof["unit"] == "chars"
    assert prof["subset"]["chosen_mean"] == round(c[sel].mean(), 1)
    assert prof["subset"]["rejected_mean"] == round(r[sel].mean(), 1)
    assert prof["subset"]["chosen_minus_rejected_mean"] == round((c - r)[sel].mean(), 1)
    assert prof["pool"]["chosen_minus_rejected_mean"] == round((c - r).mean(), 1)
    assert prof["subset"]["chosen_mean"] > prof["pool"]["chosen_mean"]  # longest picks long answers
    json.dumps(meta)
    # precomputed character lengths give the same profile; a feature array or token lengths give none
    rng = np.random.default_rng(0)
    e = [rng.normal(size=(40, 4)) for _ in range(3)]
    feats = PairFeatures(*e, chosen_lengths=c, rejected_lengths=r)
    s2 = get_sampler("longest")
    s2.select(feats, 8, 0)
    assert s2.metadata()["length_profile"] == prof
    tokens = PairFeatures(*e, chosen_lengths=c, rejected_lengths=r, length_unit="tokens")
    rnd = get_sampler("random")
    rnd.select(tokens, 3, 0)
    assert rnd.metadata()["length_profile"] is None
    rnd.select(np.zeros((40, 2)), 3, 0)
    assert rnd.metadata()["length_profile"] is None
    with pytest.raises(RuntimeError, match="select"):
        get_sampler("random").metadata()
    isa = ISASampler(dim=None)
    isa.select(_two_blobs(70, 30), 10, 0)
    m = isa.metadata()
    assert sum(m["components"]["subset_count"]) == 10 and len(m["components"]["weight"]) == 2
    assert m["score_spread"]["sd"] > 0
    json.dumps(m)


def test_selection_overlap() -> None:
    assert selection_overlap([[1, 2, 3], [1, 2, 3]]) == 1.0
    assert selection_overlap([[1, 2], [3, 4]]) == 0.0
    assert selection_overlap([[1, 2, 3], [2, 3, 4], [1, 2, 3]]) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    with pytest.raises(ValueError, match="at least two"):
        selection_overlap([[1, 2]])
    # expected value for independent uniform subsets: exact formula against simulation
    n, k = 60, 12
    draws = [get_sampler("random").select(np.zeros((n, 1)), k, seed) for seed in range(400)]
    simulated = np.mean([selection_overlap([draws[i], draws[i + 1]]) for i in range(0, 400, 2)])
    assert abs(simulated - expected_random_overlap(n, k)) < 0.02
    assert expected_random_overlap(10, 10) == pytest.approx(1.0)


def test_isa_temperature_acts_on_standardised_score() -> None:
    # 32-d Gaussian features: the surprisal's spread is about 4 nats, so a temperature on the raw
    # score (the earlier behaviour) kept about two thirds of top-k at T = 1
    X = np.random.default_rng(2).normal(size=(1000, 32))
    top = ISASampler(dim=None, stratify=False)
    top_sel = top.select(X, 100, 0)
    assert top.scores_.std() > 3
    np.testing.assert_allclose(top.zscores_, (top.scores_ - top.scores_.mean()) / top.scores_.std())
    warm = ISASampler(dim=None, stratify=False, temperature=1.0)
    sels = [warm.select(X, 100, seed) for seed in (0, 1, 2)]
    gumbel = np.random.default_rng(2).gumbel(size=X.shape[0])  # the noise of the last seed
    np.testing.assert_allclose(warm.keys_, warm.zscores_ / 1.0 + gumbel)
    # at temperature 1 (one standard deviation) the draw is soft: far from top-k, and seed-dependent
    assert selection_overlap([top_sel, sels[0]]) < 0.45
    assert selection_overlap(sels) < 0.45
    # a small temperature is top-k again
    assert selection_overlap([top_sel, ISASampler(dim=None, stratify=False, temperature=0.01).select(X, 100, 0)]) > 0.9


def test_scores_identical_under_one_and_two_threads(tmp_path) -> None:
    """A fresh process runs the same selections under threadpool limits of 1 then 2 (any native
    pool first loaded inside the samplers' one-thread block would have run with 2 threads the
    first time): scores and selections must be bit-identical."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "threads.py"
    script.write_text(
        "import hashlib, sys\n"
        "import numpy as np\n"
        "from threadpoolctl import threadpool_limits\n"
        "from effalign.samplers import get_sampler\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(6000, 768)).astype(np.float32)\n"
        "X[:1000] += 0.3\n"
        "h = lambda a: hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()\n"
        "for limit in (1, 2):\n"
        "    with threadpool_limits(limits=limit):\n"
        "        c = get_sampler('cluster', dim=32); sel = c.select(X, 300, 0)\n"
        "        i = get_sampler('isa', dim=32); isel = i.select(X, 300, 0)\n"
        "        print(h(sel), h(c.features_), h(isel), h(i.scores_))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    import effalign

    env["PYTHONPATH"] = os.pathsep.join([str(Path(effalign.__file__).parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    one, two = out.stdout.strip().splitlines()
    assert one == two


# --------------------------------------------------------------------------- difficulty (Qi et al. 2025)


@pytest.mark.slow
def test_difficulty_sampler_on_tiny_model(tmp_path, tiny) -> None:
    """Trains a scoring model on a disjoint random part of the pool and picks the smallest gaps."""
    from effalign.logps import TokenizeConfig, model_fingerprint, reference_logps

    pairs = _pairs(24)
    before = model_fingerprint(tiny[0])
    params = {"policy": tiny, "scoring_fraction": 0.5, "scoring_train": {"epochs": 2, "batch_size": 4},
              "cache": str(tmp_path / "ref.sqlite"), "progress": False}
    s = get_sampler("difficulty", **params)
    sel = s.select(pairs, 5, 0)
    assert model_fingerprint(tiny[0]) == before  # the caller's policy is never trained
    score_part, cand = s.scoring_indices_, s.candidates_
    assert score_part.size == 12 and cand.size == 12 and set(score_part).isdisjoint(cand)
    assert set(sel) <= set(cand)  # never a pair the scoring model trained on
    assert np.isnan(s.gaps_[score_part]).all() and np.isfinite(s.gaps_[cand]).all()
    # smallest gaps first
    np.testing.assert_array_equal(s.gaps_[sel], np.sort(s.gaps_[cand])[:5])
    # the gap is relative to the untrained reference: beta * (policy - reference) margins
    ref = reference_logps(pairs, tiny, config=TokenizeConfig(), cache=False)  # same batches as the sampler's
    pol = s.policy_logps_
    np.testing.assert_allclose(
        s.gaps_[cand], 0.1 * ((pol[:, 0] - ref.chosen[cand]) - (pol[:, 1] - ref.rejected[cand])), atol=1e-6
    )
    assert np.abs(s.gaps_[cand]).max() > 1e-4  # training moved the scoring model
    meta = s.metadata()
    cost = meta["scoring_cost"]
    assert cost["seconds"] > 0 and cost["train_steps"] == 6 and cost["train_tokens"] > 0
    assert cost["tokens"] == cost["train_tokens"] + cost["reference_tokens"] + cost["score_tokens"]
    assert meta["scoring"]["scoring_pairs"] == 12 and meta["scoring"]["fraction"] == 0.5
    json.dumps(meta)
    # the same seed gives the same split and selection; another seed another split
    again = get_sampler("difficulty", **params)
    np.testing.assert_array_equal(again.select(pairs, 5, 0), sel)
    assert not np.array_equal(again.scoring_split(24, 1)[0], score_part)
    with pytest.raises(ValueError, match="exceeds the 12 candidates"):
        get_sampler("difficulty", **params).select(pairs, 13, 0)
    with pytest.raises(ValueError, match="needs the pairs"):
        get_sampler("difficulty").select(np.zeros((10, 2)), 3, 0)
