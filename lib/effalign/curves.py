"""Candidate scaling curves for :mod:`effalign.scaling`, one block per form.

Each :class:`ScalingForm` holds the curve in ``n`` units (``func``), the same curve on ``x = n / n_ref``
for the optimiser (``curve``), the conversion of its parameters, its bounds given the metric's allowed
levels (``box``), starting points (``starts``: a grid over the non-linear parameter with the linear ones
solved exactly) and its inverse (``solve``: the ``n`` at which it reaches a value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FORMS", "FORM_NAMES", "ScalingForm", "constant", "exp_plateau", "linear", "log_law", "power_law"]

FORM_NAMES: tuple[str, ...] = ("exp_plateau", "power_law", "log_law", "linear", "constant")
_GRID = 40

Levels = tuple[float, float]


def exp_plateau(n: Any, a: float, b: float, tau: float) -> np.ndarray:
    """Exponential plateau ``a - (a - b) exp(-n / tau)``."""
    return a - (a - b) * np.exp(-np.asarray(n, dtype=float) / tau)


def power_law(n: Any, a: float, c: float, alpha: float) -> np.ndarray:
    """Saturating power law ``a - c n^(-alpha)``."""
    return a - c * np.asarray(n, dtype=float) ** (-alpha)


def log_law(n: Any, b: float, c: float) -> np.ndarray:
    """Logarithmic law ``b + c log n`` (no plateau)."""
    return b + c * np.log(np.asarray(n, dtype=float))


def linear(n: Any, b: float, c: float) -> np.ndarray:
    """Straight line ``b + c n`` (no plateau)."""
    return b + c * np.asarray(n, dtype=float)


def constant(n: Any, b: float) -> np.ndarray:
    """Flat ``b``: no change with data."""
    return np.full(np.shape(n), float(b))


@dataclass(frozen=True)
class ScalingForm:
    """One candidate form.

    ``func(n, *params)`` is the curve in ``n`` units. The optimiser works on ``x = n / n_ref``:
    ``curve(x, theta)`` is the curve there, ``to_public(theta, n_ref)`` converts the parameters,
    ``box(x, levels)`` gives the (lower, upper) bounds of ``theta`` given the allowed levels of
    the metric, ``starts(x, y, w, lower, upper)`` starting points, and ``solve(target, params)``
    the ``n`` at which the public curve reaches ``target`` (NaN when it never does).
    """

    name: str
    formula: str
    func: Callable[..., np.ndarray]
    param_names: tuple[str, ...]
    plateau_param: str | None
    curve: Callable[[np.ndarray, np.ndarray], np.ndarray]
    to_public: Callable[[np.ndarray, float], np.ndarray]
    box: Callable[[np.ndarray, Levels], tuple[np.ndarray, np.ndarray]]
    starts: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], list[np.ndarray]]
    solve: Callable[[float, np.ndarray], float]

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def __call__(self, n: Any, params: Sequence[float] | dict[str, float]) -> np.ndarray:
        if isinstance(params, dict):
            params = [params[k] for k in self.param_names]
        return self.func(n, *params)


def _profile_starts(x: np.ndarray, y: np.ndarray, w: np.ndarray, grid: np.ndarray,
                    basis: Callable[[np.ndarray], np.ndarray], lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
    """Variable projection: for each grid value of the non-linear parameter (``theta[2]``) solve the
    two linear ones (``theta[:2]``) by weighted least squares, clip them to their bounds, and return
    the two best local minima of the profile."""
    B = basis(grid)  # (G, N, 2)
    sw = np.sqrt(w)
    coef = np.einsum("gij,gj->gi", np.linalg.pinv(B * sw[None, :, None]), np.broadcast_to(y * sw, (len(grid), len(y))))
    coef = np.clip(coef, lb[:2], ub[:2])
    sse = np.sum(w * (np.einsum("gnj,gj->gn", B, coef) - y) ** 2, axis=1)
    sse = np.where(np.isfinite(sse), sse, np.inf)
    is_min = np.ones(len(grid), dtype=bool)
    is_min[1:] &= sse[1:] <= sse[:-1]
    is_min[:-1] &= sse[:-1] <= sse[1:]
    cand = np.flatnonzero(is_min & np.isfinite(sse))
    cand = cand[np.argsort(sse[cand])][:2] if cand.size else np.array([int(np.argmin(sse))])
    return [np.array([*coef[g], grid[g]]) for g in cand]


@dataclass(frozen=True)
class _WLS:
    """Starts of a form linear in its parameters: the weighted least-squares solution."""

    design: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(self.design(x) * sw[:, None], y * sw, rcond=None)
        return [coef]


def _free1(x: np.ndarray, levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    return np.full(1, -np.inf), np.full(1, np.inf)


def _free2(x: np.ndarray, levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    return np.full(2, -np.inf), np.full(2, np.inf)


def _safe(value: float) -> float:
    return float(value) if np.isfinite(value) else math.nan


# --- exp_plateau: theta = (a, b, tau / n_ref)

def _exp_box(x: np.ndarray, levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = levels
    return np.array([lo, lo, x.min() / 10.0]), np.array([hi, hi, x.max() * 10.0])


def _exp_starts(x: np.ndarray, y: np.ndarray, w: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
    def basis(t: np.ndarray) -> np.ndarray:
        e = np.exp(-x[None, :] / t[:, None])
        return np.stack([1.0 - e, e], axis=-1)
    return _profile_starts(x, y, w, np.geomspace(lb[2] * 1.01, ub[2] / 1.01, _GRID), basis, lb, ub)


def _exp_solve(target: float, p: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return _safe(-p[2] * np.log((p[0] - target) / (p[0] - p[1])))


# --- power_law: theta = (a, c n_ref^-alpha, alpha)

def _pow_box(x: np.ndarray, levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    return np.array([levels[0], -np.inf, 0.01]), np.array([levels[1], np.inf, 5.0])


def _pow_starts(x: np.ndarray, y: np.ndarray, w: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> list[np.ndarray]:
    def basis(al: np.ndarray) -> np.ndarray:
        p = x[None, :] ** (-al[:, None])
        return np.stack([np.ones_like(p), -p], axis=-1)
    return _profile_starts(x, y, w, np.geomspace(lb[2] * 1.01, ub[2] / 1.01, _GRID), basis, lb, ub)


def _pow_solve(target: float, p: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return _safe(((p[0] - target) / p[1]) ** (-1.0 / p[2]))


def _log_solve(target: float, p: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return _safe(np.exp((target - p[0]) / p[1]))


def _linear_solve(target: float, p: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return _safe((target - p[0]) / p[1])


def _exp_curve(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return t[0] - (t[0] - t[1]) * np.exp(-x / t[2])


def _exp_public(t: np.ndarray, r: float) -> np.ndarray:
    return np.array([t[0], t[1], t[2] * r])


def _pow_curve(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return t[0] - t[1] * x ** (-t[2])


def _pow_public(t: np.ndarray, r: float) -> np.ndarray:
    return np.array([t[0], t[1] * r ** t[2], t[2]])


# --- log_law: theta = (b + c log n_ref, c); linear: theta = (b, c n_ref); constant: theta = (b,)

def _log_curve(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return t[0] + t[1] * np.log(x)


def _log_public(t: np.ndarray, r: float) -> np.ndarray:
    return np.array([t[0] - t[1] * math.log(r), t[1]])


def _log_design(x: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), np.log(x)], axis=1)


def _linear_curve(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return t[0] + t[1] * x


def _linear_public(t: np.ndarray, r: float) -> np.ndarray:
    return np.array([t[0], t[1] / r])


def _linear_design(x: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x], axis=1)


def _constant_curve(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.full(x.shape, t[0])


def _constant_public(t: np.ndarray, r: float) -> np.ndarray:
    return np.array([t[0]])


def _constant_design(x: np.ndarray) -> np.ndarray:
    return np.ones((x.size, 1))


def _never(target: float, p: np.ndarray) -> float:
    return math.nan


FORMS: dict[str, ScalingForm] = {
    "exp_plateau": ScalingForm("exp_plateau", "y = a - (a - b) exp(-n / tau)", exp_plateau, ("a", "b", "tau"), "a",
                               _exp_curve, _exp_public, _exp_box, _exp_starts, _exp_solve),
    "power_law": ScalingForm("power_law", "y = a - c n^(-alpha)", power_law, ("a", "c", "alpha"), "a",
                             _pow_curve, _pow_public, _pow_box, _pow_starts, _pow_solve),
    "log_law": ScalingForm("log_law", "y = b + c log(n)", log_law, ("b", "c"), None,
                           _log_curve, _log_public, _free2, _WLS(_log_design), _log_solve),
    "linear": ScalingForm("linear", "y = b + c n", linear, ("b", "c"), None,
                          _linear_curve, _linear_public, _free2, _WLS(_linear_design), _linear_solve),
    "constant": ScalingForm("constant", "y = b", constant, ("b",), None,
                            _constant_curve, _constant_public, _free1, _WLS(_constant_design), _never),
}
