"""Plotting helpers for the notebooks (matplotlib / seaborn).

Every function returns its Axes (or Figure, for multi-panel plots) with a title and axes labelled
with units; with empty input it still draws the frame with a "no ... yet" note, so a notebook
never fails on a missing result. Inputs are the tidy frames of :mod:`effalign.tables` and the
outcomes of :mod:`effalign.findings`.

- :func:`plot_scaling` / :func:`plot_scaling_outcome`: the descriptive scaling fits on the per-size
  means (or, without one, the measured points, :func:`plot_metric_vs_n`); :func:`plot_metrics_vs_n`:
  small multiples; :func:`plot_claims`: each claim's contrast against its margin; :func:`plot_scorecard`:
  every claim on every track with its verdict, estimate, interval, margin and MDE (one figure);
- :func:`plot_lengths`, :func:`plot_embedding_2d`, :func:`plot_isa_scores`: the data and ISA;
- :func:`plot_sampler_comparison`, :func:`plot_paired_differences`, :func:`plot_ablation`:
  samplers at fixed budgets;
- :func:`plot_loss_curves`, :func:`plot_cost`, :func:`plot_compute_tradeoff`: training and cost.

:data:`METRIC_LABELS` maps metric names to axis labels with units (:func:`metric_name`,
:func:`metric_unit` split them); :func:`sampler_style` gives each sampler one colour and marker in
every figure, ISA heavier.
"""

from __future__ import annotations

from typing import Any, Sequence


# ---------------------------------------------------------------------------
# scaling curves (issue 5)
# ---------------------------------------------------------------------------


def plot_scaling(
    report: Any,
    ax: Any = None,
    *,
    metric: str = "metric",
    forms: Sequence[str] | None = None,
    n_grid: int = 200,
    extend_to_full: bool = True,
    show_n_at: float | None = 0.95,
    title: str | None = None,
    palette: str | Sequence[Any] = "colorblind",
) -> Any:
    """Draw a `effalign.scaling.ScalingReport`: the fitted points with their standard errors, and each
    fitted form with its bootstrap band and Akaike weight: the favoured identified form solid, other
    identified forms dashed, forms with a parameter on a bound dotted and marked "not identified".
    ``show_n_at`` marks ``n_at(fraction)`` of the favoured form (gain over the untrained policy).
    The x axis is logarithmic. Returns the Axes."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    n, y = np.asarray(report.n, float), np.asarray(report.y, float)
    colors = sns.color_palette(palette, n_colors=max(len(report.fits), 1) + 1)
    color_of = {k: colors[i + 1] for i, k in enumerate(report.fits)}
    grid = np.geomspace(float(n.min()), max(float(n.max()), float(report.n_full)) if extend_to_full else float(n.max()),
                        n_grid)
    for k in [k for k in (forms or report.fits) if report.fits[k].success]:
        fit, best = report.fits[k], k == report.best
        band = report.curve_band(grid, k) if fit.identified else None
        if band is not None:
            ax.fill_between(grid, band[0], band[1], color=color_of[k], alpha=0.15, lw=0)
        ax.plot(grid, report.predict(grid, k), color=color_of[k], lw=2.2 if best else 1.3,
                ls="-" if best else ("--" if fit.identified else ":"),
                label=f"{k} (w={fit.akaike_weight:.2f})" + (" *" if best else "" if fit.identified else ", not identified"))
    ux = np.unique(n)
    means = np.array([y[n == v].mean() for v in ux])
    if report.sigma is not None:
        ses = np.array([float(np.mean(report.sigma[n == v])) for v in ux])
    else:
        ses = np.array([y[n == v].std(ddof=1) / np.sqrt((n == v).sum()) if (n == v).sum() > 1 else 0.0 for v in ux])
    ax.errorbar(ux, means, yerr=ses, fmt="o", color=colors[0], ms=5, capsize=3, zorder=3, label="mean ± s.e.")
    if show_n_at is not None and report.best is not None:
        try:
            n_star = report.n_at(show_n_at)
        except ValueError:  # ScalingError: no untrained value or no crossing
            n_star = None
        if n_star is not None and np.isfinite(n_star) and n_star <= grid[-1]:
            ax.axvline(n_star, color=color_of[report.best], lw=1, ls=":",
                       label=f"n{round(show_n_at * 100)} = {n_star:,.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("training pairs (n)")
    ax.set_ylabel(metric)
    ax.set_title(title if title is not None else f"{metric} vs training pairs (favoured: {report.best or 'none identified'})")
    ax.legend(fontsize="small", frameon=False)
    return ax


# ---------------------------------------------------------------------------
# notebook figures (issue 7): every figure has a title and labelled axes with units
# ---------------------------------------------------------------------------

#: Axis labels with units for the stored metrics.
METRIC_LABELS: dict[str, str] = {
    "gen_reward": "gold reward (share of constraints met)",
    "gen_win_rate": "win rate against the reference (share of prompts)",
    "gen_kl": "KL(policy ‖ reference) (nats per response)",
    "pref_accuracy": "preference accuracy (share of held-out pairs)",
    "pref_margin": "implicit reward margin (β × nats)",
    "train_loss": "DPO training loss (nats)",
    "pref_loss": "held-out DPO loss (nats)",
}


def metric_label(metric: str) -> str:
    """Axis label with unit for a metric name (the name itself when unknown)."""
    return METRIC_LABELS.get(metric, metric)


def metric_name(metric: str) -> str:
    """The metric's name for a reader without its unit ("gold reward"); the name itself when unknown."""
    label = metric_label(metric)
    return label.rsplit(" (", 1)[0] if label.endswith(")") and " (" in label else label


def metric_unit(metric: str) -> str:
    """The unit of a metric's label ("share of constraints met"); empty when unknown."""
    label = metric_label(metric)
    return label.rsplit(" (", 1)[1][:-1] if label.endswith(")") and " (" in label else ""


#: One colour and marker per sampler in every figure (Okabe–Ito colours, distinguishable with the
#: common colour-vision deficiencies): ISA black and drawn heavier, random grey; earlier names of a
#: renamed sampler share its style.
SAMPLER_STYLES: dict[str, tuple[str, str]] = {
    "isa": ("#000000", "o"),
    "random": ("#8C8C8C", "s"),
    "kcenter": ("#56B4E9", "^"),
    "cluster": ("#009E73", "v"),
    "longest": ("#E69F00", "D"),
    "ref_margin_low": ("#0072B2", "<"),
    "ref_margin_high": ("#D55E00", ">"),
    "difficulty": ("#CC79A7", "P"),
    "full": ("#5D3A9B", "*"),
}
_STYLE_ALIASES = {"margin_low": "ref_margin_low", "margin_high": "ref_margin_high"}
_SPARE = (("#F0E442", "X"), ("#882255", "h"), ("#44AA99", "p"), ("#999933", "8"))


def sampler_style(label: str) -> dict[str, Any]:
    """Colour, marker, line width, marker size and drawing order of a sampler label in every figure
    (``isa (score=entropy)`` takes ISA's colour with its own marker; ISA itself is drawn heaviest)."""
    base = str(label).split(" (", 1)[0]
    base = _STYLE_ALIASES.get(base, base)
    if base in SAMPLER_STYLES:
        color, marker = SAMPLER_STYLES[base]
    else:
        color, marker = _SPARE[sum(map(ord, base)) % len(_SPARE)]
    variant = label != base and " (" in str(label)
    if variant:
        markers = "sD^v<>PXh"
        marker = markers[sum(map(ord, str(label))) % len(markers)]
    main = base == "isa" and not variant
    return {"color": color, "marker": marker, "lw": 2.6 if main else 1.3, "ms": 8 if main else 5.5,
            "zorder": 5 if main else 3}


def _emphasise_isa(labels: Any) -> None:
    """Bold tick or legend labels of the default ISA."""
    for text in labels:
        if text.get_text().split(" @ ")[0].split(" (primary")[0] == "isa":
            text.set_fontweight("bold")


def _axes(ax: Any, figsize: tuple[float, float] = (6.4, 4.2)) -> Any:
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _empty(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=ax.transAxes, color="0.4")


def _legend_outside(ax: Any, title: str | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, fontsize="small", frameon=False, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_lengths(frame: Any, ax: Any = None, *, unit: str = "chars", title: str | None = None) -> Any:
    """Box plots of prompt / chosen / rejected lengths per track (tidy frame of
    `effalign.notebook.length_frame`), log-scaled. Returns the Axes."""
    import seaborn as sns

    ax = _axes(ax, (6.4, 3.6))
    unit_name = {"chars": "characters", "words": "words"}.get(unit, unit)
    if frame is None or len(frame) == 0:
        _empty(ax, "pairs")
    else:
        data = frame.assign(**{unit: frame[unit].clip(lower=1)})
        sns.boxplot(data=data, x=unit, y="part", hue="track", ax=ax, log_scale=True, fliersize=1.5, linewidth=0.8)
        _legend_outside(ax, "data set")
    ax.set_xlabel(f"length ({unit_name}, log scale)")
    ax.set_ylabel("part of the pair")
    ax.set_title(title or "Lengths of prompts and responses")
    return ax


def plot_embedding_2d(frame: Any, ax: Any = None, *, title: str | None = None) -> Any:
    """The pool in the first two principal components of the ISA features, coloured by mixture
    component; ISA's picks circled, random picks (if the frame has a ``random`` column) crossed."""
    import seaborn as sns

    ax = _axes(ax, (6.4, 4.6))
    if frame is None or len(frame) == 0:
        _empty(ax, "pairs")
    else:
        sns.scatterplot(data=frame, x="pc1", y="pc2", hue="component", hue_order=sorted(set(frame["component"])),
                        ax=ax, s=14, alpha=0.45, linewidth=0)
        sel = frame[frame["isa"]]
        ax.scatter(sel["pc1"], sel["pc2"], s=46, facecolors="none", edgecolors="black", linewidths=1.0,
                   label="selected by ISA")
        if "random" in frame:
            rnd = frame[frame["random"]]
            ax.scatter(rnd["pc1"], rnd["pc2"], s=30, marker="x", color="0.35", linewidths=0.9, label="selected at random")
        _legend_outside(ax)
    ax.set_xlabel("principal component 1 of the ISA features (standardised units)")
    ax.set_ylabel("principal component 2 (standardised units)")
    ax.set_title(title or "Pairs in feature space, by mixture component")
    return ax


def plot_isa_scores(frame: Any, *, title: str | None = None) -> Any:
    """Two panels: surprisal and assignment entropy of every pool pair by component, with the
    values of ISA's picks marked underneath. Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    specs = (("surprisal", "surprisal −log p(x) (nats)"), ("entropy", "assignment entropy H(x) (nats)"))
    for ax, (col, xlabel) in zip(axes, specs):
        if frame is None or len(frame) == 0:
            _empty(ax, "pairs")
        else:
            sns.histplot(data=frame, x=col, hue="component", hue_order=sorted(set(frame["component"])), ax=ax,
                         bins=30, element="step", stat="count", common_bins=True, legend=ax is axes[-1])
            sns.rugplot(x=frame.loc[frame["isa"], col], ax=ax, height=0.06, color="black", lw=1.2, expand_margins=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("pairs (count)")
        if col == "entropy" and frame is not None and len(frame):
            ax.set_yscale("symlog", linthresh=1)  # most pairs sit near zero entropy
            ax.set_ylabel("pairs (count, log scale)")
        ax.set_title(f"{col.capitalize()} under the mixture")
    fig.suptitle(title or "ISA scores of the pool (ticks at the bottom: ISA's picks)")
    return fig


def plot_sampler_comparison(summary: Any, metric: str, ax: Any = None, *, baseline: float | None = None,
                            title: str | None = None) -> Any:
    """Mean metric (interval over seeds) of each sampler at each budget (`effalign.tables.summarize`):
    the budgets side by side on the x axis (share of the pool and pairs), the samplers dodged within
    each, one colour and marker per sampler (:func:`sampler_style`, ISA heavier); ``baseline``
    draws the untrained policy's value."""
    import numpy as np

    from .tables import budget_label

    ax = _axes(ax, (7.6, 4.4))
    if summary is None or len(summary) == 0:
        _empty(ax, "runs")
    else:
        fractions = sorted(set(summary["fraction"].round(6)))
        labels = sorted(set(summary["label"]), key=lambda lab: (lab != "isa", lab != "random", lab))
        width = min(0.8, 0.1 * len(labels))
        offsets = np.linspace(-width / 2, width / 2, len(labels)) if len(labels) > 1 else [0.0]
        for lab, off in zip(labels, offsets):
            g = summary[summary["label"] == lab]
            xs = [fractions.index(round(f, 6)) + off for f in g["fraction"]]
            mean = g["mean"].to_numpy(dtype=float)
            lo = np.where(np.isfinite(g["lo"]), g["lo"], mean)
            hi = np.where(np.isfinite(g["hi"]), g["hi"], mean)
            st = sampler_style(lab)
            ax.errorbar(xs, mean, yerr=[mean - lo, hi - mean], fmt=st["marker"], color=st["color"], ms=st["ms"],
                        capsize=3, elinewidth=st["lw"], capthick=st["lw"], zorder=st["zorder"], label=lab)
        pairs = summary.groupby(summary["fraction"].round(6))["n_train"].mean() if "n_train" in summary else {}
        ax.set_xticks(range(len(fractions)))
        ax.set_xticklabels([budget_label(f, pairs.get(f) if len(pairs) else None, sep="\n", unit=" pairs")
                            for f in fractions])
        for k in range(1, len(fractions)):
            ax.axvline(k - 0.5, color="0.85", lw=1)
        ax.set_xlim(-0.5, len(fractions) - 0.5)
        ax.grid(axis="x", visible=False)
    if baseline is not None and baseline == baseline:
        ax.axhline(baseline, color="0.5", ls=":", lw=1, label="untrained policy")
    _legend_outside(ax, "sampler")
    if ax.get_legend() is not None:
        _emphasise_isa(ax.get_legend().get_texts())
    ax.set_xlabel("training budget (% of the pool; pairs)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title or f"Samplers at fixed budgets: {metric_name(metric)}")
    return ax


def _intervals_by_row(ax: Any, mean: Any, lo: Any, hi: Any, labels: Sequence[str],
                      colors: Sequence[str] | None = None) -> None:
    """One row per entry, top to bottom: a point at ``mean`` with its interval (a missing bound
    collapses to the point), labelled on the y axis. A colour ``"sampler:<label>"`` takes that
    sampler's style (:func:`sampler_style`)."""
    import numpy as np

    mean = np.asarray(mean, dtype=float)
    lo = np.where(np.isfinite(lo), lo, mean)
    hi = np.where(np.isfinite(hi), hi, mean)
    ys = np.arange(len(mean))[::-1]
    for y, m, l, h, c in zip(ys, mean, lo, hi, colors or ["C0"] * len(mean)):
        st = sampler_style(c[len("sampler:"):]) if str(c).startswith("sampler:") else \
            {"color": c, "marker": "o", "ms": 5, "lw": 1.5, "zorder": 3}
        ax.errorbar([m], [y], xerr=[[m - l], [h - m]], fmt=st["marker"], color=st["color"], capsize=3, ms=st["ms"],
                    elinewidth=st["lw"], capthick=st["lw"], zorder=st["zorder"])
    ax.set_yticks(ys)
    ax.set_yticklabels(list(labels))


def plot_paired_differences(paired: Any, metric: str, ax: Any = None, *, baseline: str = "random",
                            title: str | None = None) -> Any:
    """Forest plot: each sampler minus ``baseline`` on the same seeds, mean with t interval, grouped by
    budget (`effalign.tables.paired_differences`); each sampler in its colour, ISA in bold."""
    ax = _axes(ax, (7.2, max(2.6, 0.34 * (0 if paired is None else len(paired)) + 1.6)))
    if paired is None or len(paired) == 0:
        _empty(ax, "paired runs")
    else:
        order = paired.assign(_isa_first=paired["label"] != "isa")
        p = order.sort_values(["fraction", "_isa_first", "label"]).reset_index(drop=True)
        names = [f"{r.label} @ {r.fraction * 100:.3g}%" + (" (primary)" if getattr(r, "family", "") == "primary" else "")
                 for r in p.itertuples()]
        _intervals_by_row(ax, p["mean_diff"], p["lo"], p["hi"], names, [f"sampler:{lab}" for lab in p["label"]])
        ys = list(range(len(p)))[::-1]
        for k in range(1, len(p)):
            if p["fraction"].iloc[k] != p["fraction"].iloc[k - 1]:
                ax.axhline((ys[k] + ys[k - 1]) / 2, color="0.75", lw=1)
        _emphasise_isa(ax.get_yticklabels())
    ax.axvline(0, color="0.4", lw=1, ls="--")
    unit = metric_unit(metric)
    ax.set_xlabel(f"difference to {baseline}, same seed\n({metric_name(metric)}{', ' + unit if unit else ''})")
    ax.set_ylabel("sampler @ budget (share of pool)")
    ax.set_title(title or f"Paired difference to {baseline} (same seed and budget)")
    return ax


def plot_ablation(summary: Any, metric: str, ax: Any = None, *, reference: str | None = "isa",
                  title: str | None = None) -> Any:
    """Horizontal point plot of ISA variants (and baselines) at one budget: mean with interval."""
    n = 0 if summary is None else len(summary)
    ax = _axes(ax, (6.4, max(2.6, 0.35 * n + 1.4)))
    if n == 0:
        _empty(ax, "ablation runs")
    else:
        s = summary.reset_index(drop=True)
        _intervals_by_row(ax, s["mean"], s["lo"], s["hi"], list(s["label"]), [f"sampler:{lab}" for lab in s["label"]])
        _emphasise_isa(ax.get_yticklabels())
        if reference in set(s["label"]):
            ax.axvline(float(s.loc[s["label"] == reference, "mean"].iloc[0]), color=sampler_style(reference)["color"],
                       lw=1, ls=":")
    ax.set_xlabel(metric_label(metric))
    ax.set_ylabel("sampler variant")
    ax.set_title(title or "ISA ablation (dotted: default ISA)")
    return ax


def plot_loss_curves(curves: Any, ax: Any = None, *, x: str = "step", title: str | None = None) -> Any:
    """Per-step DPO training loss of each run (`effalign.tables.loss_curves`)."""
    import seaborn as sns

    ax = _axes(ax)
    xlabels = {"step": "optimiser step", "epoch": "epoch (passes over the training pairs)", "seconds": "training time (seconds)"}
    if curves is None or len(curves) == 0:
        _empty(ax, "loss curves")
    else:
        sns.lineplot(data=curves, x=x, y="loss", hue="label", ax=ax, errorbar=None, lw=1.3)
        _legend_outside(ax, "run")
    ax.axhline(0.6931, color="0.5", ls=":", lw=1)
    ax.set_xlabel(xlabels.get(x, x))
    ax.set_ylabel("DPO loss (nats; dotted: ln 2 at the start)")
    ax.set_title(title or "Training loss")
    return ax


def plot_cost(cost: Any, *, title: str | None = None) -> Any:
    """Three panels per run: device-hours, peak memory (GiB) and throughput (tokens/s), from
    `effalign.tables.cost_table`. Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), constrained_layout=True)
    panels = (("device_hours", "device-hours (h)", "Compute per run"),
              ("peak_gib", "peak memory (GiB)", "Peak memory"),
              ("tokens_per_s", "training throughput (tokens/s)", "Throughput"))
    for ax, (col, ylabel, ttl) in zip(axes, panels):
        if cost is None or len(cost) == 0 or col not in cost:
            _empty(ax, "runs")
        else:
            sns.barplot(data=cost, x="label", y=col, ax=ax, errorbar=None, hue="label", legend=False)
            ax.tick_params(axis="x", rotation=20)
        ax.set_xlabel("run")
        ax.set_ylabel(ylabel)
        ax.set_title(ttl)
    fig.suptitle(title or "Cost of the runs")
    return fig


def plot_compute_tradeoff(summary: Any, metric: str, ax: Any = None, *, title: str | None = None) -> Any:
    """Mean metric against mean run time per sampler and budget: which selector is best at what compute."""
    import seaborn as sns

    ax = _axes(ax)
    if summary is None or len(summary) == 0:
        _empty(ax, "runs")
    else:
        data = summary.assign(**{"budget (% of pool)": (summary["fraction"] * 100).round(1)})
        data = data.rename(columns={"label": "sampler"})
        order = sorted(set(data["sampler"]), key=lambda lab: (lab != "isa", lab != "random", lab))
        sns.scatterplot(data=data, x="seconds", y="mean", hue="sampler", hue_order=order,
                        palette={lab: sampler_style(lab)["color"] for lab in order}, style="sampler", style_order=order,
                        markers={lab: sampler_style(lab)["marker"] for lab in order}, size="budget (% of pool)",
                        sizes=(40, 170), ax=ax)
        _legend_outside(ax)
        if ax.get_legend() is not None:
            _emphasise_isa(ax.get_legend().get_texts())
    ax.set_xlabel("run time per seed (seconds: selection, training and evaluation)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title or f"{metric_name(metric)} against compute")
    return ax


def _count_axis(ax: Any) -> None:
    """Plain numbers (4, 10, 1,000) instead of powers of ten on a logarithmic count axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_metric_vs_n(frame: Any, metric: str, ax: Any = None, *, title: str | None = None) -> Any:
    """Per-seed points and mean ± s.e. of ``metric`` against training pairs (log x), no fit."""
    import numpy as np

    ax = _axes(ax)
    if frame is None or len(frame) == 0 or metric not in frame:
        _empty(ax, "runs")
    else:
        d = frame[["n_train", metric]].dropna()
        ax.scatter(d["n_train"], d[metric], color="0.5", alpha=0.4, s=14)
        g = d.groupby("n_train")[metric]
        se = (g.std(ddof=1) / np.sqrt(g.count())).fillna(0.0)
        ax.errorbar(g.mean().index, g.mean().to_numpy(), yerr=se.to_numpy(), fmt="o-", color="C0", capsize=3, ms=5,
                    label="mean ± s.e.")
        ax.set_xscale("log")
        _count_axis(ax)
        ax.legend(fontsize="small", frameon=False)
    ax.set_xlabel("training pairs (n)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title or f"{metric} against training pairs")
    return ax


def plot_scaling_outcome(outcome: Any, frame: Any = None, ax: Any = None, *, title: str | None = None) -> Any:
    """`plot_scaling` of an `effalign.findings.ScalingOutcome` with the single runs of ``frame`` in grey
    behind; without a fit, the measured points (`plot_metric_vs_n`) with "no fit" in the title."""
    if outcome.ok:
        ax = plot_scaling(outcome.report, ax, metric=metric_label(outcome.metric), title=title)
        if frame is not None and len(frame) and outcome.metric in frame:
            d = frame[["n_train", outcome.metric]].dropna()
            ax.scatter(d["n_train"], d[outcome.metric], color="0.5", alpha=0.35, s=14, zorder=2, label="single runs")
            ax.legend(fontsize="small", frameon=False)
        _count_axis(ax)
        return ax
    ax = plot_metric_vs_n(frame, outcome.metric, ax)
    ax.set_title((title or f"{outcome.metric} against training pairs") + " (no fit, see text)")
    return ax


def plot_metrics_vs_n(frame: Any, metrics: Sequence[str], *, title: str | None = None, columns: int = 2) -> Any:
    """Small multiples of `plot_metric_vs_n`, one panel per metric, at most ``columns`` side by side so
    that each stays readable at the width of a page; the panel's title names the metric and its y
    axis the unit. Returns the Figure."""
    import math

    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if frame is not None and m in frame] or list(metrics)[:1]
    cols = max(1, min(columns, len(metrics)))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 0.6, 3.6 * rows + 0.5), constrained_layout=True,
                             squeeze=False)
    for ax, m in zip(axes.ravel(), metrics):
        name = metric_name(m)
        plot_metric_vs_n(frame, m, ax, title=name[:1].upper() + name[1:])
        ax.set_ylabel(metric_unit(m) or m)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(title or "Secondary metrics against training pairs")
    return fig


def plot_claims(headline: Any, *, title: str | None = None) -> Any:
    """One panel per track: each claim's contrast with its interval, and the margin of an equivalence
    rule shaded (`effalign.findings.headline_frame`). Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    tracks = list(dict.fromkeys(headline["track"])) if headline is not None and len(headline) else [""]
    fig, axes = plt.subplots(1, len(tracks), figsize=(5.6 * len(tracks), 2.8), constrained_layout=True, squeeze=False)
    for ax, track in zip(axes[0], tracks):
        rows = headline[headline["track"] == track].reset_index(drop=True) if track else None
        if rows is None or rows.empty:
            _empty(ax, "claims")
            ax.set_xlabel("contrast (metric units)")
        else:
            ys = np.arange(len(rows))[::-1]
            for y, m in zip(ys, rows["margin"]):
                if np.isfinite(m):
                    ax.fill_betweenx([y - 0.35, y + 0.35], -m, m, color="C2", alpha=0.18, lw=0)
            _intervals_by_row(ax, rows["estimate"], rows["lo"], rows["hi"],
                              [f"{r.claim} (rule {r.rule}): {r.verdict}" for r in rows.itertuples()])
            ax.set_xlabel(f"contrast in {metric_label(rows['metric'].iloc[0])}")
        ax.axvline(0, color="0.4", lw=1, ls="--")
        ax.set_ylabel("claim")
        ax.set_title(f"{track}: contrasts, 95% intervals, margins shaded" if track else "claims")
    fig.suptitle(title or "The paper's claims: each contrast against its rule")
    return fig


#: Colours of the three verdicts in the scorecard.
VERDICT_COLORS = {"holds": "#1B7837", "fails": "#B2182B", "not resolved": "#4D4D4D"}


def _verdict_color(verdict: str) -> str:
    word = str(verdict).split(" (", 1)[0]
    return VERDICT_COLORS.get(word, "#4D4D4D")


def plot_scorecard(headline: Any, *, level: float = 0.95, title: str | None = None) -> Any:
    """The paper's claims on one figure: one row per claim, one column per track (its metric). Each
    cell names the claim's rule and verdict (coloured: holds green, fails red, not resolved grey),
    draws the contrast's estimate with its interval, the margin of an equivalence rule (shaded) and
    the design's minimum detectable effect (dotted, ±MDE), and writes the numbers under it. Input:
    :func:`effalign.findings.headline_frame`. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    import numpy as np

    from .tables import fmt
    from .verdicts import NOT_DESIGNED

    rows = headline if headline is not None else None
    if rows is None or len(rows) == 0:
        fig, ax = plt.subplots(figsize=(8, 2.6), constrained_layout=True)
        _empty(ax, "claims: no runs are stored")
        ax.set_xlabel("contrast (metric units)")
        ax.set_ylabel("claim")
        ax.set_title("Scorecard")
        fig.suptitle(title or "The paper's claims: verdict, estimate, interval and MDE")
        return fig
    tracks = list(dict.fromkeys(rows["track"]))
    claims = list(dict.fromkeys(rows["claim"]))
    fig, axes = plt.subplots(len(claims), len(tracks), figsize=(3.9 * len(tracks) + 0.4, 2.45 * len(claims) + 1.1),
                             squeeze=False, sharex="col", constrained_layout=True)
    for j, track in enumerate(tracks):
        sub = rows[rows["track"] == track]
        spans = [abs(float(v)) for c in ("lo", "hi", "estimate", "margin", "mde") for v in sub[c] if np.isfinite(v)]
        span = 1.18 * max(spans) if spans else 1.0
        metric = str(sub["metric"].iloc[0])
        for i, claim in enumerate(claims):
            ax = axes[i, j]
            r = sub[sub["claim"] == claim]
            ax.set_xlim(-span, span)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, symmetric=True))  # labels that do not collide
            ax.set_ylim(-1, 1)
            ax.set_yticks([])
            ax.axvline(0, color="0.35", lw=1, ls="--")
            if r.empty:
                _empty(ax, "claim")
                ax.set_ylabel(claim)
                continue
            r = r.iloc[0]
            color = _verdict_color(r["verdict"])
            margin, mde = float(r["margin"]), float(r["mde"])
            if np.isfinite(margin):
                ax.axvspan(-margin, margin, color="#1B7837", alpha=0.13, lw=0, label="equivalence margin (±)")
            if np.isfinite(mde):
                for x in (-mde, mde):
                    ax.axvline(x, color="0.45", lw=1.2, ls=":", label="minimum detectable effect (±MDE)" if x < 0 else None)
            est, lo, hi = float(r["estimate"]), float(r["lo"]), float(r["hi"])
            if np.isfinite(est):
                lo_, hi_ = (lo if np.isfinite(lo) else est), (hi if np.isfinite(hi) else est)
                ax.errorbar([est], [0.45], xerr=[[est - lo_], [hi_ - est]], fmt="o", color=color, ms=8, capsize=5,
                            elinewidth=2.4, capthick=2.4, zorder=4)
                numbers = (f"{r['contrast']}\n{fmt(est, 'signed')} ({level:.0%}: {fmt(lo, 'signed')} to "
                           f"{fmt(hi, 'signed')})\nMDE {fmt(mde)}"
                           + (f" · margin ±{fmt(margin)}" if np.isfinite(margin) else "")
                           + f" · {int(r['seeds'])} seed{'s' if int(r['seeds']) != 1 else ''}")
            else:
                why = ("this track's design has no such runs" if NOT_DESIGNED in str(r["verdict"])
                       else "the runs it needs are not stored")
                numbers = f"{r['contrast']}: no estimate\n({why})"
            ax.text(0.5, -0.42, numbers, transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=9.5,
                    linespacing=1.25,
                    color="0.1", zorder=6, bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "none",
                                                 "alpha": 0.9})
            verdict = str(r["verdict"]).replace(f" ({NOT_DESIGNED})", "")  # said under the panel instead
            ax.set_title(f"{claim} (rule {r['rule']}): {verdict}", color=color, fontweight="bold", fontsize=11,
                         loc="left")
            ax.grid(axis="y", visible=False)
        axes[0, j].annotate(f"{track}: {metric_name(metric)}", xy=(0.5, 1.3), xycoords="axes fraction", ha="center",
                            va="bottom", fontsize=12.5, fontweight="bold")
        axes[-1, j].set_xlabel(f"contrast in {metric_name(metric)}\n({metric_unit(metric) or 'metric units'})")
        for i in range(len(claims) - 1):
            axes[i, j].set_xlabel(" ")
    handles = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncol=len(handles),
                   frameon=False, fontsize=10)
    fig.suptitle(title or "The paper's claims: verdict, estimate with interval, margin and MDE", fontsize=13.5)
    return fig


# ---------------------------------------------------------------------------
# the ISA pipeline on a real selection, and smoothed training curves (issue 17)
# ---------------------------------------------------------------------------


def _gaussian_ellipse(ax: Any, mean: Any, cov: Any, color: Any, n_std: float, **kw: Any) -> None:
    """The ``n_std`` contour of a 2-D Gaussian (mean, 2x2 covariance) as an ellipse."""
    import numpy as np
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=float))
    vals = np.clip(vals, 0.0, None)
    angle = float(np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1])))
    ax.add_patch(Ellipse(tuple(mean), 2 * n_std * np.sqrt(vals[-1]), 2 * n_std * np.sqrt(vals[0]), angle=angle,
                         fill=False, edgecolor=color, **kw))


def _component_cov_2d(mixture: Any, k: int) -> Any:
    """Covariance of component ``k`` of a fitted GaussianMixture in its first two feature dimensions."""
    import numpy as np

    kind, cov = mixture.covariance_type, mixture.covariances_
    if kind == "full":
        return np.asarray(cov[k])[:2, :2]
    if kind == "tied":
        return np.asarray(cov)[:2, :2]
    if kind == "diag":
        return np.diag(np.asarray(cov[k])[:2])
    return np.eye(2) * float(cov[k])  # spherical


def plot_isa_pipeline(sampler: Any, embeddings: Any, *, n_rows: int = 40, title: str | None = None) -> Any:
    """ISA step by step on one real selection: embeddings -> features -> mixture -> scores ->
    per-component budget (a second title line names the steps). Returns the Figure.

    ``sampler``: a fitted :class:`effalign.samplers.ISASampler` (after ``select``);
    ``embeddings``: the pool's ``{"prompt", "chosen", "rejected"}`` embeddings
    (:func:`effalign.embed.pair_embeddings`, the same cached vectors ISA read).

    1. a heat map of ``n_rows`` pairs (drawn with seed 0, sorted by component) as ISA's raw input,
       ``[e(prompt), e(chosen) - e(rejected)]``;
    2. the share of variance kept by each principal component after standardising;
    3. the pool in the first two feature dimensions by component, with each component's 1 and 2
       standard-deviation contours;
    4. the score of every pair by component, a dashed line at the lowest score ISA took there;
    5. per component: share of the pool, mixture weight and share of the budget, with counts.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    labels = np.asarray(sampler.labels_)
    n_comp = int(sampler.n_components)
    colors = sns.color_palette("colorblind", n_colors=max(n_comp, 2))
    fig = plt.figure(figsize=(9, 12), constrained_layout=True)
    grid = fig.add_gridspec(3, 2, height_ratios=[1.0, 1.1, 1.1])
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1]),
            fig.add_subplot(grid[2, 0]), fig.add_subplot(grid[2, 1])]

    # 1 embeddings
    ax = axes[0]
    prompt = np.asarray(embeddings["prompt"], dtype=float)
    diff = np.asarray(embeddings["chosen"], dtype=float) - np.asarray(embeddings["rejected"], dtype=float)
    raw = np.concatenate([prompt, diff], axis=1)
    n = raw.shape[0]
    rows = np.sort(np.random.default_rng(0).choice(n, size=min(n_rows, n), replace=False))
    rows = rows[np.argsort(labels[rows], kind="stable")]
    lim = float(np.quantile(np.abs(raw[rows]), 0.99)) or 1.0
    image = ax.imshow(raw[rows], aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.axvline(prompt.shape[1] - 0.5, color="black", lw=0.8)
    fig.colorbar(image, ax=ax, shrink=0.9, label="coordinate\n(unit-length vectors)")
    ax.set_xlabel(f"dimension (1–{prompt.shape[1]}: prompt, then chosen − rejected)")
    ax.set_ylabel(f"{len(rows)} of {n} pairs (by component)")
    ax.set_title("1. Embeddings (MiniLM)")

    # 2 features
    ax = axes[1]
    pca = getattr(sampler, "pca_", None)
    if pca is None:
        _empty(ax, "PCA (ISA ran without one)")
    else:
        share = np.asarray(pca.explained_variance_ratio_) * 100
        ax.bar(np.arange(1, share.size + 1), share, color="0.55", width=0.8, label="per component")
        ax.plot(np.arange(1, share.size + 1), np.cumsum(share), color="black", lw=1.2, marker=".",
                label=f"cumulative ({np.sum(share):.0f}% kept)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize="small", frameon=False, loc="lower right")
    ax.set_xlabel(f"principal component (of {raw.shape[1]} dimensions)")
    ax.set_ylabel("variance explained (%)")
    ax.set_title("2. Features: standardise, PCA")

    # 3 mixture
    ax = axes[2]
    Z = np.asarray(sampler.features_, dtype=float)
    Z2 = Z[:, :2] if Z.shape[1] >= 2 else np.pad(Z, ((0, 0), (0, 2 - Z.shape[1])))
    mixture = sampler.mixture_
    for k in range(n_comp):
        members = labels == k
        ax.scatter(Z2[members, 0], Z2[members, 1], s=9, alpha=0.45, color=colors[k], linewidths=0,
                   label=f"component {k} (weight {mixture.weights_[k]:.2f})")
        if Z.shape[1] >= 2:
            for n_std, ls in ((1, "-"), (2, "--")):
                _gaussian_ellipse(ax, np.asarray(mixture.means_[k])[:2], _component_cov_2d(mixture, k), colors[k],
                                  n_std, lw=1.4, ls=ls)
    ax.legend(fontsize="small", frameon=False, loc="best", markerscale=2)
    ax.set_xlabel("feature 1 (PC 1, standardised units)")
    ax.set_ylabel("feature 2 (PC 2, standardised units)")
    ax.set_title("3. Two-component Gaussian mixture")

    # 4 scores
    ax = axes[3]
    scores = np.asarray(sampler.scores_, dtype=float)
    chosen = np.zeros(n, dtype=bool)
    chosen[np.asarray(sampler.selected_, dtype=int)] = True
    bins = np.histogram_bin_edges(scores[np.isfinite(scores)], bins=30)
    for k in range(n_comp):
        members = labels == k
        ax.hist(scores[members], bins=bins, histtype="step", lw=1.4, color=colors[k], label=f"component {k}")
        taken = scores[members & chosen]
        if taken.size:
            ax.axvline(float(taken.min()), color=colors[k], ls="--", lw=1.1, label=f"lowest pick, component {k}")
    score_name = getattr(sampler, "score", "score")
    units = {"surprisal": "surprisal −log p(x) (nats)", "entropy": "assignment entropy (nats)",
             "mixed": "surprisal + entropy (z-scores)"}
    ax.set_xlabel(units.get(score_name, str(score_name)))
    ax.set_ylabel("pairs (count)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small", frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    ax.set_title(f"4. Scores: the highest {score_name}\nin each component is taken")

    # 5 per-component budget
    ax = axes[4]
    budget = np.asarray(sampler.component_budget_, dtype=float)
    sizes = np.bincount(labels, minlength=n_comp).astype(float)
    width = 0.26
    xs = np.arange(n_comp)
    bars = (("share of the pool", sizes / max(sizes.sum(), 1), "0.7", sizes),
            ("mixture weight", np.asarray(mixture.weights_, dtype=float), "0.4", None),
            ("share of the budget", budget / max(budget.sum(), 1), None, budget))
    for j, (name, values, color, counts) in enumerate(bars):
        drawn = ax.bar(xs + (j - 1) * width, values * 100, width,
                       color=color if color else [colors[k] for k in range(n_comp)], label=name)
        if counts is not None:
            ax.bar_label(drawn, labels=[f"{int(c):,}" for c in counts], fontsize="small", padding=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"component {k}" for k in range(n_comp)])
    ax.set_ylim(0, 110)
    ax.set_ylabel("share (%; numbers on bars: pairs)")
    ax.set_xlabel("mixture component")
    ax.legend(fontsize="small", frameon=False, loc="upper right")
    ax.set_title(f"5. Per-component budget:\n{int(budget.sum()):,} of {n:,} pairs")
    fig.suptitle((title or "ISA step by step") + "\nembeddings → features → mixture → scores → per-component budget")
    return fig


def ema(values: Any, span: int) -> Any:
    """Exponential moving average with ``alpha = 2 / (span + 1)``, started at the first value."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    out = np.empty_like(values)
    alpha = 2.0 / (span + 1.0)
    acc = np.nan
    for i, v in enumerate(values):
        acc = v if i == 0 or not np.isfinite(acc) else alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


def plot_loss_smoothed(curves: Any, ax: Any = None, *, x: str = "step", span: int = 10,
                       title: str | None = None) -> Any:
    """DPO training loss per run: every step's loss as a faint point, and its exponential moving
    average over ``span`` steps as a line (stated in the legend); ``x``: step, epoch or seconds.
    Input: the tidy frame of ``loss_curves`` (``label``, ``seed``, ``step``, ``loss``...)."""
    import numpy as np
    import seaborn as sns

    ax = _axes(ax)
    xlabels = {"step": "optimiser step", "epoch": "epoch (passes over the training pairs)",
               "seconds": "training time (seconds)"}
    if curves is None or len(curves) == 0:
        _empty(ax, "loss curves")
    else:
        runs = list(dict.fromkeys(zip(curves["label"], curves["seed"])))
        colors = sns.color_palette("colorblind", n_colors=max(len(runs), 1))
        for (label, seed), color in zip(runs, colors):
            run = curves[(curves["label"] == label) & (curves["seed"] == seed)].sort_values("step")
            name = label if curves["seed"].nunique() == 1 else f"{label}, seed {seed}"
            ax.scatter(run[x], run["loss"], s=9, color=color, alpha=0.35, linewidths=0)
            ax.plot(run[x], ema(run["loss"].to_numpy(), span), color=color, lw=2.0, label=name)
        ax.scatter([], [], s=9, color="0.5", alpha=0.6, label="points: each step")
        lo, hi = np.nanmin(curves["loss"]), np.nanmax(curves["loss"])
        pad = 0.05 * max(hi - lo, 1e-3)
        ax.set_ylim(min(lo, 0.6931) - pad, max(hi, 0.6931) + pad)
        ax.legend(title=f"run (lines: moving average, {span} steps)", fontsize="small", title_fontsize="small",
                  frameon=True, framealpha=0.85, loc="best")
    ax.axhline(0.6931, color="0.5", ls=":", lw=1)
    ax.set_xlabel(xlabels.get(x, x))
    ax.set_ylabel("DPO loss (nats; dotted: ln 2 at the start)")
    ax.set_title(title or f"Training loss (points: each step; lines: moving average over {span} steps)")
    return ax
