"""Scaling-law analysis: how a metric grows with the number of training pairs.

`fit_scaling(n, y)` fits three candidate forms of ``y(n)`` (``n`` = number of
training pairs, ``y`` = a metric such as preference accuracy or a reward-model
win rate):

``exp_plateau``  ``y = a - (a - b) * exp(-n / tau)``
    The paper's finding: performance saturates exponentially. ``a`` is the
    plateau, ``b`` the (extrapolated) value at ``n = 0`` and ``tau`` the data
    scale; 95 % of the gain from ``n_min`` is reached at ``n_min + tau ln 20``
    (about ``n_min + 3 tau``).
``power_law``    ``y = a - c * n**(-alpha)``
    A saturating power law (plateau ``a``, slow algebraic approach).
``log_law``      ``y = b + c * log(n)``
    Unbounded logarithmic growth: there is *no* plateau.

Fitting
    Bounded non-linear least squares (`scipy.optimize.least_squares`, method
    ``trf``) started from the best points of a profile grid over the
    non-linear parameter (``tau`` or ``alpha``), where the linear parameters are
    solved exactly (variable projection). Internally ``n`` is rescaled by the
    geometric mean of the distinct ``n`` values for conditioning; reported
    parameters are in the original units. Points may be per-seed values
    (``n`` repeats) or means with standard errors passed as ``sigma`` (weights
    ``1/sigma**2``).

Bounds (documented, they matter for identifiability)
    ``a`` and ``b`` lie within ten data spans of the observed range,
    ``tau`` within ``[n_min/10, 10 n_max]``, ``alpha`` within ``[0.01, 5]``.
    A parameter that ends on a bound is flagged in ``FitResult.warnings``.

Statistics
    Gaussian errors. By default the noise scale is estimated
    (``sigma`` are relative weights, like ``curve_fit(absolute_sigma=False)``),
    so the log-likelihood is ``-N/2 (log(2 pi SSE_w / N) + 1) - sum(log sigma)``
    and the parameter count ``k`` includes the variance. With
    ``absolute_sigma=True`` the likelihood is the chi-square one and ``k`` is the
    number of curve parameters. AIC = 2k - 2 logL, AICc = AIC + 2k(k+1)/(N-k-1),
    BIC = k log N - 2 logL are all reported. **Akaike weights are computed from
    AICc** (more honest with the few points of a scaling study); if AICc is
    undefined for some form (N <= k + 1) the weights fall back to AIC and
    ``ScalingReport.criterion`` says so. The favoured form (``best``) is the one
    with the largest weight.

Intervals
    95 % percentile bootstrap intervals. ``bootstrap="auto"`` resamples whole
    seeds (``groups``) when at least 5 distinct seeds are given, and otherwise
    uses a residual bootstrap (standardised residuals, inflated by
    ``sqrt(N/(N-p))``, added back to each form's fitted curve): with three seeds a
    seed bootstrap has only 10 distinct resamples. ``"points"`` resamples points
    within each ``n`` (stratified, keeping every ``n``), ``"groups"`` and
    ``"residuals"`` force the others. In simulations with the design of the
    tests (8 sizes x 3 seeds) the residual intervals cover the true parameters
    about 90 % of the time at the nominal 95 % (percentile intervals of a
    non-linear fit on 24 points run a little narrow); ``"points"`` with three
    replicates per ``n`` covers only about 80 %. Bootstrap refits start from the
    full-data estimate; failed refits are counted in ``FitResult.n_boot_failed``.

Derived quantities
    ``plateau`` (``a`` for the two saturating forms), ``n_at(f)``: the ``n`` at
    which the curve has covered the fraction ``f`` of the gain from ``y(n_min)``
    to the plateau (``relative_to="plateau"``, the default) or to ``y(n_full)``
    (``relative_to="n_full"``), and ``saving(f) = 1 - n_at(f) / n_full``.
    The log law has no plateau: asking for a plateau-relative quantity from it
    raises `ScalingError` (use ``relative_to="n_full"``). ``n_full`` defaults to
    the largest ``n`` in the data. ``saving`` is negative when ``n_at > n_full``.

Failures are explicit: a form whose optimisation fails gets
``success=False``, a ``message``, empty ``params``, infinite information
criteria and Akaike weight 0; if every form fails `ScalingError` is raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import optimize

__all__ = [
    "FORMS",
    "FORM_NAMES",
    "FitResult",
    "ScalingError",
    "ScalingForm",
    "ScalingReport",
    "exp_plateau",
    "fit_scaling",
    "fit_scaling_table",
    "log_law",
    "power_law",
]

FORM_NAMES: tuple[str, ...] = ("exp_plateau", "power_law", "log_law")
_SPAN_FACTOR = 10.0  # a, b within this many data spans of the observed range
_GRID_SIZE = 40


class ScalingError(ValueError):
    """Invalid input to, or impossible request of, the scaling analysis."""


# ----------------------------------------------------------------------------
# the curve families (public parameterisation)
# ----------------------------------------------------------------------------


def exp_plateau(n: Any, a: float, b: float, tau: float) -> np.ndarray:
    """Exponential plateau ``a - (a - b) exp(-n / tau)``."""
    n = np.asarray(n, dtype=float)
    return a - (a - b) * np.exp(-n / tau)


def power_law(n: Any, a: float, c: float, alpha: float) -> np.ndarray:
    """Saturating power law ``a - c n**(-alpha)``."""
    n = np.asarray(n, dtype=float)
    return a - c * n ** (-alpha)


def log_law(n: Any, b: float, c: float) -> np.ndarray:
    """Logarithmic law ``b + c log(n)``."""
    n = np.asarray(n, dtype=float)
    return b + c * np.log(n)


# ----------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------



@dataclass(frozen=True)
class ScalingForm:
    """One candidate form.

    ``func(n, *params)`` is the curve in public units. The optimiser works on
    internal parameters ``theta`` with ``x = n / n_ref``: ``internal(x, theta)``
    is the curve, ``to_public(theta, n_ref)`` / ``to_internal(params, n_ref)``
    convert, ``bounds(x, y)`` gives (lower, upper) for ``theta`` and
    ``initial_guesses(x, y, w)`` a list of starting ``theta``.
    ``shape(n, params)`` is ``g`` in ``y = A + B g(n)`` with inverse ``shape_inv``;
    ``shape_limit`` is ``g(inf)`` (``None`` if the form has no plateau).
    """

    name: str
    formula: str
    func: Callable[..., np.ndarray]
    param_names: tuple[str, ...]
    internal: Callable[[np.ndarray, np.ndarray], np.ndarray]
    to_public: Callable[[np.ndarray, float], np.ndarray]
    to_internal: Callable[[np.ndarray, float], np.ndarray]
    bounds: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    initial_guesses: Callable[[np.ndarray, np.ndarray, np.ndarray], list[np.ndarray]]
    shape: Callable[[np.ndarray, np.ndarray], np.ndarray]
    shape_inv: Callable[[np.ndarray, np.ndarray], np.ndarray]
    shape_limit: float | None
    plateau_param: str | None

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def __call__(self, n: Any, params: Sequence[float] | dict[str, float]) -> np.ndarray:
        if isinstance(params, dict):
            params = [params[k] for k in self.param_names]
        return self.func(n, *params)


def _level_bounds(y: np.ndarray) -> tuple[float, float]:
    span = float(np.ptp(y))
    return float(np.min(y)) - _SPAN_FACTOR * span, float(np.max(y)) + _SPAN_FACTOR * span


def _profile_starts(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    grid: np.ndarray,
    basis: Callable[[np.ndarray], np.ndarray],
    level_idx: Sequence[int],
    lo: np.ndarray,
    hi: np.ndarray,
    n_starts: int = 2,
) -> list[np.ndarray]:
    """Variable projection: for each grid value of the non-linear parameter
    solve the two linear parameters by weighted least squares, clip to bounds,
    and return the best local minima of the profile as starting points."""
    B = basis(grid)  # (G, N, 2)
    sw = np.sqrt(w)
    Bw = B * sw[None, :, None]
    coef = np.einsum("gij,gj->gi", np.linalg.pinv(Bw), np.broadcast_to(y * sw, (len(grid), len(y))))
    coef = np.clip(coef, lo[list(level_idx)], hi[list(level_idx)])
    pred = np.einsum("gnj,gj->gn", B, coef)
    sse = np.sum(w * (pred - y) ** 2, axis=1)
    sse = np.where(np.isfinite(sse), sse, np.inf)
    # local minima of the profile, best first
    is_min = np.ones(len(grid), dtype=bool)
    is_min[1:] &= sse[1:] <= sse[:-1]
    is_min[:-1] &= sse[:-1] <= sse[1:]
    cand = np.flatnonzero(is_min & np.isfinite(sse))
    if cand.size == 0:
        cand = np.array([int(np.argmin(sse))])
    cand = cand[np.argsort(sse[cand])][:n_starts]
    starts = []
    for g in cand:
        theta = np.empty(3)
        theta[list(level_idx)] = coef[g]
        theta[2] = grid[g]
        starts.append(theta)
    return starts


# --- exp plateau: theta = (a, b, tau' = tau / n_ref)


def _exp_internal(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return th[0] - (th[0] - th[1]) * np.exp(-x / th[2])


def _exp_bounds(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _level_bounds(y)
    return np.array([lo, lo, x.min() / 10.0]), np.array([hi, hi, x.max() * 10.0])


def _exp_guesses(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
    lb, ub = _exp_bounds(x, y)
    grid = np.geomspace(lb[2] * 1.01, ub[2] / 1.01, _GRID_SIZE)

    def basis(t: np.ndarray) -> np.ndarray:
        e = np.exp(-x[None, :] / t[:, None])
        return np.stack([1.0 - e, e], axis=-1)

    return _profile_starts(x, y, w, grid, basis, (0, 1), lb, ub)


# --- power law: theta = (a, c' = c * n_ref**-alpha, alpha)


def _pow_internal(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return th[0] - th[1] * x ** (-th[2])


def _pow_bounds(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _level_bounds(y)
    return np.array([lo, -np.inf, 0.01]), np.array([hi, np.inf, 5.0])


def _pow_guesses(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
    lb, ub = _pow_bounds(x, y)
    grid = np.geomspace(lb[2] * 1.01, ub[2] / 1.01, _GRID_SIZE)

    def basis(al: np.ndarray) -> np.ndarray:
        p = x[None, :] ** (-al[:, None])
        return np.stack([np.ones_like(p), -p], axis=-1)

    return _profile_starts(x, y, w, grid, basis, (0, 1), lb, ub)


# --- log law: theta = (b' = b + c log n_ref, c)


def _log_internal(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return th[0] + th[1] * np.log(x)


def _log_bounds(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.full(2, -np.inf), np.full(2, np.inf)


def _log_guesses(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> list[np.ndarray]:
    sw = np.sqrt(w)
    B = np.stack([np.ones_like(x), np.log(x)], axis=1) * sw[:, None]
    coef, *_ = np.linalg.lstsq(B, y * sw, rcond=None)
    return [coef]


def _exp_pub(th: np.ndarray, r: float) -> np.ndarray:
    return np.array([th[0], th[1], th[2] * r])


def _exp_int(p: np.ndarray, r: float) -> np.ndarray:
    return np.array([p[0], p[1], p[2] / r])


def _exp_shape(n: Any, p: np.ndarray) -> np.ndarray:
    return np.exp(-np.asarray(n, float) / p[2])


def _exp_shape_inv(g: Any, p: np.ndarray) -> np.ndarray:
    return -p[2] * np.log(g)


def _pow_pub(th: np.ndarray, r: float) -> np.ndarray:
    return np.array([th[0], th[1] * r ** th[2], th[2]])


def _pow_int(p: np.ndarray, r: float) -> np.ndarray:
    return np.array([p[0], p[1] * r ** (-p[2]), p[2]])


def _pow_shape(n: Any, p: np.ndarray) -> np.ndarray:
    return np.asarray(n, float) ** (-p[2])


def _pow_shape_inv(g: Any, p: np.ndarray) -> np.ndarray:
    return np.asarray(g, float) ** (-1.0 / p[2])


def _log_pub(th: np.ndarray, r: float) -> np.ndarray:
    return np.array([th[0] - th[1] * math.log(r), th[1]])


def _log_int(p: np.ndarray, r: float) -> np.ndarray:
    return np.array([p[0] + p[1] * math.log(r), p[1]])


def _log_shape(n: Any, p: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(n, float))


def _log_shape_inv(g: Any, p: np.ndarray) -> np.ndarray:
    return np.exp(g)


FORMS: dict[str, ScalingForm] = {
    "exp_plateau": ScalingForm(
        name="exp_plateau",
        formula="y = a - (a - b) exp(-n / tau)",
        func=exp_plateau,
        param_names=("a", "b", "tau"),
        internal=_exp_internal,
        to_public=_exp_pub,
        to_internal=_exp_int,
        bounds=_exp_bounds,
        initial_guesses=_exp_guesses,
        shape=_exp_shape,
        shape_inv=_exp_shape_inv,
        shape_limit=0.0,
        plateau_param="a",
    ),
    "power_law": ScalingForm(
        name="power_law",
        formula="y = a - c n^(-alpha)",
        func=power_law,
        param_names=("a", "c", "alpha"),
        internal=_pow_internal,
        to_public=_pow_pub,
        to_internal=_pow_int,
        bounds=_pow_bounds,
        initial_guesses=_pow_guesses,
        shape=_pow_shape,
        shape_inv=_pow_shape_inv,
        shape_limit=0.0,
        plateau_param="a",
    ),
    "log_law": ScalingForm(
        name="log_law",
        formula="y = b + c log(n)",
        func=log_law,
        param_names=("b", "c"),
        internal=_log_internal,
        to_public=_log_pub,
        to_internal=_log_int,
        bounds=_log_bounds,
        initial_guesses=_log_guesses,
        shape=_log_shape,
        shape_inv=_log_shape_inv,
        shape_limit=None,
        plateau_param=None,
    ),
}


# ----------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------


@dataclass
class FitResult:
    """Fit of one form. ``params``/``ci`` are empty when ``success`` is False.

    ``sse`` is the (weighted) residual sum of squares; ``boot_params`` holds the
    successful bootstrap parameter vectors (rows, in ``param_names`` order).
    """

    form: str
    success: bool
    message: str
    param_names: tuple[str, ...]
    params: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    sse: float = math.inf
    n_obs: int = 0
    k: int = 0  # parameters counted by the information criteria
    loglik: float = -math.inf
    aic: float = math.inf
    aicc: float = math.inf
    bic: float = math.inf
    akaike_weight: float = 0.0
    boot_params: np.ndarray | None = None
    n_boot_failed: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def theta(self) -> np.ndarray:
        """Parameters as a vector in ``param_names`` order."""
        return np.array([self.params[k] for k in self.param_names])


@dataclass
class ScalingReport:
    """Result of `fit_scaling`; see the module docstring for the statistics."""

    n: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    groups: np.ndarray | None
    fits: dict[str, FitResult]
    best: str
    criterion: str  # "AICc" or "AIC": what the Akaike weights use
    n_full: float
    bootstrap: str  # method actually used ("none" when n_boot == 0)
    n_boot: int
    level: float = 0.95
    forms: dict[str, ScalingForm] = field(default_factory=lambda: dict(FORMS), repr=False)

    # -- helpers -------------------------------------------------------------
    @property
    def n_min(self) -> float:
        return float(np.min(self.n))

    @property
    def failed(self) -> list[str]:
        """Names of forms whose fit failed."""
        return [k for k, f in self.fits.items() if not f.success]

    @property
    def weights(self) -> dict[str, float]:
        """Akaike weights by form."""
        return {k: f.akaike_weight for k, f in self.fits.items()}

    def _fit(self, form: str | None) -> tuple[ScalingForm, FitResult]:
        name = self.best if form is None else form
        if name not in self.fits:
            raise ScalingError(f"unknown form {name!r}; fitted forms: {list(self.fits)}")
        fit = self.fits[name]
        if not fit.success:
            raise ScalingError(f"the {name} fit failed: {fit.message}")
        return self.forms[name], fit

    def predict(self, n: Any, form: str | None = None) -> np.ndarray:
        """Fitted curve of ``form`` (default: ``best``) at ``n``."""
        f, fit = self._fit(form)
        return f(n, fit.theta)

    def plateau(self, form: str | None = None) -> float:
        """Asymptote of ``form`` (default ``best``); the log law has none."""
        f, fit = self._fit(form)
        if f.plateau_param is None:
            raise ScalingError(f"{f.name} ({f.formula}) grows without bound: it has no plateau")
        return fit.params[f.plateau_param]

    def _n_at_theta(
        self, f: ScalingForm, theta: np.ndarray, fraction: float, relative_to: str
    ) -> float:
        g0 = float(f.shape(self.n_min, theta))
        if relative_to == "plateau":
            if f.shape_limit is None:
                raise ScalingError(
                    f"{f.name} ({f.formula}) has no plateau, so 'fraction of the gain to the "
                    "plateau' is undefined; use relative_to='n_full' (gain up to y(n_full))"
                )
            g_end = f.shape_limit
        elif relative_to == "n_full":
            g_end = float(f.shape(self.n_full, theta))
        else:
            raise ScalingError(f"relative_to must be 'plateau' or 'n_full', got {relative_to!r}")
        target = g0 + fraction * (g_end - g0)
        with np.errstate(all="ignore"):
            return float(f.shape_inv(np.asarray(target), theta))

    def n_at(
        self, fraction: float = 0.95, form: str | None = None, *, relative_to: str = "plateau"
    ) -> float:
        """Training pairs needed to cover ``fraction`` of the gain from ``y(n_min)``.

        ``relative_to="plateau"``: gain up to the plateau (raises for the log
        law, which has none); ``"n_full"``: gain up to ``y(n_full)``.
        """
        _check_fraction(fraction)
        f, fit = self._fit(form)
        return self._n_at_theta(f, fit.theta, fraction, relative_to)

    def n_at_interval(
        self, fraction: float = 0.95, form: str | None = None, *, relative_to: str = "plateau"
    ) -> tuple[float, float]:
        """Bootstrap percentile interval of `n_at` (needs ``n_boot > 0``)."""
        _check_fraction(fraction)
        f, fit = self._fit(form)
        if fit.boot_params is None or len(fit.boot_params) == 0:
            raise ScalingError("no bootstrap samples: refit with n_boot > 0")
        vals = np.array([self._n_at_theta(f, t, fraction, relative_to) for t in fit.boot_params])
        return _percentile_interval(vals, self.level)

    def saving(
        self, fraction: float = 0.95, form: str | None = None, *, relative_to: str = "plateau"
    ) -> float:
        """``1 - n_at(fraction) / n_full``: share of the full pool one can skip."""
        return 1.0 - self.n_at(fraction, form, relative_to=relative_to) / self.n_full

    def saving_interval(
        self, fraction: float = 0.95, form: str | None = None, *, relative_to: str = "plateau"
    ) -> tuple[float, float]:
        lo, hi = self.n_at_interval(fraction, form, relative_to=relative_to)
        return 1.0 - hi / self.n_full, 1.0 - lo / self.n_full

    def curve_band(
        self, n_grid: Any, form: str | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise bootstrap band of the fitted curve on ``n_grid`` (None without samples)."""
        f, fit = self._fit(form)
        if fit.boot_params is None or len(fit.boot_params) < 2:
            return None
        n_grid = np.asarray(n_grid, float)
        curves = np.stack([f(n_grid, t) for t in fit.boot_params])
        q = (1.0 - self.level) / 2.0
        return np.quantile(curves, q, axis=0), np.quantile(curves, 1.0 - q, axis=0)

    # -- tables --------------------------------------------------------------
    def to_frame(self, fractions: Sequence[float] = (0.9, 0.95, 0.99)) -> "Any":
        """One row per form: parameters with intervals, SSE, AIC/AICc/BIC,
        Akaike weight, plateau, n_at for ``fractions`` and the 95 % saving.
        Cells that do not apply (log-law plateau, failed fits) are empty (NaN)
        and the ``note`` column says why."""
        import pandas as pd

        rows = []
        for name, fit in self.fits.items():
            row: dict[str, Any] = {
                "form": name,
                "best": name == self.best,
                "success": fit.success,
                "akaike_weight": fit.akaike_weight,
                "aic": fit.aic,
                "aicc": fit.aicc,
                "bic": fit.bic,
                "sse": fit.sse,
            }
            notes = [] if fit.success else [f"failed: {fit.message}"]
            for p in fit.param_names:
                if fit.success:
                    row[p] = fit.params[p]
                    row[f"{p}_lo"], row[f"{p}_hi"] = fit.ci.get(p, (math.nan, math.nan))
            if fit.success:
                f = self.forms[name]
                if f.plateau_param is not None:
                    row["plateau"] = fit.params[f.plateau_param]
                    for fr in fractions:
                        row[f"n{round(fr * 100)}"] = self.n_at(fr, name)
                    row["saving95"] = self.saving(0.95, name)
                    if fit.boot_params is not None and len(fit.boot_params):
                        row["n95_lo"], row["n95_hi"] = self.n_at_interval(0.95, name)
                else:
                    notes.append("no plateau (unbounded growth)")
                notes.extend(fit.warnings)
            row["note"] = "; ".join(notes)
            rows.append(row)
        return pd.DataFrame(rows).set_index("form")

    def summary(self) -> str:
        """Readable multi-line summary."""
        lines = [
            f"scaling fit: {len(self.n)} points, {len(np.unique(self.n))} distinct n "
            f"in [{self.n_min:g}, {np.max(self.n):g}], n_full={self.n_full:g}; "
            f"weights from {self.criterion}; bootstrap={self.bootstrap} (n_boot={self.n_boot})",
        ]
        for name, fit in self.fits.items():
            star = "*" if name == self.best else " "
            if not fit.success:
                lines.append(f"{star} {name:12s} FAILED: {fit.message}")
                continue
            ps = ", ".join(
                f"{p}={fit.params[p]:.4g}"
                + (f" [{fit.ci[p][0]:.4g}, {fit.ci[p][1]:.4g}]" if p in fit.ci else "")
                for p in fit.param_names
            )
            lines.append(
                f"{star} {name:12s} w={fit.akaike_weight:.3f} AIC={fit.aic:.2f} "
                f"AICc={fit.aicc:.2f} BIC={fit.bic:.2f} | {ps}"
            )
            f = self.forms[name]
            if f.plateau_param is not None:
                lines.append(
                    f"  {'':12s} plateau={self.plateau(name):.4g} n90={self.n_at(0.9, name):.4g} "
                    f"n95={self.n_at(0.95, name):.4g} n99={self.n_at(0.99, name):.4g} "
                    f"saving95={self.saving(0.95, name):.4g}"
                )
            for wmsg in fit.warnings:
                lines.append(f"  {'':12s} warning: {wmsg}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ----------------------------------------------------------------------------
# fitting
# ----------------------------------------------------------------------------


def _check_fraction(fraction: float) -> None:
    if not (0.0 < float(fraction) < 1.0):
        raise ScalingError(f"fraction must lie strictly between 0 and 1, got {fraction!r}")


def _percentile_interval(vals: np.ndarray, level: float) -> tuple[float, float]:
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        raise ScalingError("no finite bootstrap values for this quantity")
    q = (1.0 - level) / 2.0
    return float(np.quantile(vals, q)), float(np.quantile(vals, 1.0 - q))


def _validate(
    n: Any, y: Any, sigma: Any, groups: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    try:
        n_arr = np.asarray(n, dtype=float).ravel()
        y_arr = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ScalingError(f"n and y must be numeric: {exc}") from exc
    if n_arr.shape != y_arr.shape:
        raise ScalingError(f"n and y must have the same length (got {n_arr.size} and {y_arr.size})")
    bad = ~np.isfinite(n_arr) | ~np.isfinite(y_arr)
    if bad.any():
        raise ScalingError(
            f"{int(bad.sum())} non-finite value(s) in n or y at positions "
            f"{np.flatnonzero(bad)[:10].tolist()}; drop or fix them first"
        )
    if (n_arr <= 0).any():
        raise ScalingError(f"n must be positive (numbers of training pairs); got min {n_arr.min():g}")
    n_distinct = np.unique(n_arr).size
    if n_distinct <= 3:
        raise ScalingError(
            f"need at least 4 distinct n values to fit and compare 3-parameter forms; got "
            f"{n_distinct} distinct value(s) in {n_arr.size} point(s)"
        )
    if np.ptp(y_arr) <= 1e-12 * max(1.0, float(np.max(np.abs(y_arr)))):
        raise ScalingError(f"y is constant ({y_arr[0]:g}): there is no scaling to fit")
    sig = None
    if sigma is not None:
        sig = np.asarray(sigma, dtype=float).ravel()
        if sig.size == 1:
            sig = np.full(n_arr.size, float(sig[0]))
        if sig.shape != n_arr.shape:
            raise ScalingError(f"sigma must have the length of n ({n_arr.size}), got {sig.size}")
        if not np.all(np.isfinite(sig)) or (sig <= 0).any():
            raise ScalingError("sigma must be finite and positive (standard errors)")
    grp = None
    if groups is not None:
        grp = np.asarray(groups).ravel()
        if grp.shape != n_arr.shape:
            raise ScalingError(f"groups must have the length of n ({n_arr.size}), got {grp.size}")
    return n_arr, y_arr, sig, grp


def _fit_theta(
    form: ScalingForm,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    starts: list[np.ndarray],
    lb: np.ndarray,
    ub: np.ndarray,
) -> tuple[np.ndarray, float, str]:
    """Bounded least squares from several starts; returns (theta, wsse, message).
    Raises RuntimeError when no start converges."""
    sw = np.sqrt(w)

    def resid(th: np.ndarray) -> np.ndarray:
        return (form.internal(x, th) - y) * sw

    best: tuple[np.ndarray, float, str] | None = None
    errors = []
    width = np.where(np.isfinite(ub - lb), ub - lb, 1.0)
    for th0 in starts:
        th0 = np.clip(np.asarray(th0, float), lb + 1e-9 * width, ub - 1e-9 * width)
        try:
            with np.errstate(all="ignore"):
                res = optimize.least_squares(resid, th0, bounds=(lb, ub), method="trf", x_scale="jac")
        except Exception as exc:  # noqa: BLE001 - reported as a failed fit
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        cost = 2.0 * float(res.cost)
        if res.status <= 0 or not np.all(np.isfinite(res.x)) or not np.isfinite(cost):
            errors.append(f"least_squares did not converge (status {res.status}: {res.message})")
            continue
        if best is None or cost < best[1]:
            best = (res.x, cost, str(res.message))
    if best is None:
        raise RuntimeError("; ".join(errors) or "no starting point")
    return best


def _criteria(
    wsse: float, n_obs: int, p: int, sigma: np.ndarray | None, absolute_sigma: bool
) -> tuple[int, float, float, float, float]:
    """Return k, logL, AIC, AICc, BIC."""
    log_sig = float(np.sum(np.log(sigma))) if sigma is not None else 0.0
    if absolute_sigma:
        k = p
        loglik = -0.5 * wsse - log_sig - 0.5 * n_obs * math.log(2 * math.pi)
    else:
        k = p + 1
        s2 = max(wsse / n_obs, 1e-300)
        loglik = -0.5 * n_obs * (math.log(2 * math.pi * s2) + 1.0) - log_sig
    aic = 2 * k - 2 * loglik
    aicc = aic + 2 * k * (k + 1) / (n_obs - k - 1) if n_obs - k - 1 > 0 else math.inf
    bic = k * math.log(n_obs) - 2 * loglik
    return k, loglik, aic, aicc, bic


def _resample_indices(
    method: str, rng: np.random.Generator, n: np.ndarray, groups: np.ndarray | None
) -> np.ndarray:
    if method == "groups":
        assert groups is not None
        labels = np.unique(groups)
        pick = rng.choice(labels, size=labels.size, replace=True)
        return np.concatenate([np.flatnonzero(groups == g) for g in pick])
    # stratified by n
    out = []
    for v in np.unique(n):
        idx = np.flatnonzero(n == v)
        out.append(rng.choice(idx, size=idx.size, replace=True))
    return np.concatenate(out)


def fit_scaling(
    n: Any,
    y: Any,
    *,
    groups: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    n_full: float | None = None,
    forms: Sequence[str | ScalingForm] = FORM_NAMES,
    n_boot: int = 500,
    bootstrap: str = "auto",
    level: float = 0.95,
    seed: int = 0,
) -> ScalingReport:
    """Fit the scaling forms to ``y(n)`` and compare them.

    Parameters
    ----------
    n, y
        Training-pair counts and metric values; ``n`` may repeat (one point per
        seed). At least 4 distinct ``n``, all finite, ``n > 0``, ``y`` not constant.
    groups
        Seed label of each point (used by the seed bootstrap and for plotting).
    sigma
        Standard errors of ``y`` (e.g. when ``y`` are means over seeds): weights
        ``1/sigma**2``. Relative unless ``absolute_sigma``.
    n_full
        Size of the full pool for `ScalingReport.saving` (default ``max(n)``).
    forms
        Names from `FORMS` or custom `ScalingForm` objects.
    n_boot, bootstrap, level, seed
        Bootstrap replicates (0 disables intervals), method (``"auto"``,
        ``"groups"``, ``"points"``, ``"residuals"``), interval level and RNG seed.

    Raises
    ------
    ScalingError
        On invalid input or when every form fails to fit.
    """
    n_arr, y_arr, sig, grp = _validate(n, y, sigma, groups)
    if not 0.0 < level < 1.0:
        raise ScalingError(f"level must lie in (0, 1), got {level}")
    if n_boot < 0:
        raise ScalingError("n_boot must be >= 0")
    form_objs: dict[str, ScalingForm] = {}
    for f in forms:
        if isinstance(f, ScalingForm):
            form_objs[f.name] = f
        elif f in FORMS:
            form_objs[f] = FORMS[f]
        else:
            raise ScalingError(f"unknown form {f!r}; known: {list(FORMS)}")
    if not form_objs:
        raise ScalingError("no forms to fit")
    n_full_v = float(np.max(n_arr)) if n_full is None else float(n_full)
    if not (np.isfinite(n_full_v) and n_full_v > 0):
        raise ScalingError(f"n_full must be a positive number, got {n_full!r}")

    n_ref = float(np.exp(np.mean(np.log(np.unique(n_arr)))))
    x = n_arr / n_ref
    w = np.ones_like(y_arr) if sig is None else 1.0 / sig**2
    w = w / np.mean(w)  # scale-free weights (criteria add back sum(log sigma))
    wsse_scale = 1.0 if sig is None else float(np.mean(1.0 / sig**2))
    n_obs = y_arr.size

    fits: dict[str, FitResult] = {}
    thetas: dict[str, np.ndarray] = {}
    for name, f in form_objs.items():
        fr = FitResult(form=name, success=False, message="", param_names=f.param_names, n_obs=n_obs)
        fits[name] = fr
        try:
            lb, ub = f.bounds(x, y_arr)
            starts = f.initial_guesses(x, y_arr, w)
            theta, wsse_n, msg = _fit_theta(f, x, y_arr, w, starts, lb, ub)
        except Exception as exc:  # noqa: BLE001 - reported explicitly
            fr.message = f"fit failed: {exc}"
            continue
        pub = np.asarray(f.to_public(theta, n_ref), float)
        if not np.all(np.isfinite(pub)):
            fr.message = f"fit failed: non-finite parameters {pub.tolist()}"
            continue
        fr.success = True
        fr.message = msg
        fr.params = dict(zip(f.param_names, map(float, pub)))
        fr.sse = wsse_n * wsse_scale
        fr.k, fr.loglik, fr.aic, fr.aicc, fr.bic = _criteria(
            fr.sse, n_obs, f.n_params, sig, absolute_sigma
        )
        width = np.where(np.isfinite(ub - lb), ub - lb, np.inf)
        for i, p in enumerate(f.param_names):
            if np.isfinite(lb[i]) and theta[i] - lb[i] <= 1e-6 * width[i]:
                fr.warnings.append(f"{p} at its lower bound: not identified by the data")
            if np.isfinite(ub[i]) and ub[i] - theta[i] <= 1e-6 * width[i]:
                fr.warnings.append(f"{p} at its upper bound: not identified by the data")
        thetas[name] = theta

    ok = [k for k, fr in fits.items() if fr.success]
    if not ok:
        raise ScalingError(
            "every form failed to fit: " + "; ".join(f"{k}: {fr.message}" for k, fr in fits.items())
        )
    criterion = "AICc" if all(np.isfinite(fits[k].aicc) for k in ok) else "AIC"
    ic = np.array([fits[k].aicc if criterion == "AICc" else fits[k].aic for k in ok])
    rel = np.exp(-0.5 * (ic - ic.min()))
    for k, wt in zip(ok, rel / rel.sum()):
        fits[k].akaike_weight = float(wt)
    best = ok[int(np.argmin(ic))]

    # ---- bootstrap -------------------------------------------------------
    method = bootstrap
    if method not in ("auto", "groups", "points", "residuals"):
        raise ScalingError(f"unknown bootstrap method {bootstrap!r}")
    if method == "auto":
        method = "groups" if grp is not None and np.unique(grp).size >= 5 else "residuals"
    if method == "groups" and grp is None:
        raise ScalingError("bootstrap='groups' needs group (seed) labels")
    if method == "points" and all(np.sum(n_arr == v) < 2 for v in np.unique(n_arr)):
        raise ScalingError("bootstrap='points' needs replicate points at some n; use 'residuals'")
    if n_boot == 0:
        method = "none"
    else:
        rng = np.random.default_rng(seed)
        samples: dict[str, list[np.ndarray]] = {k: [] for k in ok}
        failed = {k: 0 for k in ok}
        bounds = {k: form_objs[k].bounds(x, y_arr) for k in ok}
        resid_std = {}
        if method == "residuals":
            for k in ok:
                fhat = form_objs[k].internal(x, thetas[k])
                r = (y_arr - fhat) * np.sqrt(w)
                r = (r - r.mean()) * math.sqrt(n_obs / max(n_obs - form_objs[k].n_params, 1))
                resid_std[k] = (fhat, r)
        for _ in range(n_boot):
            idx = None if method == "residuals" else _resample_indices(method, rng, n_arr, grp)
            eps = rng.integers(0, n_obs, size=n_obs) if method == "residuals" else None
            for k in ok:
                f = form_objs[k]
                if idx is None:
                    fhat, r = resid_std[k]
                    xb, wb = x, w
                    yb = fhat + r[eps] / np.sqrt(w)
                else:
                    xb, yb, wb = x[idx], y_arr[idx], w[idx]
                    if np.unique(xb).size < 4 or np.ptp(yb) == 0:
                        failed[k] += 1
                        continue
                lb, ub = bounds[k]
                try:
                    th, _, _ = _fit_theta(f, xb, yb, wb, [thetas[k]], lb, ub)
                except RuntimeError:
                    failed[k] += 1
                    continue
                pub = np.asarray(f.to_public(th, n_ref), float)
                if np.all(np.isfinite(pub)):
                    samples[k].append(pub)
                else:
                    failed[k] += 1
        for k in ok:
            fr = fits[k]
            fr.n_boot_failed = failed[k]
            if samples[k]:
                bp = np.vstack(samples[k])
                fr.boot_params = bp
                q = (1.0 - level) / 2.0
                for i, p in enumerate(fr.param_names):
                    fr.ci[p] = (float(np.quantile(bp[:, i], q)), float(np.quantile(bp[:, i], 1 - q)))
            if failed[k] > 0.1 * n_boot:
                fr.warnings.append(f"{failed[k]}/{n_boot} bootstrap refits failed")

    report = ScalingReport(
        n=n_arr,
        y=y_arr,
        sigma=sig,
        groups=grp,
        fits=fits,
        best=best,
        criterion=criterion,
        n_full=n_full_v,
        bootstrap=method,
        n_boot=n_boot,
        level=level,
        forms=form_objs,
    )
    return report


def fit_scaling_table(
    df: Any,
    n_col: str = "n",
    y_col: str = "y",
    seed_col: str | None = None,
    sigma_col: str | None = None,
    **kwargs: Any,
) -> ScalingReport:
    """`fit_scaling` on the columns of a pandas DataFrame (one row per point)."""
    missing = [c for c in (n_col, y_col, seed_col, sigma_col) if c is not None and c not in df]
    if missing:
        raise ScalingError(f"missing column(s) {missing}; available: {list(df.columns)}")
    return fit_scaling(
        df[n_col].to_numpy(),
        df[y_col].to_numpy(),
        groups=None if seed_col is None else df[seed_col].to_numpy(),
        sigma=None if sigma_col is None else df[sigma_col].to_numpy(),
        **kwargs,
    )
