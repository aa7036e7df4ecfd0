"""Plotting helpers for the notebooks (matplotlib / seaborn)."""

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
    show_seeds: bool = True,
    title: str | None = None,
    palette: str | Sequence[Any] = "colorblind",
) -> Any:
    """Draw a `effalign.scaling.ScalingReport`: points, fitted curves and bands.

    Points are the mean +- standard error over replicates at each ``n`` (raw
    per-seed points faintly behind when ``show_seeds``); each successful form
    is drawn as its fitted curve with the pointwise bootstrap band (when the
    report has bootstrap samples), labelled with its Akaike weight; the
    favoured form is drawn solid, the others dashed. ``show_n_at`` marks
    ``n_at(fraction)`` of the favoured form when it has a plateau. The x axis
    is logarithmic. Returns the Axes.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    n, y = np.asarray(report.n, float), np.asarray(report.y, float)
    names = [k for k in (forms or report.fits) if report.fits[k].success]
    colors = sns.color_palette(palette, n_colors=max(len(report.fits), 1) + 1)
    color_of = {k: colors[i + 1] for i, k in enumerate(report.fits)}

    hi_n = max(float(n.max()), float(report.n_full)) if extend_to_full else float(n.max())
    grid = np.geomspace(float(n.min()), hi_n, n_grid)
    for k in names:
        fit = report.fits[k]
        best = k == report.best
        band = report.curve_band(grid, k)
        if band is not None:
            ax.fill_between(grid, band[0], band[1], color=color_of[k], alpha=0.18, lw=0)
        ax.plot(
            grid,
            report.predict(grid, k),
            color=color_of[k],
            lw=2.2 if best else 1.5,
            ls="-" if best else "--",
            label=f"{k} (w={fit.akaike_weight:.2f})" + (" *" if best else ""),
        )

    if show_seeds and report.groups is not None:
        sns.scatterplot(x=n, y=y, ax=ax, color="0.5", alpha=0.35, s=14, legend=False, zorder=2)
    ux = np.unique(n)
    means = np.array([y[n == v].mean() for v in ux])
    counts = np.array([(n == v).sum() for v in ux])
    ses = np.array(
        [y[n == v].std(ddof=1) / np.sqrt(c) if c > 1 else 0.0 for v, c in zip(ux, counts)]
    )
    if report.sigma is not None and counts.max() == 1:
        ses = np.array([float(report.sigma[n == v][0]) for v in ux])
    ax.errorbar(
        ux, means, yerr=ses, fmt="o", color=colors[0], ms=5, capsize=3, zorder=3,
        label="mean ± s.e." if counts.max() > 1 or report.sigma is not None else "data",
    )

    if show_n_at is not None:
        try:
            n_star = report.n_at(show_n_at)
        except ValueError:  # ScalingError: no plateau for the favoured form
            n_star = None
        if n_star is not None and np.isfinite(n_star) and n_star <= grid[-1] * 10:
            ax.axvline(n_star, color=color_of[report.best], lw=1, ls=":",
                       label=f"n{round(show_n_at * 100)} = {n_star:,.0f}")

    ax.set_xscale("log")
    ax.set_xlabel("training pairs (n)")
    ax.set_ylabel(metric)
    ax.set_title(title if title is not None else f"{metric} vs training pairs (favoured: {report.best})")
    ax.legend(fontsize="small", frameon=False)
    return ax
