"""Tests for effalign.scaling (issue 5): parameter recovery, model choice, errors, plot."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from effalign.scaling import (
    FORMS,
    ScalingError,
    exp_plateau,
    fit_scaling,
    fit_scaling_table,
    log_law,
    power_law,
)

# Realistic design: preference accuracy rising from ~0.5 to ~0.6, 8 sizes on a
# geometric grid from 20 to 2000 pairs, 3 seeds per size.
NS = np.unique(np.round(np.geomspace(20, 2000, 8)))
N = np.repeat(NS, 3)
SEEDS = np.tile(np.arange(3), NS.size)

# Generating parameters, chosen so the forms are distinguishable in principle
# over n in [20, 2000]: the exponential plateau saturates within the range
# (tau = 300, 95 % of the gain by n ~ 920), the power law keeps a clear
# curvature in log n but approaches its plateau slowly (alpha = 0.5; 95 % of
# the gain only at n ~ 8000), and the log law is a straight line in log n.
# Each rises by ~0.1 over the range.
TRUTH = {
    "exp_plateau": (exp_plateau, {"a": 0.6, "b": 0.5, "tau": 300.0}),
    "power_law": (power_law, {"a": 0.62, "c": 0.5, "alpha": 0.5}),
    "log_law": (log_law, {"b": 0.45, "c": 0.02}),
}


def _data(form: str, sd: float, rng: np.random.Generator) -> np.ndarray:
    f, p = TRUTH[form]
    return f(N, **p) + rng.normal(0.0, sd, N.size)


# --------------------------------------------------------------------------
# parameter recovery
# --------------------------------------------------------------------------


@pytest.mark.parametrize("form", list(TRUTH))
def test_recovers_parameters_within_intervals(form: str) -> None:
    y = _data(form, 0.0075, np.random.default_rng(11))
    rep = fit_scaling(N, y, groups=SEEDS, n_boot=200, seed=3)
    fit = rep.fits[form]
    assert fit.success, fit.message
    assert rep.bootstrap == "residuals"  # 3 seeds -> residual bootstrap
    for name, true in TRUTH[form][1].items():
        lo, hi = fit.ci[name]
        assert lo <= fit.params[name] <= hi
        assert lo <= true <= hi, (name, true, (lo, hi))
    if form == "exp_plateau":
        # n95 = n_min + tau ln 20 (about n_min + 3 tau) for the exponential plateau
        true_n95 = NS[0] + 300.0 * math.log(20)
        lo, hi = rep.n_at_interval(0.95, form)
        assert lo <= true_n95 <= hi
        assert rep.n_at(0.95, form) == pytest.approx(NS[0] + math.log(20) * fit.params["tau"])


def test_interval_coverage_is_near_nominal() -> None:
    """Over 20 noisy data sets the 95 % interval of tau covers the truth mostly."""
    rng = np.random.default_rng(2024)
    hits = 0
    for i in range(20):
        y = _data("exp_plateau", 0.0075, rng)
        rep = fit_scaling(N, y, forms=["exp_plateau"], n_boot=100, seed=i)
        lo, hi = rep.fits["exp_plateau"].ci["tau"]
        hits += lo <= 300.0 <= hi
    assert hits >= 15


def test_exact_data_recovered_precisely() -> None:
    y = exp_plateau(N, 0.7, 0.4, 150.0) + np.random.default_rng(0).normal(0, 1e-5, N.size)
    rep = fit_scaling(N, y, n_boot=0)
    p = rep.fits["exp_plateau"].params
    assert rep.best == "exp_plateau"
    assert p["a"] == pytest.approx(0.7, abs=1e-4)
    assert p["b"] == pytest.approx(0.4, abs=1e-3)
    assert p["tau"] == pytest.approx(150.0, rel=1e-2)
    assert rep.plateau() == pytest.approx(0.7, abs=1e-4)


def test_decreasing_metric_and_weights() -> None:
    """A falling loss curve fits too (the forms allow either sign of the gain)."""
    y = power_law(N, 1.2, -3.0, 0.4) + np.random.default_rng(1).normal(0, 0.01, N.size)
    rep = fit_scaling(N, y, n_boot=0)
    assert rep.best == "power_law"
    assert rep.fits["power_law"].params["c"] < 0
    assert sum(rep.weights.values()) == pytest.approx(1.0)
    assert rep.criterion == "AICc"


# --------------------------------------------------------------------------
# model choice
# --------------------------------------------------------------------------


@pytest.mark.parametrize("form", list(TRUTH))
def test_model_choice_names_generating_form(form: str) -> None:
    """At realistic noise (sd 0.005 per seed point on a 0.1 gain) AICc picks the
    generating form in >= 90 % of 200 synthetic trials."""
    rng = np.random.default_rng({"exp_plateau": 1, "power_law": 2, "log_law": 3}[form])
    wins = sum(fit_scaling(N, _data(form, 0.005, rng), n_boot=0).best == form for _ in range(200))
    assert wins >= 180, f"{form}: chosen in {wins}/200 trials"


# --------------------------------------------------------------------------
# derived quantities
# --------------------------------------------------------------------------


def test_n_at_and_saving_formulas() -> None:
    y = _data("power_law", 0.002, np.random.default_rng(5))
    rep = fit_scaling(N, y, n_full=10_000, n_boot=0)
    pe, pp = rep.fits["exp_plateau"].params, rep.fits["power_law"].params
    n0 = NS[0]
    for f in (0.9, 0.95, 0.99):
        assert rep.n_at(f, "exp_plateau") == pytest.approx(n0 - pe["tau"] * math.log(1 - f))
        assert rep.n_at(f, "power_law") == pytest.approx(n0 * (1 - f) ** (-1 / pp["alpha"]))
    assert rep.n_at(0.9, "power_law") < rep.n_at(0.95, "power_law") < rep.n_at(0.99, "power_law")
    assert rep.saving(0.95, "power_law") == pytest.approx(1 - rep.n_at(0.95, "power_law") / 10_000)
    # the curve really covers 95 % of the gain at n95
    n95 = rep.n_at(0.95, "power_law")
    y0, ya = rep.predict(n0, "power_law"), rep.plateau("power_law")
    assert (rep.predict(n95, "power_law") - y0) / (ya - y0) == pytest.approx(0.95)
    # relative to n_full: the log law answers, n = n0^(1-f) n_full^f
    assert rep.n_at(0.5, "log_law", relative_to="n_full") == pytest.approx(math.sqrt(n0 * 10_000))
    yf = rep.predict(10_000, "exp_plateau")
    n50 = rep.n_at(0.5, "exp_plateau", relative_to="n_full")
    y0e = rep.predict(n0, "exp_plateau")
    assert (rep.predict(n50, "exp_plateau") - y0e) / (yf - y0e) == pytest.approx(0.5)


def test_log_law_has_no_plateau() -> None:
    rep = fit_scaling(N, _data("log_law", 0.002, np.random.default_rng(6)), n_boot=0)
    assert rep.best == "log_law"
    with pytest.raises(ScalingError, match="no plateau"):
        rep.plateau()
    with pytest.raises(ScalingError, match="relative_to='n_full'"):
        rep.n_at(0.95)
    with pytest.raises(ScalingError, match="between 0 and 1"):
        rep.n_at(1.0, "exp_plateau")


def test_table_summary_and_dataframe_helper() -> None:
    y = _data("exp_plateau", 0.0075, np.random.default_rng(7))
    df = pd.DataFrame({"pairs": N, "acc": y, "seed": SEEDS})
    rep = fit_scaling_table(df, "pairs", "acc", "seed", n_boot=50, n_full=5000)
    tab = rep.to_frame()
    assert list(tab.index) == list(FORMS)
    assert tab["akaike_weight"].sum() == pytest.approx(1.0)
    assert {"aic", "aicc", "bic", "a_lo", "a_hi", "tau", "n95", "n95_lo", "saving95"} <= set(tab.columns)
    assert tab.loc["exp_plateau", "n95"] == pytest.approx(rep.n_at(0.95, "exp_plateau"))
    assert "no plateau" in tab.loc["log_law", "note"]
    text = rep.summary()
    assert "exp_plateau" in text and "AICc" in text
    rep2 = pickle.loads(pickle.dumps(rep))
    assert rep2.n_at(0.95) == pytest.approx(rep.n_at(0.95))
    with pytest.raises(ScalingError, match="missing column"):
        fit_scaling_table(df, "n", "acc")


def test_means_with_standard_errors_and_seed_bootstrap() -> None:
    rng = np.random.default_rng(8)
    seeds = np.tile(np.arange(6), NS.size)
    n6 = np.repeat(NS, 6)
    y = exp_plateau(n6, 0.6, 0.5, 300.0) + rng.normal(0, 0.0075, n6.size)
    rep = fit_scaling(n6, y, groups=seeds, n_boot=100, seed=1)
    assert rep.bootstrap == "groups"
    lo, hi = rep.fits["exp_plateau"].ci["tau"]
    assert lo < 300 < hi
    means = pd.Series(y).groupby(n6).mean()
    ses = pd.Series(y).groupby(n6).sem()
    rep_m = fit_scaling(means.index, means.values, sigma=ses.values, n_boot=0)
    assert rep_m.fits["exp_plateau"].params["tau"] == pytest.approx(
        rep.fits["exp_plateau"].params["tau"], rel=0.3
    )
    # the points bootstrap keeps every n
    rep_p = fit_scaling(n6, y, n_boot=30, bootstrap="points")
    assert rep_p.bootstrap == "points" and "tau" in rep_p.fits["exp_plateau"].ci


def test_bootstrap_is_seeded() -> None:
    y = _data("exp_plateau", 0.0075, np.random.default_rng(9))
    r1 = fit_scaling(N, y, n_boot=30, seed=4, forms=["exp_plateau"])
    r2 = fit_scaling(N, y, n_boot=30, seed=4, forms=["exp_plateau"])
    assert r1.fits["exp_plateau"].ci == r2.fits["exp_plateau"].ci


# --------------------------------------------------------------------------
# errors and failures
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "y", "match"),
    [
        ([10, 20, 40], [0.5, 0.55, 0.58], "at least 4 distinct n"),
        ([10, 10, 20, 20, 40, 40], [0.5, 0.51, 0.55, 0.56, 0.58, 0.57], "at least 4 distinct n"),
        ([10, 20, 40, 80], [0.5, 0.5, 0.5, 0.5], "constant"),
        ([10, 20, 40, 80, 160], [0.5, np.nan, 0.55, 0.57, 0.58], "non-finite"),
        ([10, 20, np.inf, 80, 160], [0.5, 0.52, 0.55, 0.57, 0.58], "non-finite"),
        ([0, 20, 40, 80, 160], [0.5, 0.52, 0.55, 0.57, 0.58], "positive"),
        ([10, 20, 40, 80, 160], [0.5, 0.52, 0.55, 0.57], "same length"),
    ],
)
def test_invalid_input_gives_clear_errors(n: list, y: list, match: str) -> None:
    with pytest.raises(ScalingError, match=match):
        fit_scaling(n, y, n_boot=0)
    assert issubclass(ScalingError, ValueError)


def test_other_argument_errors() -> None:
    y = _data("exp_plateau", 0.0075, np.random.default_rng(10))
    with pytest.raises(ScalingError, match="unknown form"):
        fit_scaling(N, y, forms=["sigmoid"], n_boot=0)
    with pytest.raises(ScalingError, match="sigma"):
        fit_scaling(N, y, sigma=np.zeros(N.size), n_boot=0)
    with pytest.raises(ScalingError, match="groups"):
        fit_scaling(N, y, n_boot=5, bootstrap="groups")
    rep = fit_scaling(N, y, n_boot=0)
    with pytest.raises(ScalingError, match="n_boot > 0"):
        rep.n_at_interval(0.95)


def _broken(n, a, b, tau):  # noqa: ANN001, ANN202 - returns NaN: the optimiser must fail
    return np.full(np.shape(n), np.nan)


def test_failed_fit_is_explicit_and_all_failed_raises() -> None:
    broken = replace(
        FORMS["exp_plateau"],
        name="broken",
        func=_broken,
        internal=lambda x, th: np.full(x.shape, np.nan),
    )
    y = _data("power_law", 0.005, np.random.default_rng(12))
    rep = fit_scaling(N, y, forms=["power_law", "log_law", broken], n_boot=10)
    fb = rep.fits["broken"]
    assert not fb.success and fb.message.startswith("fit failed")
    assert fb.akaike_weight == 0.0 and fb.params == {} and math.isinf(fb.aic)
    assert rep.failed == ["broken"]
    assert rep.best == "power_law"
    assert sum(rep.weights.values()) == pytest.approx(1.0)
    with pytest.raises(ScalingError, match="broken fit failed"):
        rep.n_at(0.95, "broken")
    assert "FAILED" in rep.summary()
    assert "failed" in rep.to_frame().loc["broken", "note"]
    with pytest.raises(ScalingError, match="every form failed"):
        fit_scaling(N, y, forms=[broken], n_boot=0)


# --------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------


def test_plot_scaling() -> None:
    import matplotlib.pyplot as plt

    from effalign.plots import plot_scaling

    y = _data("exp_plateau", 0.0075, np.random.default_rng(13))
    rep = fit_scaling(N, y, groups=SEEDS, n_full=5000, n_boot=40)
    ax = plot_scaling(rep, metric="preference accuracy")
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "training pairs (n)"
    assert ax.get_ylabel() == "preference accuracy"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lbl.startswith("exp_plateau (w=") for lbl in labels)
    assert any(lbl.startswith("n95") for lbl in labels)
    assert len(ax.collections) >= 3  # bootstrap bands
    plt.close(ax.figure)
    # without bootstrap and with a log-law favourite it still draws
    rep0 = fit_scaling(N, _data("log_law", 0.002, np.random.default_rng(14)), n_boot=0)
    ax0 = plot_scaling(rep0, metric="win rate", title="t")
    assert ax0.get_title() == "t"
    plt.close(ax0.figure)
