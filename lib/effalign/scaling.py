"""Scaling curves: descriptive fits of a metric against the number of training pairs.

:func:`fit_scaling` fits ``exp_plateau`` ``a - (a - b) exp(-n / tau)`` (plateau ``a``), ``power_law``
``a - c n^(-alpha)`` (plateau ``a``), ``log_law`` ``b + c log n``, ``linear`` ``b + c n`` and
``constant`` ``b``. The fits *describe* the curve; the book's plateau verdict is a pre-registered
contrast (:mod:`effalign.findings`), which fits the per-size means with their standard errors
(``sigma``, ``absolute_sigma=True``) inside the metric's range (``bounds=(0, 1)`` for accuracy, gold
reward and win rate), never the per-seed points, which share evaluation items and pool.

- Fit step (:func:`_fit_form`): bounded least squares (``trf``) on ``x = n / n_ref`` (``n_ref`` the
  geometric mean of the sizes) from the best points of a grid over the non-linear parameter, the two
  linear ones solved exactly; parameters are reported in ``n`` units.
- Bounds: the plateau ``a`` (and the exponential's ``b``) lie in ``bounds`` (a missing side: ten data
  spans beyond the data), ``tau`` in ``[n_min / 10, 10 n_max]``, ``alpha`` in ``[0.01, 5]``. A
  parameter on a bound is *not identified*: the form keeps its weight but is never favoured.
- Weights step (:func:`_akaike_weights`): Gaussian likelihood, chi-square with ``absolute_sigma``
  (``k`` = curve parameters; ``fit_p`` the lack-of-fit p-value), else with the variance estimated
  (``k + 1``); Akaike weights from AICc (AIC where AICc is undefined). ``best`` is the identified
  form with the largest weight, or None.
- Intervals step (:func:`_bootstrap`): percentile bootstrap, ``parametric`` (``y* = fit + sigma z``,
  the default with absolute sigma), ``residuals``, ``groups`` (whole seeds, at least ten) or
  ``points``.
- ``n_at(f)``: the ``n`` at which the curve covers the share ``f`` of the gain *over the untrained
  policy* (``untrained=``, the book's one definition of gain) up to ``y(n_full)`` (or the plateau);
  ``saving(f) = 1 - n_at(f) / n_full``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .curves import FORM_NAMES, FORMS, Levels, ScalingForm, constant, exp_plateau, linear, log_law, power_law

__all__ = [
    "FORMS",
    "FORM_NAMES",
    "FitResult",
    "MIN_FIT_SIZES",
    "ScalingError",
    "ScalingForm",
    "ScalingReport",
    "constant",
    "exp_plateau",
    "fit_scaling",
    "fit_scaling_table",
    "linear",
    "log_law",
    "power_law",
]

#: the fewest distinct sizes on which the forms are fitted and compared (the plateau forms have 3 parameters)
MIN_FIT_SIZES = 4
MIN_GROUPS_FOR_BOOTSTRAP = 10  # a bootstrap over seeds needs at least this many seeds
_SPAN = 10.0  # a missing side of ``bounds``: this many data spans beyond the observed values
_BOUND_TOL = 1e-3  # a parameter within this share of its box width of a bound sits on it



class ScalingError(ValueError):
    """Invalid input to, or impossible request of, the scaling analysis."""


# ----------------------------------------------------------------------------- results


@dataclass
class FitResult:
    """Fit of one form. ``params``/``ci`` are empty when ``success`` is False; ``at_bound`` names the
    parameters that ended on a bound (the form is then not identified)."""

    form: str
    success: bool
    message: str
    param_names: tuple[str, ...]
    params: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    sse: float = math.inf
    fit_p: float = math.nan  # chi-square lack-of-fit p-value (absolute sigma only)
    n_obs: int = 0
    k: int = 0
    loglik: float = -math.inf
    aic: float = math.inf
    aicc: float = math.inf
    bic: float = math.inf
    akaike_weight: float = 0.0
    at_bound: list[str] = field(default_factory=list)
    boot_params: np.ndarray | None = None
    n_boot_failed: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def identified(self) -> bool:
        """Fitted, and no parameter on a bound."""
        return self.success and not self.at_bound

    @property
    def theta(self) -> np.ndarray:
        return np.array([self.params[k] for k in self.param_names])


@dataclass
class ScalingReport:
    """Result of :func:`fit_scaling`; see the module docstring for the statistics."""

    n: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    groups: np.ndarray | None
    fits: dict[str, FitResult]
    best: str | None
    criterion: str
    n_full: float
    untrained: float | None
    bounds: Levels
    bootstrap: str
    n_boot: int
    level: float = 0.95
    forms: dict[str, ScalingForm] = field(default_factory=lambda: dict(FORMS), repr=False)

    @property
    def n_min(self) -> float:
        return float(np.min(self.n))

    @property
    def failed(self) -> list[str]:
        return [k for k, f in self.fits.items() if not f.success]

    @property
    def identified(self) -> list[str]:
        """Forms fitted with every parameter off its bounds."""
        return [k for k, f in self.fits.items() if f.identified]

    @property
    def weights(self) -> dict[str, float]:
        return {k: f.akaike_weight for k, f in self.fits.items()}

    def _fit(self, form: str | None) -> tuple[ScalingForm, FitResult]:
        name = self.best if form is None else form
        if name is None:
            raise ScalingError("no form is identified by the data (each fitted form has a parameter on a bound)")
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
        """Asymptote of ``form`` (default ``best``); forms without a plateau raise."""
        f, fit = self._fit(form)
        if f.plateau_param is None:
            raise ScalingError(f"{f.name} ({f.formula}) has no plateau")
        return fit.params[f.plateau_param]

    def _n_at_theta(self, f: ScalingForm, theta: np.ndarray, fraction: float, relative_to: str) -> float:
        if self.untrained is None:
            raise ScalingError("n_at measures the gain over the untrained policy: pass untrained= to fit_scaling")
        if relative_to == "plateau":
            if f.plateau_param is None:
                raise ScalingError(f"{f.name} ({f.formula}) has no plateau; use relative_to='n_full'")
            end = float(theta[f.param_names.index(f.plateau_param)])
        elif relative_to == "n_full":
            end = float(f(self.n_full, theta))
        else:
            raise ScalingError(f"relative_to must be 'plateau' or 'n_full', got {relative_to!r}")
        n = f.solve(self.untrained + fraction * (end - self.untrained), theta)
        return max(n, 0.0) if np.isfinite(n) else math.nan

    def n_at(self, fraction: float = 0.95, form: str | None = None, *, relative_to: str = "n_full") -> float:
        """Training pairs at which ``form`` covers ``fraction`` of the gain over the untrained policy."""
        _check_fraction(fraction)
        f, fit = self._fit(form)
        return self._n_at_theta(f, fit.theta, fraction, relative_to)

    def n_at_interval(self, fraction: float = 0.95, form: str | None = None, *,
                      relative_to: str = "n_full") -> tuple[float, float]:
        """Bootstrap percentile interval of :meth:`n_at` (needs ``n_boot > 0``)."""
        _check_fraction(fraction)
        f, fit = self._fit(form)
        if fit.boot_params is None or len(fit.boot_params) == 0:
            raise ScalingError("no bootstrap samples: refit with n_boot > 0")
        vals = np.array([self._n_at_theta(f, t, fraction, relative_to) for t in fit.boot_params])
        return _percentile(vals, self.level)

    def saving(self, fraction: float = 0.95, form: str | None = None, *, relative_to: str = "n_full") -> float:
        """``1 - n_at(fraction) / n_full``: the share of the pool one could skip."""
        return 1.0 - self.n_at(fraction, form, relative_to=relative_to) / self.n_full

    def curve_band(self, n_grid: Any, form: str | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Pointwise bootstrap band of the fitted curve on ``n_grid`` (None without samples)."""
        f, fit = self._fit(form)
        if fit.boot_params is None or len(fit.boot_params) < 2:
            return None
        curves = np.stack([f(np.asarray(n_grid, float), t) for t in fit.boot_params])
        q = (1.0 - self.level) / 2.0
        return np.quantile(curves, q, axis=0), np.quantile(curves, 1.0 - q, axis=0)

    def to_frame(self, max_extrapolation: float = 10.0) -> pd.DataFrame:
        """One row per form: favoured, identified, weight, criteria, parameters with intervals,
        plateau, n95 (gain over the untrained policy up to ``y(n_full)``) and the note. An n95 beyond
        ``max_extrapolation`` times the pool is left empty (the note says so)."""
        return pd.DataFrame([self._row(name, max_extrapolation) for name in self.fits]).set_index("form")

    def _row(self, name: str, max_extrapolation: float) -> dict[str, Any]:
        fit, f = self.fits[name], self.forms[name]
        row: dict[str, Any] = {"form": name, "favoured": name == self.best, "identified": fit.identified,
                               "akaike_weight": fit.akaike_weight, "aicc": fit.aicc, "aic": fit.aic, "bic": fit.bic,
                               "fit_p": fit.fit_p}
        notes = [] if fit.success else [f"failed: {fit.message}"]
        notes += [f"{p} at a bound: not identified" for p in fit.at_bound]
        if fit.success:
            for p in fit.param_names:
                row[p] = fit.params[p]
                row[f"{p}_lo"], row[f"{p}_hi"] = fit.ci.get(p, (math.nan, math.nan))
            row["plateau"] = fit.params[f.plateau_param] if f.plateau_param else math.nan
            if self.untrained is not None and name != "constant":
                n95 = self.n_at(0.95, name)
                far = not np.isfinite(n95) or n95 > max_extrapolation * self.n_full
                row["n95"] = math.nan if far else n95
                if far:
                    notes.append(f"n95 beyond {max_extrapolation:g} times the pool")
            notes += fit.warnings
        row["note"] = "; ".join(notes)
        return row

    def summary(self) -> str:
        """Readable multi-line summary."""
        lines = [f"scaling fit: {len(self.n)} points, {len(np.unique(self.n))} distinct n in [{self.n_min:g}, "
                 f"{np.max(self.n):g}], n_full={self.n_full:g}; weights from {self.criterion}; favoured: "
                 f"{self.best or 'none identified'}; bootstrap={self.bootstrap} (n_boot={self.n_boot})"]
        for name, fit in self.fits.items():
            star = "*" if name == self.best else " "
            if not fit.success:
                lines.append(f"{star} {name:12s} FAILED: {fit.message}")
                continue
            ps = ", ".join(f"{p}={fit.params[p]:.4g}" + (f" [{fit.ci[p][0]:.4g}, {fit.ci[p][1]:.4g}]" if p in fit.ci else "")
                           for p in fit.param_names)
            flag = "" if fit.identified else f" NOT IDENTIFIED ({', '.join(fit.at_bound)} at a bound)"
            lines.append(f"{star} {name:12s} w={fit.akaike_weight:.3f} AICc={fit.aicc:.2f} | {ps}{flag}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- fitting steps


def _check_fraction(fraction: float) -> None:
    if not 0.0 < float(fraction) < 1.0:
        raise ScalingError(f"fraction must lie strictly between 0 and 1, got {fraction!r}")


def _percentile(vals: np.ndarray, level: float) -> tuple[float, float]:
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        raise ScalingError("no finite bootstrap values for this quantity")
    q = (1.0 - level) / 2.0
    return float(np.quantile(vals, q)), float(np.quantile(vals, 1.0 - q))


def _validate(n: Any, y: Any, sigma: Any, groups: Any
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    try:
        n_arr, y_arr = np.asarray(n, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ScalingError(f"n and y must be numeric: {exc}") from exc
    if n_arr.shape != y_arr.shape:
        raise ScalingError(f"n and y must have the same length (got {n_arr.size} and {y_arr.size})")
    bad = ~np.isfinite(n_arr) | ~np.isfinite(y_arr)
    if bad.any():
        raise ScalingError(f"{int(bad.sum())} non-finite value(s) in n or y at positions "
                           f"{np.flatnonzero(bad)[:10].tolist()}; drop or fix them first")
    if (n_arr <= 0).any():
        raise ScalingError(f"n must be positive (numbers of training pairs); got min {n_arr.min():g}")
    if np.unique(n_arr).size < MIN_FIT_SIZES:
        raise ScalingError(f"need at least {MIN_FIT_SIZES} distinct n values to fit and compare the forms; got "
                           f"{np.unique(n_arr).size} distinct value(s) in {n_arr.size} point(s)")
    if np.ptp(y_arr) <= 1e-12 * max(1.0, float(np.max(np.abs(y_arr)))):
        raise ScalingError(f"y is constant ({y_arr[0]:g}): there is no scaling to fit")
    sig = None
    if sigma is not None:
        sig = np.broadcast_to(np.asarray(sigma, dtype=float).ravel(), n_arr.shape).copy() \
            if np.size(sigma) == 1 else np.asarray(sigma, dtype=float).ravel()
        if sig.shape != n_arr.shape:
            raise ScalingError(f"sigma must have the length of n ({n_arr.size}), got {sig.size}")
        if not np.all(np.isfinite(sig)) or (sig <= 0).any():
            raise ScalingError("sigma must be finite and positive (standard errors)")
    grp = None if groups is None else np.asarray(groups).ravel()
    if grp is not None and grp.shape != n_arr.shape:
        raise ScalingError(f"groups must have the length of n ({n_arr.size}), got {grp.size}")
    return n_arr, y_arr, sig, grp


def _levels(y: np.ndarray, bounds: tuple[float | None, float | None] | None) -> Levels:
    """Allowed levels of the metric: ``bounds``, a missing side ten data spans beyond the data."""
    span = float(np.ptp(y))
    lo, hi = bounds if bounds is not None else (None, None)
    lo = float(np.min(y)) - _SPAN * span if lo is None else float(lo)
    hi = float(np.max(y)) + _SPAN * span if hi is None else float(hi)
    if not lo < hi:
        raise ScalingError(f"bounds must satisfy lo < hi, got {bounds!r}")
    if np.min(y) < lo or np.max(y) > hi:
        raise ScalingError(f"the data leave the metric's range {bounds!r}: min {np.min(y):g}, max {np.max(y):g}")
    return lo, hi


def _fit_form(form: ScalingForm, x: np.ndarray, y: np.ndarray, w: np.ndarray, lb: np.ndarray, ub: np.ndarray,
              starts: list[np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """The fit step: bounded least squares from several starts; (theta, weighted SSE). Raises
    RuntimeError when no start converges."""
    sw = np.sqrt(w)
    width = np.where(np.isfinite(ub - lb), ub - lb, 1.0)
    best: tuple[np.ndarray, float] | None = None
    errors = []
    for th0 in starts if starts is not None else form.starts(x, y, w, lb, ub):
        th0 = np.clip(np.asarray(th0, float), lb + 1e-9 * width, ub - 1e-9 * width)
        try:
            with np.errstate(all="ignore"):
                res = optimize.least_squares(lambda th: (form.curve(x, th) - y) * sw, th0, bounds=(lb, ub),
                                             method="trf", x_scale="jac")
        except Exception as exc:  # noqa: BLE001 - reported as a failed fit
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        cost = 2.0 * float(res.cost)
        if res.status <= 0 or not np.all(np.isfinite(res.x)) or not np.isfinite(cost):
            errors.append(f"least_squares did not converge (status {res.status}: {res.message})")
        elif best is None or cost < best[1]:
            best = (res.x, cost)
    if best is None:
        raise RuntimeError("; ".join(errors) or "no starting point")
    return best


def _criteria(fit: FitResult, sigma: np.ndarray | None, absolute: bool) -> None:
    """Log-likelihood, AIC, AICc, BIC (and the lack-of-fit p with absolute sigma) of a fit."""
    n_obs, p = fit.n_obs, len(fit.param_names)
    log_sig = float(np.sum(np.log(sigma))) if sigma is not None else 0.0
    if absolute:
        fit.k = p
        fit.loglik = -0.5 * fit.sse - log_sig - 0.5 * n_obs * math.log(2 * math.pi)
        fit.fit_p = float(stats.chi2.sf(fit.sse, n_obs - p)) if n_obs > p else math.nan
    else:
        fit.k = p + 1
        fit.loglik = -0.5 * n_obs * (math.log(2 * math.pi * max(fit.sse / n_obs, 1e-300)) + 1.0) - log_sig
    fit.aic = 2 * fit.k - 2 * fit.loglik
    fit.aicc = fit.aic + 2 * fit.k * (fit.k + 1) / (n_obs - fit.k - 1) if n_obs - fit.k - 1 > 0 else math.inf
    fit.bic = fit.k * math.log(n_obs) - 2 * fit.loglik


def _akaike_weights(fits: dict[str, FitResult]) -> tuple[str, str | None]:
    """The weights step: Akaike weights (AICc, or AIC where AICc is undefined) of the fitted forms;
    returns the criterion and the favoured form (the identified form with the largest weight)."""
    ok = [k for k, f in fits.items() if f.success]
    criterion = "AICc" if all(np.isfinite(fits[k].aicc) for k in ok) else "AIC"
    ic = np.array([fits[k].aicc if criterion == "AICc" else fits[k].aic for k in ok])
    rel = np.exp(-0.5 * (ic - ic.min()))
    for k, wt in zip(ok, rel / rel.sum()):
        fits[k].akaike_weight = float(wt)
    identified = [k for k in ok if fits[k].identified]
    return criterion, max(identified, key=lambda k: fits[k].akaike_weight) if identified else None


def _bootstrap_method(method: str, sigma: np.ndarray | None, absolute: bool, groups: np.ndarray | None,
                      n: np.ndarray) -> str:
    if method not in ("auto", "parametric", "groups", "points", "residuals"):
        raise ScalingError(f"unknown bootstrap method {method!r}")
    if method == "auto":
        if sigma is not None and absolute:
            return "parametric"
        enough = groups is not None and np.unique(groups).size >= MIN_GROUPS_FOR_BOOTSTRAP
        return "groups" if enough else "residuals"
    if method == "groups" and (groups is None or np.unique(groups).size < MIN_GROUPS_FOR_BOOTSTRAP):
        raise ScalingError(f"bootstrap='groups' needs at least {MIN_GROUPS_FOR_BOOTSTRAP} seeds (groups)")
    if method == "parametric" and not (sigma is not None and absolute):
        raise ScalingError("bootstrap='parametric' needs standard errors (sigma) with absolute_sigma=True")
    if method == "points" and all(np.sum(n == v) < 2 for v in np.unique(n)):
        raise ScalingError("bootstrap='points' needs replicate points at some n; use 'residuals'")
    return method


def _replicate(method: str, rng: np.random.Generator, fitted: np.ndarray, resid: np.ndarray, data: dict[str, Any]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One bootstrap data set (x, y, w) for one form, or None when it cannot be fitted."""
    x, y, w, n, groups = data["x"], data["y"], data["w"], data["n"], data["groups"]
    if method == "parametric":
        return x, fitted + data["sigma"] * rng.standard_normal(y.size), w
    if method == "residuals":
        return x, fitted + resid[rng.integers(0, y.size, y.size)] / np.sqrt(w), w
    if method == "groups":
        labels = np.unique(groups)
        idx = np.concatenate([np.flatnonzero(groups == g) for g in rng.choice(labels, labels.size)])
    else:
        idx = np.concatenate([rng.choice(np.flatnonzero(n == v), np.sum(n == v)) for v in np.unique(n)])
    if np.unique(x[idx]).size < 4 or np.ptp(y[idx]) == 0:
        return None
    return x[idx], y[idx], w[idx]


def _bootstrap(report: ScalingReport, thetas: dict[str, np.ndarray], boxes: dict[str, tuple[np.ndarray, np.ndarray]],
               data: dict[str, Any], seed: int) -> None:
    """The intervals step: refit every fitted form on bootstrap data sets; percentile intervals."""
    rng = np.random.default_rng(seed)
    q = (1.0 - report.level) / 2.0
    for name, theta in thetas.items():
        f, fit = report.forms[name], report.fits[name]
        fitted = f.curve(data["x"], theta)
        r = (data["y"] - fitted) * np.sqrt(data["w"])
        r = (r - r.mean()) * math.sqrt(r.size / max(r.size - f.n_params, 1))
        samples = []
        for _ in range(report.n_boot):
            rep = _replicate(report.bootstrap, rng, fitted, r, data)
            try:
                th = None if rep is None else _fit_form(f, *rep, *boxes[name], starts=[theta])[0]
            except RuntimeError:
                th = None
            pub = None if th is None else np.asarray(f.to_public(th, data["n_ref"]), float)
            if pub is not None and np.all(np.isfinite(pub)):
                samples.append(pub)
            else:
                fit.n_boot_failed += 1
        if samples:
            fit.boot_params = np.vstack(samples)
            fit.ci = {p: (float(np.quantile(fit.boot_params[:, i], q)), float(np.quantile(fit.boot_params[:, i], 1 - q)))
                      for i, p in enumerate(fit.param_names)}
        if fit.n_boot_failed > 0.1 * report.n_boot:
            fit.warnings.append(f"{fit.n_boot_failed}/{report.n_boot} bootstrap refits failed")


def _resolve_forms(forms: Sequence[str | ScalingForm]) -> dict[str, ScalingForm]:
    out: dict[str, ScalingForm] = {}
    for f in forms:
        if isinstance(f, ScalingForm):
            out[f.name] = f
        elif f in FORMS:
            out[f] = FORMS[f]
        else:
            raise ScalingError(f"unknown form {f!r}; known: {list(FORMS)}")
    if not out:
        raise ScalingError("no forms to fit")
    return out


def _fit_all(forms: dict[str, ScalingForm], data: dict[str, Any], levels: Levels, absolute: bool
             ) -> tuple[dict[str, FitResult], dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Fit every form; flag parameters on a bound."""
    x, y, w = data["x"], data["y"], data["w"]
    fits, thetas, boxes = {}, {}, {}
    for name, f in forms.items():
        fr = fits[name] = FitResult(form=name, success=False, message="", param_names=f.param_names, n_obs=y.size)
        lb, ub = boxes[name] = f.box(x, levels)
        try:
            theta, wsse = _fit_form(f, x, y, w, lb, ub)
        except Exception as exc:  # noqa: BLE001 - reported explicitly
            fr.message = f"fit failed: {exc}"
            continue
        pub = np.asarray(f.to_public(theta, data["n_ref"]), float)
        if not np.all(np.isfinite(pub)):
            fr.message = f"fit failed: non-finite parameters {pub.tolist()}"
            continue
        fr.success, fr.message = True, "converged"
        fr.params = dict(zip(f.param_names, map(float, pub)))
        fr.sse = wsse * data["w_scale"]
        _criteria(fr, data["sigma"], absolute)
        width = ub - lb
        fr.at_bound = [p for i, p in enumerate(f.param_names) if np.isfinite(width[i])
                       and min(theta[i] - lb[i], ub[i] - theta[i]) <= _BOUND_TOL * width[i]]
        thetas[name] = theta
    return fits, thetas, boxes


def fit_scaling(
    n: Any,
    y: Any,
    *,
    groups: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    bounds: tuple[float | None, float | None] | None = None,
    untrained: float | None = None,
    n_full: float | None = None,
    forms: Sequence[str | ScalingForm] = FORM_NAMES,
    n_boot: int = 500,
    bootstrap: str = "auto",
    level: float = 0.95,
    seed: int = 0,
) -> ScalingReport:
    """Fit the scaling forms to ``y(n)`` and compare them (see the module docstring).

    ``n, y``: training-pair counts and metric values (at least 4 distinct ``n``; the findings pass
    per-size means). ``groups``: seed of each point (per-seed data). ``sigma``: standard errors of
    ``y`` (absolute with ``absolute_sigma``, else relative weights). ``bounds``: the metric's range
    ``(lo, hi)`` (``None`` on a side: unbounded). ``untrained``: the untrained policy's value, from
    which :meth:`ScalingReport.n_at` measures the gain. ``n_full``: the pool size (default
    ``max(n)``). Raises :class:`ScalingError` on invalid input or when every form fails.
    """
    n_arr, y_arr, sig, grp = _validate(n, y, sigma, groups)
    if not 0.0 < level < 1.0 or n_boot < 0:
        raise ScalingError(f"need 0 < level < 1 and n_boot >= 0, got level={level}, n_boot={n_boot}")
    form_objs = _resolve_forms(forms)
    n_full_v = float(np.max(n_arr)) if n_full is None else float(n_full)
    if not (np.isfinite(n_full_v) and n_full_v > 0):
        raise ScalingError(f"n_full must be a positive number, got {n_full!r}")
    levels = _levels(y_arr, bounds)
    n_ref = float(np.exp(np.mean(np.log(np.unique(n_arr)))))
    w = np.ones_like(y_arr) if sig is None else 1.0 / sig**2
    data = {"x": n_arr / n_ref, "y": y_arr, "w": w / np.mean(w), "n": n_arr, "groups": grp, "sigma": sig,
            "n_ref": n_ref, "w_scale": 1.0 if sig is None else float(np.mean(w))}
    absolute = bool(absolute_sigma and sig is not None)
    fits, thetas, boxes = _fit_all(form_objs, data, levels, absolute)
    if not thetas:
        raise ScalingError("every form failed to fit: " + "; ".join(f"{k}: {fr.message}" for k, fr in fits.items()))
    criterion, best = _akaike_weights(fits)
    method = _bootstrap_method(bootstrap, sig, absolute, grp, n_arr) if n_boot else "none"
    report = ScalingReport(n=n_arr, y=y_arr, sigma=sig, groups=grp, fits=fits, best=best, criterion=criterion,
                           n_full=n_full_v, untrained=None if untrained is None else float(untrained),
                           bounds=levels, bootstrap=method, n_boot=n_boot, level=level, forms=form_objs)
    if n_boot:
        _bootstrap(report, thetas, boxes, data, seed)
    return report


def fit_scaling_table(df: pd.DataFrame, n_col: str = "n", y_col: str = "y", seed_col: str | None = None,
                      sigma_col: str | None = None, **kwargs: Any) -> ScalingReport:
    """:func:`fit_scaling` on the columns of a data frame (one row per point)."""
    missing = [c for c in (n_col, y_col, seed_col, sigma_col) if c is not None and c not in df]
    if missing:
        raise ScalingError(f"missing column(s) {missing}; available: {list(df.columns)}")
    return fit_scaling(df[n_col].to_numpy(), df[y_col].to_numpy(),
                       groups=None if seed_col is None else df[seed_col].to_numpy(),
                       sigma=None if sigma_col is None else df[sigma_col].to_numpy(), **kwargs)
