"""Statistical inference for the findings: estimates with t intervals, equivalence, power, Holm, ranks.

Every contrast of the book is an :class:`Estimate`: a value, its standard error and the degrees of
freedom of its t reference distribution, with the variance split into a part that shrinks with more
seeds (``var_seed``) and one that does not (``var_fixed``: the evaluation items every seed shares).
From it: two-sided p-values and intervals, two one-sided tests (TOST) for equivalence, the minimum
detectable effect (MDE) at a given power and the seeds a design would need.

How an estimate is made:

- :func:`over_seeds`: one value per seed (a mean, or a paired difference per seed), t interval with
  ``S - 1`` degrees of freedom. Seeds share evaluation items, so this interval leaves out the
  item-sampling noise of the evaluation set; the caller says so where it matters.
- :func:`over_items`: per-item differences (``record["items"]``), clustered by prompt, crossed with
  seeds: a two-way random-effects decomposition (seed × prompt cluster) of the grand mean, with the
  variance ``(MS_seed + MS_cluster - MS_residual) / (S C)`` and Satterthwaite degrees of freedom.
- :func:`welch`: two independent groups of seeds (used only when runs cannot be paired).

Bootstraps are used only where they are honest: over items clustered by prompt
(:func:`cluster_bootstrap_ci`), or over at least :data:`MIN_SEEDS_BOOTSTRAP` seeds
(:func:`rank_distribution`). A test is reported only with enough seeds to reject
(:func:`min_seeds_to_reject`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Estimate",
    "MIN_SEEDS_BOOTSTRAP",
    "cluster_bootstrap_ci",
    "holm",
    "min_seeds_to_reject",
    "over_items",
    "over_seeds",
    "paired_over_seeds",
    "rank_distribution",
    "welch",
    "wilcoxon_p",
]

#: A bootstrap over seeds needs at least this many seeds (a percentile bootstrap over three seed
#: means covers about 76% at a nominal 95%).
MIN_SEEDS_BOOTSTRAP = 10


@dataclass(frozen=True)
class Estimate:
    """A mean or contrast with its standard error and t reference distribution.

    ``var_seed`` is the variance one seed contributes (the estimate's variance is ``var_seed / S
    + var_fixed`` for ``S`` seeds); ``var_fixed`` does not shrink with seeds (shared evaluation
    items). ``method`` says how it was made, ``note`` why it is missing or what it leaves out.
    """

    value: float
    se: float
    df: float
    n_seeds: int
    method: str
    n_clusters: int = 0
    var_seed: float = math.nan
    var_fixed: float = 0.0
    note: str = ""

    @property
    def ok(self) -> bool:
        """A usable estimate: finite, with a positive standard error and degrees of freedom."""
        return bool(np.isfinite(self.value) and np.isfinite(self.se) and self.se > 0 and self.df > 0)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided t interval at ``level`` (NaN when the estimate is not usable)."""
        if not self.ok:
            return math.nan, math.nan
        h = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        return self.value - h, self.value + h

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided t-test of ``value == null``."""
        if not self.ok:
            return math.nan
        return float(2 * stats.t.sf(abs(self.value - null) / self.se, self.df))

    def tost(self, margin: float) -> float:
        """Two one-sided tests of ``|true value| < margin``: the larger of the two p-values."""
        if not self.ok:
            return math.nan
        lower = stats.t.sf((self.value + margin) / self.se, self.df)
        upper = stats.t.cdf((self.value - margin) / self.se, self.df)
        return float(max(lower, upper))

    def mde(self, alpha: float = 0.05, power: float = 0.8) -> float:
        """Minimum detectable effect of the two-sided test at level ``alpha`` with ``power``."""
        if not self.ok:
            return math.nan
        return float((stats.t.ppf(1 - alpha / 2, self.df) + stats.t.ppf(power, self.df)) * self.se)

    def equivalence_reach(self, alpha: float = 0.05, power: float = 0.8) -> float:
        """The smallest equivalence margin this design shows with ``power`` when the truth is 0."""
        if not self.ok:
            return math.nan
        return float((stats.t.ppf(1 - alpha, self.df) + stats.t.ppf(0.5 + power / 2, self.df)) * self.se)

    def seeds_needed(self, effect: float, alpha: float = 0.05, power: float = 0.8,
                     max_seeds: int = 1000) -> int | None:
        """Seeds for which the MDE falls to ``effect`` (None: more seeds alone cannot get there,
        because the shared evaluation items' variance ``var_fixed`` is too large, or the variance is
        unknown)."""
        if not (np.isfinite(self.var_seed) and effect > 0):
            return None
        for s in range(2, max_seeds + 1):
            se = math.sqrt(self.var_seed / s + self.var_fixed)
            if (stats.t.ppf(1 - alpha / 2, s - 1) + stats.t.ppf(power, s - 1)) * se <= effect:
                return s
        return None


def _missing(value: float, n: int, method: str, note: str) -> Estimate:
    return Estimate(value=value, se=math.nan, df=math.nan, n_seeds=n, method=method, note=note)


def over_seeds(values: Sequence[float] | np.ndarray, method: str = "over seeds") -> Estimate:
    """Mean of one value per seed with its t standard error (``S - 1`` degrees of freedom)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return _missing(math.nan, 0, method, "no runs")
    if x.size == 1:
        return _missing(float(x[0]), 1, method, "one seed: no interval or test (needs at least 2 seeds)")
    sd = float(x.std(ddof=1))
    if sd == 0:
        return _missing(float(x.mean()), x.size, method, "identical values on every seed: no spread to test")
    return Estimate(value=float(x.mean()), se=sd / math.sqrt(x.size), df=x.size - 1, n_seeds=int(x.size),
                    method=method, var_seed=sd**2)


def paired_over_seeds(a: Mapping[int, float], b: Mapping[int, float] | float) -> Estimate:
    """``a - b`` paired by seed (``b`` a constant or one value per seed); seeds missing on either
    side are left out."""
    if isinstance(b, Mapping):
        seeds = sorted(set(a) & set(b))
        diffs = [a[s] - b[s] for s in seeds]
    else:
        diffs = [v - float(b) for v in a.values()]
    return over_seeds(diffs, "paired by seed")


def welch(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Mean of ``a`` minus mean of ``b`` for unpaired seeds (Welch's t)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    method = "unpaired seeds (Welch)"
    if x.size < 2 or y.size < 2:
        return _missing(float(x.mean() - y.mean()) if x.size and y.size else math.nan, min(x.size, y.size), method,
                        "needs at least 2 seeds on each side")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if va + vb == 0:
        return _missing(float(x.mean() - y.mean()), min(x.size, y.size), method, "no spread to test")
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return Estimate(value=float(x.mean() - y.mean()), se=math.sqrt(va + vb), df=float(df),
                    n_seeds=int(min(x.size, y.size)), method=method, var_seed=float((va + vb) * min(x.size, y.size)))


def _cluster_matrix(cells: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per seed and prompt cluster: the total of the differences and the number of items."""
    labels, inverse = np.unique(np.concatenate([np.asarray(c) for c, _ in cells]), return_inverse=True)
    totals = np.zeros((len(cells), labels.size))
    counts = np.zeros((len(cells), labels.size))
    start = 0
    for s, (clusters, d) in enumerate(cells):
        idx = inverse[start:start + len(clusters)]
        start += len(clusters)
        totals[s] = np.bincount(idx, weights=np.asarray(d, float), minlength=labels.size)
        counts[s] = np.bincount(idx, minlength=labels.size)
    return totals, counts


def over_items(cells: Sequence[tuple[np.ndarray, np.ndarray]]) -> Estimate:
    """Mean per-item difference over seeds, clustered by prompt.

    ``cells``: per seed, ``(cluster, difference)`` arrays over the same items (the caller matches
    items by id). The variance is that of a two-way random-effects design (seed × prompt cluster):
    ``(MS_seed + MS_cluster - MS_residual) / (S C)`` on the cluster totals, with Satterthwaite
    degrees of freedom; one seed gives a cluster-robust interval that leaves out run-to-run noise.
    """
    method = "per item, clustered by prompt" + ("" if len(cells) == 1 else ", crossed with seeds")
    if not cells or any(len(c) == 0 for c, _ in cells):
        return _missing(math.nan, len(cells), method, "no items")
    totals, counts = _cluster_matrix(cells)
    S, C = totals.shape
    value = float(totals.sum() / counts.sum())
    r = (totals - value * counts) / counts.mean()
    if C < 2:
        return _missing(value, S, method, "one prompt cluster: no interval")
    ms_b = S * float(np.sum(r.mean(axis=0) ** 2)) / (C - 1)
    if S == 1:
        return Estimate(value=value, se=math.sqrt(ms_b / C), df=C - 1, n_seeds=1, n_clusters=C, method=method,
                        var_fixed=ms_b / C, note="one seed: run-to-run noise is not in this interval")
    rows, cols = r.mean(axis=1), r.mean(axis=0)
    ms_a = C * float(np.sum(rows**2)) / (S - 1)
    ms_e = float(np.sum((r - rows[:, None] - cols[None, :]) ** 2)) / ((S - 1) * (C - 1))
    terms = np.array([ms_a, ms_b, -ms_e]) / (S * C)
    dfs = np.array([S - 1, C - 1, (S - 1) * (C - 1)], dtype=float)
    var = float(terms.sum())
    if var <= max(terms[0], terms[1]):  # the residual term cannot make the variance smaller than a main effect
        keep = int(np.argmax(terms[:2]))
        var, df = float(terms[keep]), float(dfs[keep])
    else:
        df = var**2 / float(np.sum(terms**2 / dfs))
    if var <= 0:
        return _missing(value, S, method, "no spread to test")
    var_fixed = max((ms_b - ms_e) / S, 0.0) / C
    return Estimate(value=value, se=math.sqrt(var), df=df, n_seeds=S, n_clusters=C, method=method,
                    var_seed=max(var - var_fixed, 0.0) * S, var_fixed=var_fixed)


def cluster_bootstrap_ci(values: Sequence[float], clusters: Sequence[object], *, n_boot: int = 2000,
                         level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of an item mean, resampling whole prompt clusters (seeded)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("cluster_bootstrap_ci needs at least one value")
    _, idx = np.unique(np.asarray(clusters), return_inverse=True)
    totals = np.bincount(idx, weights=x)
    counts = np.bincount(idx).astype(float)
    C = totals.size
    draws = np.random.default_rng(seed).multinomial(C, np.full(C, 1.0 / C), size=n_boot)
    means = (draws @ totals) / (draws @ counts)
    q = (1 - level) / 2
    return float(np.quantile(means, q)), float(np.quantile(means, 1 - q))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    m = order.size
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def min_seeds_to_reject(test: str, alpha: float = 0.05) -> int:
    """Fewest paired seeds with which ``test`` can reach ``p < alpha`` at all (two-sided).

    ``paired_t``: 2. ``wilcoxon`` (exact signed-rank): its smallest p is ``2 / 2^n``. ``sign``: the
    same. ``bootstrap``: :data:`MIN_SEEDS_BOOTSTRAP` (for coverage, not for reaching ``alpha``).
    """
    if test == "paired_t":
        return 2
    if test in ("wilcoxon", "sign"):
        return int(math.ceil(math.log2(2 / alpha) + 1e-12))
    if test == "bootstrap":
        return MIN_SEEDS_BOOTSTRAP
    raise ValueError(f"unknown test {test!r}; known: paired_t, wilcoxon, sign, bootstrap")


def wilcoxon_p(diffs: Sequence[float], alpha: float = 0.05) -> float:
    """Two-sided exact signed-rank p-value, or NaN when there are too few seeds for it to reject."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < min_seeds_to_reject("wilcoxon", alpha) or not np.any(d != 0):
        return math.nan
    return float(stats.wilcoxon(d).pvalue)


def rank_distribution(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Probability of each rank (columns: rank 1 = highest mean) per label (rows of the result),
    from a bootstrap over seeds; ``values`` is seeds × labels. Needs at least
    :data:`MIN_SEEDS_BOOTSTRAP` seeds."""
    v = np.asarray(values, dtype=float)
    S, L = v.shape
    if S < MIN_SEEDS_BOOTSTRAP:
        raise ValueError(f"a rank bootstrap over seeds needs at least {MIN_SEEDS_BOOTSTRAP} seeds, got {S}")
    idx = np.random.default_rng(seed).integers(0, S, size=(n_boot, S))
    means = v[idx].mean(axis=1)  # (n_boot, L)
    ranks = (-means).argsort(axis=1).argsort(axis=1)  # 0 = best
    return np.stack([(ranks == k).mean(axis=0) for k in range(L)], axis=1)
