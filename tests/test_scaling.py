"""effalign.scaling: parameter recovery, bounds and identification, model choice, gain, errors, plot."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from effalign.scaling import (  # noqa: E402
    FORMS,
    ScalingError,
    exp_plateau,
    fit_scaling,
    fit_scaling_table,
    linear,
    log_law,
    power_law,
)

# Realistic design: preference accuracy rising from ~0.5 to ~0.6, 8 sizes on a geometric grid from 20
# to 2000 pairs, 3 seeds per size. The exponential plateau saturates within the range (tau = 300), the
# power law approaches its plateau slowly, the log law and the line have none.
NS = np.unique(np.round(np.geomspace(20, 2000, 8)))
N = np.repeat(NS, 3)
SEEDS = np.tile(np.arange(3), NS.size)
TRUTH = {
    "exp_plateau": (exp_plateau, {"a": 0.6, "b": 0.5, "tau": 300.0}),
    "power_law": (power_law, {"a": 0.62, "c": 0.5, "alpha": 0.5}),
    "log_law": (log_law, {"b": 0.45, "c": 0.02}),
    "linear": (linear, {"b": 0.5, "c": 5e-5}),
}


def _data(form: str, sd: float, rng: np.random.Generator, n: np.ndarray = N) -> np.ndarray:
    f, p = TRUTH[form]
    return f(n, **p) + rng.normal(0.0, sd, n.size)


def _means(form: str, sd: float, rng: np.random.Generator, seeds: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-size means and standard errors of ``seeds`` runs per size (the findings' input)."""
    y = _data(form, sd, rng, np.repeat(NS, seeds)).reshape(NS.size, seeds)
    return NS, y.mean(axis=1), np.full(NS.size, sd / math.sqrt(seeds))


# ----------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("form", ["exp_plateau", "power_law", "log_law"])
def test_recovers_parameters_within_intervals(form: str) -> None:
    y = _data(form, 0.0075, np.random.default_rng(11))
    rep = fit_scaling(N, y, groups=SEEDS, n_boot=200, seed=3, untrained=0.5)
    fit = rep.fits[form]
    assert fit.success and fit.identified, fit.message
    assert rep.bootstrap == "residuals"  # 3 seeds: no bootstrap over seeds
    for name, true in TRUTH[form][1].items():
        lo, hi = fit.ci[name]
        assert lo <= fit.params[name] <= hi
        assert lo <= true <= hi, (name, true, (lo, hi))
    if form == "exp_plateau":  # gain from the untrained value b to the plateau: n95 = tau ln 20
        assert rep.n_at(0.95, form, relative_to="plateau") == pytest.approx(fit.params["tau"] * math.log(20), rel=0.02)
        lo, hi = rep.n_at_interval(0.95, form, relative_to="plateau")
        assert lo <= 300.0 * math.log(20) <= hi


def test_interval_coverage_is_near_nominal() -> None:
    """Over 20 noisy data sets the 95% interval of tau covers the truth mostly."""
    rng = np.random.default_rng(2024)
    hits = sum(
        (lambda ci: ci[0] <= 300.0 <= ci[1])(fit_scaling(N, _data("exp_plateau", 0.0075, rng), forms=["exp_plateau"],
                                                         n_boot=100, seed=i).fits["exp_plateau"].ci["tau"])
        for i in range(20))
    assert hits >= 15


def test_exact_data_recovered_precisely() -> None:
    y = exp_plateau(N, 0.7, 0.4, 150.0) + np.random.default_rng(0).normal(0, 1e-5, N.size)
    rep = fit_scaling(N, y, n_boot=0)
    p = rep.fits["exp_plateau"].params
    assert rep.best == "exp_plateau"
    assert (p["a"], p["b"]) == (pytest.approx(0.7, abs=1e-4), pytest.approx(0.4, abs=1e-3))
    assert p["tau"] == pytest.approx(150.0, rel=1e-2)
    assert rep.plateau() == pytest.approx(0.7, abs=1e-4)


def test_decreasing_metric_and_weights() -> None:
    """A falling loss curve fits too (the forms allow either sign of the gain)."""
    y = power_law(N, 1.2, -3.0, 0.4) + np.random.default_rng(1).normal(0, 0.01, N.size)
    rep = fit_scaling(N, y, n_boot=0)
    assert rep.best == "power_law" and rep.fits["power_law"].params["c"] < 0
    assert sum(rep.weights.values()) == pytest.approx(1.0)
    assert rep.criterion == "AICc"


# ----------------------------------------------------------------------------- bounds and identification (defect 1)


TESTBED_MEANS = (np.array([6, 15, 30, 60, 150, 300]), np.array([0.281, 0.300, 0.310, 0.325, 0.358, 0.462]))


def test_plateau_stays_inside_the_metric_range_and_is_not_identified_on_a_line() -> None:
    """The testbed's gold reward rises in a straight line: unbounded, the exponential 'plateau' lies
    above the reward's maximum of 1; bounded to [0, 1] it sits on the bound, is reported as not
    identified and never favoured."""
    n, y = TESTBED_MEANS
    se = np.full(n.size, 0.015)
    free = fit_scaling(n, y, sigma=se, absolute_sigma=True, n_boot=0)
    assert free.fits["exp_plateau"].params["a"] > 1.0  # what a reward in [0, 1] cannot reach
    rep = fit_scaling(n, y, sigma=se, absolute_sigma=True, bounds=(0.0, 1.0), untrained=0.281, n_boot=0)
    for form in ("exp_plateau", "power_law"):
        fit = rep.fits[form]
        assert 0.0 <= fit.params["a"] <= 1.0
        assert not fit.identified and fit.at_bound
    assert rep.best == "linear" and "exp_plateau" not in rep.identified
    assert "NOT IDENTIFIED" in rep.summary()
    assert "not identified" in rep.to_frame().loc["exp_plateau", "note"]


def test_no_form_favoured_when_every_form_sits_on_a_bound() -> None:
    n, y = TESTBED_MEANS
    rep = fit_scaling(n, y, bounds=(0.0, 1.0), forms=["exp_plateau", "power_law"], n_boot=0)
    assert rep.best is None and rep.identified == []
    with pytest.raises(ScalingError, match="no form is identified"):
        rep.predict(100)


def test_bounds_must_contain_the_data() -> None:
    with pytest.raises(ScalingError, match="range"):
        fit_scaling(NS, np.linspace(0.5, 1.2, NS.size), bounds=(0.0, 1.0), n_boot=0)


@pytest.mark.parametrize("form", ["exp_plateau", "linear", "log_law"])
def test_model_choice_on_means_names_the_generating_form(form: str) -> None:
    """The findings' input: per-size means with their standard errors. AICc picks the generating form
    in at least 90% of 60 synthetic designs; a constant metric is called constant."""
    rng = np.random.default_rng({"exp_plateau": 1, "linear": 2, "log_law": 3}[form])
    wins = 0
    for _ in range(60):
        n, y, se = _means(form, 0.004, rng)
        wins += fit_scaling(n, y, sigma=se, absolute_sigma=True, bounds=(0, 1), n_boot=0).best == form
    assert wins >= 54, f"{form}: chosen in {wins}/60"
    flat = sum(fit_scaling(NS, 0.55 + rng.normal(0, 0.002, NS.size), sigma=np.full(NS.size, 0.002),
                           absolute_sigma=True, bounds=(0, 1), n_boot=0).best == "constant" for _ in range(40))
    assert flat >= 34


def test_model_choice_on_seed_points() -> None:
    rng = np.random.default_rng(4)
    wins = sum(fit_scaling(N, _data("power_law", 0.005, rng), n_boot=0).best == "power_law" for _ in range(40))
    assert wins >= 34


def test_absolute_sigma_gives_lack_of_fit_and_parametric_bootstrap() -> None:
    n, y, se = _means("linear", 0.004, np.random.default_rng(5))
    rep = fit_scaling(n, y, sigma=se, absolute_sigma=True, n_boot=50)
    assert rep.bootstrap == "parametric"
    assert 0.0 < rep.fits["linear"].fit_p <= 1.0
    lo, hi = rep.fits["linear"].ci["c"]
    assert lo < 5e-5 < hi
    assert rep.fits["linear"].k == 2  # no variance parameter with known standard errors


# ----------------------------------------------------------------------------- gain over the untrained policy (defect 3)


def test_n_at_measures_the_gain_over_the_untrained_policy() -> None:
    y = _data("power_law", 0.002, np.random.default_rng(5))
    rep = fit_scaling(N, y, n_full=10_000, n_boot=0, untrained=0.3)
    for form in ("exp_plateau", "power_law", "log_law", "linear"):
        end = float(rep.predict(10_000, form))
        n95 = rep.n_at(0.95, form)
        assert (rep.predict(n95, form) - 0.3) / (end - 0.3) == pytest.approx(0.95, abs=1e-6)
        assert rep.saving(0.95, form) == pytest.approx(1 - n95 / 10_000)
    a = rep.plateau("power_law")
    n90 = rep.n_at(0.9, "power_law", relative_to="plateau")
    assert (rep.predict(n90, "power_law") - 0.3) / (a - 0.3) == pytest.approx(0.9, abs=1e-6)
    with pytest.raises(ScalingError, match="untrained"):
        fit_scaling(N, y, n_boot=0).n_at(0.95, "power_law")


def test_forms_without_plateau() -> None:
    rep = fit_scaling(N, _data("log_law", 0.002, np.random.default_rng(6)), n_boot=0, untrained=0.4)
    assert rep.best == "log_law"
    with pytest.raises(ScalingError, match="no plateau"):
        rep.plateau()
    with pytest.raises(ScalingError, match="no plateau"):
        rep.n_at(0.95, relative_to="plateau")
    with pytest.raises(ScalingError, match="between 0 and 1"):
        rep.n_at(1.0, "exp_plateau")
    assert math.isnan(rep.n_at(0.95, "constant"))


def test_table_summary_and_dataframe_helper() -> None:
    y = _data("exp_plateau", 0.0075, np.random.default_rng(7))
    df = pd.DataFrame({"pairs": N, "acc": y, "seed": SEEDS})
    rep = fit_scaling_table(df, "pairs", "acc", "seed", n_boot=50, n_full=5000, untrained=0.5)
    tab = rep.to_frame()
    assert list(tab.index) == list(FORMS)
    assert tab["akaike_weight"].sum() == pytest.approx(1.0)
    assert {"favoured", "identified", "aicc", "a_lo", "a_hi", "tau", "n95", "plateau"} <= set(tab.columns)
    assert tab.loc["exp_plateau", "n95"] == pytest.approx(rep.n_at(0.95, "exp_plateau"))
    assert math.isnan(tab.loc["log_law", "plateau"])
    assert "exp_plateau" in rep.summary() and "AICc" in rep.summary()
    assert pickle.loads(pickle.dumps(rep)).n_at(0.95) == pytest.approx(rep.n_at(0.95))
    with pytest.raises(ScalingError, match="missing column"):
        fit_scaling_table(df, "n", "acc")


def test_seed_bootstrap_needs_ten_seeds() -> None:
    rng = np.random.default_rng(8)
    seeds = np.tile(np.arange(10), NS.size)
    n10 = np.repeat(NS, 10)
    y = exp_plateau(n10, 0.6, 0.5, 300.0) + rng.normal(0, 0.0075, n10.size)
    rep = fit_scaling(n10, y, groups=seeds, n_boot=60, seed=1)
    assert rep.bootstrap == "groups"
    lo, hi = rep.fits["exp_plateau"].ci["tau"]
    assert lo < 300 < hi
    with pytest.raises(ScalingError, match="at least 10"):
        fit_scaling(N, _data("exp_plateau", 0.0075, rng), groups=SEEDS, n_boot=5, bootstrap="groups")
    assert fit_scaling(n10, y, n_boot=20, bootstrap="points").bootstrap == "points"


def test_bootstrap_is_seeded() -> None:
    y = _data("exp_plateau", 0.0075, np.random.default_rng(9))
    r1 = fit_scaling(N, y, n_boot=30, seed=4, forms=["exp_plateau"])
    r2 = fit_scaling(N, y, n_boot=30, seed=4, forms=["exp_plateau"])
    assert r1.fits["exp_plateau"].ci == r2.fits["exp_plateau"].ci


# ----------------------------------------------------------------------------- errors and failures


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
    with pytest.raises(ScalingError, match="parametric"):
        fit_scaling(N, y, n_boot=5, bootstrap="parametric")
    with pytest.raises(ScalingError, match="n_boot > 0"):
        fit_scaling(N, y, n_boot=0).n_at_interval(0.95)


def test_failed_fit_is_explicit_and_all_failed_raises() -> None:
    broken = replace(FORMS["exp_plateau"], name="broken", curve=lambda x, th: np.full(x.shape, np.nan))
    y = _data("power_law", 0.005, np.random.default_rng(12))
    rep = fit_scaling(N, y, forms=["power_law", "log_law", broken], n_boot=10)
    fb = rep.fits["broken"]
    assert not fb.success and fb.message.startswith("fit failed")
    assert fb.akaike_weight == 0.0 and fb.params == {} and math.isinf(fb.aic)
    assert rep.failed == ["broken"] and rep.best == "power_law"
    assert sum(rep.weights.values()) == pytest.approx(1.0)
    with pytest.raises(ScalingError, match="broken fit failed"):
        rep.predict(10, "broken")
    assert "FAILED" in rep.summary()
    assert "failed" in rep.to_frame().loc["broken", "note"]
    with pytest.raises(ScalingError, match="every form failed"):
        fit_scaling(N, y, forms=[broken], n_boot=0)


# ----------------------------------------------------------------------------- plot


def test_plot_scaling() -> None:
    import matplotlib.pyplot as plt

    from effalign.plots import plot_scaling

    n, y, se = _means("exp_plateau", 0.004, np.random.default_rng(13))
    rep = fit_scaling(n, y, sigma=se, absolute_sigma=True, bounds=(0, 1), n_full=5000, n_boot=40, untrained=0.5)
    ax = plot_scaling(rep, metric="preference accuracy")
    assert ax.get_xscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("training pairs (n)", "preference accuracy")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lbl.startswith("exp_plateau (w=") for lbl in labels)
    assert any(lbl.startswith("n95") for lbl in labels)
    assert len(ax.collections) >= 2  # bootstrap bands
    plt.close(ax.figure)
    line = fit_scaling(*TESTBED_MEANS, bounds=(0, 1), n_boot=0)
    ax0 = plot_scaling(line, metric="gold reward", title="t")
    assert ax0.get_title() == "t"
    assert any("not identified" in t.get_text() for t in ax0.get_legend().get_texts())
    plt.close(ax0.figure)
