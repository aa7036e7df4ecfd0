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


def _headline(**over):
    frame = pd.DataFrame({"track": ["testbed"] * 3 + ["hh"] * 3, "metric": ["gen_reward"] * 3 + ["pref_accuracy"] * 3,
                          "claim": ["plateau", "small subset", "sampler"] * 2, "rule": ["P", "E", "S"] * 2,
                          "contrast": ["y(N) − y(N/2), default arm", "isa at 10% − whole pool", "isa − random at 10%"] * 2,
                          "estimate": [0.10, -0.14, 0.01, -0.006, np.nan, 0.02],
                          "lo": [-0.05, -0.19, -0.05, -0.04, np.nan, -0.1], "hi": [0.25, -0.09, 0.08, 0.03, np.nan, 0.14],
                          "p": [0.9, 0.99, 0.47, 0.1, np.nan, 0.55], "margin": [0.03, 0.03, np.nan, 0.02, 0.02, np.nan],
                          "mde": [0.19, 0.06, 0.08, 0.04, np.nan, 0.15], "seeds": [3, 3, 3, 3, 0, 3],
                          "verdict": ["not resolved", "fails (worse)", "holds (isa ahead)", "not resolved", "not resolved",
                                      "not resolved"]})
    return frame.assign(**over)


def test_scorecard_shows_every_claim_and_track_with_verdict_interval_margin_and_mde():
    fig = plots.plot_scorecard(_headline())
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6, "three claims × two tracks"
    titles = [ax.get_title(loc="left") for ax in axes]
    assert titles[0] == "plateau (rule P): not resolved" and "small subset (rule E): fails (worse)" in titles
    colours = {t: ax._left_title.get_color() for t, ax in zip(titles, axes)}
    assert colours["small subset (rule E): fails (worse)"] == plots.VERDICT_COLORS["fails"]
    assert colours["sampler (rule S): holds (isa ahead)"] == plots.VERDICT_COLORS["holds"]
    assert colours["plateau (rule P): not resolved"] == plots.VERDICT_COLORS["not resolved"]
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert any("−0.140 (95%: −0.190 to −0.090)" in t and "MDE 0.060 · margin ±0.030 · 3 seeds" in t for t in texts)
    assert any("no estimate" in t for t in texts), "a claim without runs says so"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["equivalence margin (±)", "minimum detectable effect (±MDE)"]
    headers = [t.get_text() for ax in axes for t in ax.texts if t.get_text().startswith(("testbed:", "hh:"))]
    assert headers == ["testbed: gold reward", "hh: preference accuracy"]
    assert "contrast in gold reward" in axes[4].get_xlabel() and "share of held-out pairs" in axes[5].get_xlabel()
    shaded = [p for p in axes[0].patches]
    assert shaded, "the plateau margin is shaded"
    assert axes[0].get_xlim()[1] >= 0.25, "the interval fits in its panel"
    plt.close(fig)
    empty = plots.plot_scorecard(_headline().iloc[:0])
    assert "no claims" in empty.axes[0].texts[0].get_text()
    plt.close(empty)
    verdicts = list(_headline()["verdict"])
    verdicts[4] = "not resolved (not in the design)"  # a claim the design leaves off this track
    cut = plots.plot_scorecard(_headline(verdict=verdicts))
    panel = [ax for ax in cut.axes if ax.get_visible()][3]  # hh (second column), small subset (second row)
    assert panel.get_title(loc="left") == "small subset (rule E): not resolved"
    assert any("this track's design has no such runs" in t.get_text() for t in panel.texts)
    assert any("the runs it needs are not stored" in t.get_text() for ax in cut.axes for t in ax.texts) is False
    plt.close(cut)


def test_scorecard_tick_labels_do_not_collide():
    # a wide span with three-decimal ticks (the testbed's sampler panel) once printed "−0.050−0.0250.000"
    nan = np.nan
    fig = plots.plot_scorecard(_headline(estimate=[nan, nan, -0.051, nan, nan, 0.028], lo=[nan, nan, -0.083, nan, nan, 0.013],
                                         hi=[nan, nan, -0.02, nan, nan, 0.044], mde=[nan, nan, 0.045, nan, nan, 0.022],
                                         margin=[0.015, 0.015, nan, 0.02, 0.02, nan]))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()
                  and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        for left, right in zip(boxes, boxes[1:]):
            assert left.x1 < right.x0, f"tick labels overlap: {[t.get_text() for t in labels]}"
    plt.close(fig)


def test_sampler_styles_are_distinct_and_isa_stands_out():
    names = ["isa", "random", "kcenter", "cluster", "longest", "ref_margin_low", "ref_margin_high", "difficulty"]
    styles = [plots.sampler_style(n) for n in names]
    assert len({s["color"] for s in styles}) == len(names) and len({s["marker"] for s in styles}) == len(names)
    isa = plots.sampler_style("isa")
    assert isa["color"] == "#000000" and all(isa["lw"] > s["lw"] and isa["ms"] > s["ms"] for s in styles[1:])
    assert plots.sampler_style("margin_low")["color"] == plots.sampler_style("ref_margin_low")["color"]
    variant = plots.sampler_style("isa (score=entropy)")
    assert variant["color"] == isa["color"] and variant["lw"] < isa["lw"]


def test_sampler_comparison_has_one_tick_per_budget_and_emphasises_isa(summary):
    ax = plots.plot_sampler_comparison(summary, "pref_accuracy", baseline=0.5)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["5%\n(50 pairs)", "10%\n(100 pairs)"]
    legend = {t.get_text(): t for t in ax.get_legend().get_texts()}
    assert legend["isa"].get_fontweight() == "bold" and legend["random"].get_fontweight() != "bold"
    colours = {c.get_label(): c.lines[0].get_color() for c in ax.containers}
    assert colours["isa"] == "#000000" and len(set(colours.values())) == 3
    assert_labelled(ax)


def test_other_metrics_panels_are_readable():
    frame = scaling_runs(lambda n: 0.8 - 0.3 * np.exp(-n / 150)).assign(gen_win_rate=0.55, gen_kl=0.3)
    fig = plots.plot_metrics_vs_n(frame, ["pref_accuracy", "gen_win_rate", "gen_kl"], title="testbed: other metrics")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3 and fig.get_size_inches()[0] <= 10.5, "at most two panels side by side"
    assert [ax.get_title() for ax in axes] == ["Preference accuracy", "Win rate against the reference",
                                               "KL(policy ‖ reference)"]
    assert axes[2].get_ylabel() == "nats per response"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    suptitle = fig._suptitle.get_window_extent(renderer)
    for ax in axes:
        title = ax.title.get_window_extent(renderer)
        assert not suptitle.overlaps(title), "the figure title overlaps a panel title"
        for label in (ax.xaxis.label, ax.yaxis.label):
            box = label.get_window_extent(renderer)
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, \
                f"axis label {label.get_text()!r} is cut"
    assert_labelled(fig)
