"""effalign.plots: every figure has a title and labelled axes (synthetic frames, also empty ones)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from effalign import findings, plots  # noqa: E402


def axes_of(obj):
    fig = obj if isinstance(obj, matplotlib.figure.Figure) else obj.figure
    return fig, [ax for ax in fig.axes if ax.get_visible()]


def assert_labelled(obj, expect_title=True):
    fig, axes = axes_of(obj)
    assert axes
    for ax in axes:
        assert ax.get_xlabel().strip(), f"x label missing on {ax.get_title()!r}"
        assert ax.get_ylabel().strip(), f"y label missing on {ax.get_title()!r}"
        if expect_title:
            assert ax.get_title().strip(), "title missing"
    plt.close(fig)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


@pytest.fixture()
def isa_view(rng):
    n = 60
    frame = pd.DataFrame({
        "pc1": rng.normal(size=n), "pc2": rng.normal(size=n),
        "component": [f"component {k}" for k in rng.integers(0, 2, n)],
        "surprisal": rng.normal(10, 2, n), "entropy": rng.uniform(0, 0.7, n), "score": rng.normal(size=n),
        "isa": np.arange(n) < 6, "random": np.arange(n) >= n - 6,
    })
    return frame


@pytest.fixture()
def summary():
    rows = []
    for label in ("random", "isa", "kcenter"):
        for frac in (0.05, 0.1):
            rows.append({"label": label, "budget": int(frac * 1000), "fraction": frac, "n": 3, "mean": 0.6,
                         "lo": 0.55, "hi": 0.65, "seconds": 100 * frac, "n_train": frac * 1000})
    return pd.DataFrame(rows)


@pytest.fixture()
def paired():
    return pd.DataFrame({"label": ["isa", "kcenter"], "budget": [50, 50], "fraction": [0.05, 0.05],
                         "mean_diff": [0.01, -0.02], "lo": [-0.01, np.nan], "hi": [0.03, np.nan]})


def test_plot_lengths(rng):
    frame = pd.DataFrame({"track": ["hh"] * 30, "part": ["prompt", "chosen", "rejected"] * 10,
                          "chars": rng.integers(5, 500, 30), "words": rng.integers(1, 80, 30)})
    assert_labelled(plots.plot_lengths(frame))
    assert "characters" in plots.plot_lengths(frame).get_xlabel()
    assert_labelled(plots.plot_lengths(frame.iloc[:0]))


def test_plot_embedding_and_scores(isa_view):
    assert_labelled(plots.plot_embedding_2d(isa_view, title="t"))
    assert_labelled(plots.plot_embedding_2d(isa_view.drop(columns="random")))
    fig = plots.plot_isa_scores(isa_view)
    assert fig._suptitle is not None and fig._suptitle.get_text()
    assert "nats" in fig.axes[0].get_xlabel()
    assert_labelled(fig)


def test_plot_sampler_comparison_and_differences(summary, paired):
    ax = plots.plot_sampler_comparison(summary, "gen_reward", baseline=0.5)
    assert "gold reward" in ax.get_ylabel() and "%" in ax.get_xlabel()
    assert_labelled(ax)
    assert_labelled(plots.plot_sampler_comparison(summary.iloc[:0], "pref_accuracy"))
    ax = plots.plot_paired_differences(paired, "pref_accuracy")
    assert "preference accuracy" in ax.get_xlabel()
    assert_labelled(ax)
    assert_labelled(plots.plot_paired_differences(paired.iloc[:0], "pref_accuracy"))


def test_plot_ablation(summary):
    s = summary[summary["fraction"] == 0.05]
    assert_labelled(plots.plot_ablation(s, "pref_accuracy"))
    assert_labelled(plots.plot_ablation(s.iloc[:0], "pref_accuracy"))


def test_plot_loss_curves_and_cost():
    curves = pd.DataFrame({"label": ["full"] * 3 + ["isa"] * 2, "step": [1, 2, 3, 1, 2], "loss": [0.69, 0.6, 0.5, 0.69, 0.65],
                           "seconds": [1, 2, 3, 1, 2]})
    assert_labelled(plots.plot_loss_curves(curves))
    assert "seconds" in plots.plot_loss_curves(curves, x="seconds").get_xlabel()
    assert_labelled(plots.plot_loss_curves(curves.iloc[:0]))
    cost = pd.DataFrame({"label": ["full", "isa"], "device_hours": [0.5, 0.05], "peak_gib": [3.0, 2.9],
                         "tokens_per_s": [900, 880]})
    fig = plots.plot_cost(cost)
    assert [ax.get_ylabel() for ax in fig.axes] == ["device-hours (h)", "peak memory (GiB)",
                                                    "training throughput (tokens/s)"]
    assert_labelled(fig)
    assert_labelled(plots.plot_cost(cost.iloc[:0]))


def test_plot_compute_tradeoff(summary):
    ax = plots.plot_compute_tradeoff(summary, "pref_accuracy")
    assert "seconds" in ax.get_xlabel()
    assert_labelled(ax)


def scaling_runs(fn, seeds=3):
    rng = np.random.default_rng(1)
    rows = [{"n_train": n, "seed": s, "pool_size": 1000, "fraction": n / 1000, "pref_accuracy": fn(n) + rng.normal(0, 0.01),
             "pref_margin": 0.1 * np.log(n)}
            for s in range(seeds) for n in (20, 50, 100, 200, 500, 1000)]
    return pd.DataFrame(rows)


def test_plot_scaling_outcome_with_and_without_fit():
    frame = scaling_runs(lambda n: 0.8 - 0.3 * np.exp(-n / 150))
    ok = findings.scaling_outcome(frame, "pref_accuracy", n_boot=20)
    ax = plots.plot_scaling_outcome(ok, frame, title="fit")
    assert ax.get_title() == "fit" and "training pairs" in ax.get_xlabel()
    assert "," in "".join(t.get_text() for t in ax.get_xticklabels()) or ax.get_xticklabels()
    assert_labelled(ax)
    flat = scaling_runs(lambda n: 0.5, seeds=1).assign(pref_accuracy=0.5)
    none = findings.scaling_outcome(flat, "pref_accuracy", n_boot=5)
    ax = plots.plot_scaling_outcome(none, flat)
    assert "no fit" in ax.get_title()
    assert_labelled(ax)
    fig = plots.plot_metrics_vs_n(frame, ["pref_accuracy", "pref_margin"])
    assert len(fig.axes) == 2
    assert_labelled(fig)


def test_plot_claims_with_and_without_rows():
    headline = pd.DataFrame({"track": ["hh", "hh", "testbed"], "metric": ["pref_accuracy"] * 2 + ["gen_reward"],
                             "claim": ["plateau", "sampler", "plateau"], "rule": ["P", "S", "P"],
                             "estimate": [0.01, -0.02, 0.1], "lo": [-0.01, -0.05, np.nan], "hi": [0.03, 0.01, np.nan],
                             "margin": [0.02, np.nan, 0.03], "verdict": ["not resolved"] * 3})
    fig = plots.plot_claims(headline)
    assert len(fig.axes) == 2 and "preference accuracy" in fig.axes[0].get_xlabel()
    assert_labelled(fig)
    assert_labelled(plots.plot_claims(headline.iloc[:0]))


def test_metric_labels_have_units():
    for metric, label in plots.METRIC_LABELS.items():
        assert "(" in label and ")" in label, metric
    assert plots.metric_label("unknown") == "unknown"
