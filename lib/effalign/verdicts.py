"""Verdict rules: the pre-registered plan of a profile, the rules, and the verdicts they give.

:class:`AnalysisPlan` holds the values a profile fixes before its grid runs (``common.analysis``);
:data:`RULES` says how each claim is decided (rendered into the methods chapter by
:func:`rules_markdown`); :func:`plateau_verdict`, :func:`subset_verdict` and :func:`sampler_verdict`
turn an :class:`~effalign.inference.Estimate` into a :class:`Verdict`, whose sentence names its rule
and carries its interval, test and the design's minimum detectable effect (MDE).
Equivalence (rules P and E) is decided by two one-sided tests at ``alpha``: the ``1 - 2 alpha``
interval inside ``±margin``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from .inference import MIN_SEEDS_BOOTSTRAP, Estimate
from .tables import fmt

__all__ = ["AnalysisPlan", "RULES", "Rule", "Verdict", "plateau_verdict", "rules_frame", "rules_markdown", "rules_values",
           "sampler_verdict", "subset_verdict"]

DEFAULT_ARM = "default"


@dataclass(frozen=True)
class AnalysisPlan:
    """The pre-registered analysis of a profile (``common.analysis``); every field is a profile key.

    ``primary_budget``: share of the pool of the sampler claim's primary contrast (and of the
    small-subset claim). ``primary_metric``: the endpoint per track (default: the track's
    ``metric``). ``alpha``: two-sided level of every test (each one-sided test of an equivalence
    uses ``alpha`` too). ``power``: the power of every minimum detectable effect.
    ``multiplicity``: adjustment of the secondary comparisons (``holm``). ``equivalence_margin``:
    the small-subset claim's margin, in metric units (a number, or one per track).
    ``plateau_delta``: the plateau claim's ``delta`` (number or per track). ``plateau_arm``: the
    scaling arm the plateau is judged in (None: the profile's default arm). ``sampler`` and
    ``baseline``: the labels of the primary contrast. ``effect``: the effect of interest of the
    primary contrast (number or per track; None: the equivalence margin), in metric units: the effect
    "seeds needed" is computed for. ``level``: level of reported intervals.
    ``n_sim``: Monte Carlo draws (n95 interval) and bootstrap replicates (ranks). A profile with a
    design takes these values from ``common.design`` (:func:`effalign.design.analysis_plan`).
    """

    primary_budget: float = 0.1
    primary_metric: Mapping[str, str] = field(default_factory=dict)
    alpha: float = 0.05
    power: float = 0.8
    multiplicity: str = "holm"
    equivalence_margin: float | Mapping[str, float] = 0.02
    plateau_delta: float | Mapping[str, float] = 0.02
    plateau_arm: str | None = None
    sampler: str = "isa"
    baseline: str = "random"
    effect: float | Mapping[str, float] | None = None
    level: float = 0.95
    n_sim: int = 2000

    @classmethod
    def from_profile(cls, analysis: Mapping[str, Any] | None, tracks: Mapping[str, Any] | None = None) -> AnalysisPlan:
        """The plan from a profile's ``common.analysis`` mapping; tracks without a ``primary_metric``
        entry use their ``metric``. Raises ValueError naming a bad key or value."""
        analysis = dict(analysis or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(analysis) - known)
        if unknown:
            raise ValueError(f"common.analysis: unknown key(s) {unknown}; known: {sorted(known)}")
        metrics = {name: t["metric"] for name, t in (tracks or {}).items() if "metric" in t}
        plan = cls(**{**analysis, "primary_metric": {**metrics, **dict(analysis.get("primary_metric") or {})}})
        plan.validate(tracks)
        return plan

    def validate(self, tracks: Mapping[str, Any] | None = None) -> None:
        checks = [(0 < self.primary_budget < 1, "primary_budget must lie in (0, 1)"),
                  (0 < self.alpha < 0.5, "alpha must lie in (0, 0.5)"),
                  (0 < self.power < 1, "power must lie in (0, 1)"),
                  (0 < self.level < 1, "level must lie in (0, 1)"),
                  (self.multiplicity == "holm", "multiplicity must be 'holm'"),
                  (self.n_sim >= 100, "n_sim must be at least 100")]
        for track in tracks or {}:
            checks += [(self.margin(track) > 0, f"equivalence_margin for {track} must be positive"),
                       (self.effect_of(track) > 0, f"effect for {track} must be positive"),
                       (self.delta(track) > 0, f"plateau_delta for {track} must be positive")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"common.analysis: {message}")

    def _per_track(self, value: float | Mapping[str, float], track: str, name: str) -> float:
        if isinstance(value, Mapping):
            if track not in value:
                raise ValueError(f"common.analysis.{name} has no value for track {track!r}")
            return float(value[track])
        return float(value)

    def metric(self, track: str) -> str:
        if track not in self.primary_metric:
            raise ValueError(f"common.analysis.primary_metric has no metric for track {track!r}")
        return str(self.primary_metric[track])

    def margin(self, track: str) -> float:
        return self._per_track(self.equivalence_margin, track, "equivalence_margin")

    def delta(self, track: str) -> float:
        return self._per_track(self.plateau_delta, track, "plateau_delta")

    def effect_of(self, track: str) -> float:
        """The primary contrast's effect of interest (the equivalence margin when none is set)."""
        return self.margin(track) if self.effect is None else self._per_track(self.effect, track, "effect")


@dataclass(frozen=True)
class Rule:
    """One verdict rule: the claim, the contrast it rests on, the test and how the verdict follows."""

    id: str
    claim: str
    contrast: str
    test: str
    decision: str


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("P", "alignment plateaus with data",
         "y(N) − y(N/2): the whole pool minus half of it, paired by seed, in the plateau arm (equal compute when run)",
         "two one-sided t-tests at α against ±δ", "holds: the (1 − 2α) interval lies inside ±δ; fails: it lies above +δ "
         "(still rising) or below −δ; otherwise not resolved"),
    Rule("E", "a subset of at most 10% aligns about as well as the whole pool",
         "ISA at the primary budget − the whole pool, paired by seed", "two one-sided t-tests at α against ±m",
         "holds (equivalent): the (1 − 2α) interval lies inside ±m; fails (worse): its upper end lies below −m; "
         "otherwise not resolved"),
    Rule("S", "ISA beats the other selectors",
         "ISA − random at the primary budget, paired by pool seed (per item, clustered by prompt, when stored)",
         "two-sided paired t-test at α, the same test both ways",
         "holds: p < α with ISA ahead; fails: p < α with ISA behind; otherwise not resolved"),
    Rule("H", "(secondary) each other sampler against random", "sampler − random at every budget, paired by seed",
         "paired t-tests, Holm-adjusted over the family", "better or worse at adjusted p < α; otherwise no difference shown"),
    Rule("R", "(secondary) ranks of the selectors", "mean of each selector at the primary budget",
         f"bootstrap over seeds, only with at least {MIN_SEEDS_BOOTSTRAP} seeds", "the probability of each rank; no rank otherwise"),
    Rule("G", "(descriptive) gain and the data it needs",
         "y(n) − the untrained policy; n95: the fewest pairs whose gain reaches 95% of the whole pool's",
         "t intervals; n95 interval by Monte Carlo from the per-size means", "no verdict"),
    Rule("F", "(descriptive) curve fits", "five forms fitted to the per-size means with their standard errors, inside "
         "the metric's range", "Akaike weights (AICc); a form with a parameter on a bound is not identified",
         "no verdict: the favoured identified form describes the curve"),
)}


def rules_frame() -> pd.DataFrame:
    """The verdict rules, one row each."""
    return pd.DataFrame([r.__dict__ for r in RULES.values()]).set_index("id")


def rules_markdown(plan: AnalysisPlan | None = None, tracks: Sequence[str] = (), source: str = "`common.analysis`") -> str:
    """The rules as a Markdown table, followed by the plan's values (the methods chapter's table);
    ``source`` says where the profile fixes them."""
    lines = ["| rule | claim | contrast | test | verdict |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.id} | {r.claim} | {r.contrast} | {r.test} | {r.decision} |" for r in RULES.values()]
    if plan is not None:
        lines += ["", rules_values(plan, tracks, source)]
    return "\n".join(lines) + "\n"


def rules_values(plan: AnalysisPlan, tracks: Sequence[str] = (), source: str = "`common.analysis`") -> str:
    """The plan's values of the rules in one sentence; ``source`` says where the profile fixes them."""
    per = "; ".join(f"{t}: {plan.metric(t)}, effect of interest {fmt(plan.effect_of(t))}, m = {fmt(plan.margin(t))}, "
                    f"δ = {fmt(plan.delta(t))}" for t in tracks)
    arm = f", plateau arm {plan.plateau_arm}" if plan.plateau_arm else ""
    return (f"Values ({source}): α = {plan.alpha:g}, power {plan.power:.0%} for every minimum "
            f"detectable effect (MDE), primary budget {plan.primary_budget:.0%} of the pool, "
            f"{plan.sampler} against {plan.baseline}, multiplicity {plan.multiplicity}{arm}"
            + (f"; {per}." if per else "."))


# ----------------------------------------------------------------------------- verdicts


#: A verdict's ``detail`` when the design leaves the claim's cells off the track (not merely unrun).
NOT_DESIGNED = "not in the design"


@dataclass
class Verdict:
    """A claim's verdict under its rule: ``verdict`` is holds / fails / not resolved, ``detail`` the
    finer reading (equivalent, worse, still rising...), ``estimate`` the contrast that decided it."""

    claim: str
    rule: str
    verdict: str
    detail: str
    contrast: str
    estimate: Estimate | None
    threshold: float | None
    plan: AnalysisPlan
    reason: str = ""
    caveats: list[str] = field(default_factory=list)
    effect: float | None = None  # the effect of interest for "seeds needed"

    @property
    def equivalence(self) -> bool:
        return self.rule in ("P", "E")

    def row(self) -> dict[str, Any]:
        e, p = self.estimate, self.plan
        lo, hi = e.interval(p.level) if e else (math.nan, math.nan)
        reach = e.equivalence_reach(p.alpha, p.power) if e and self.equivalence else math.nan
        return {"claim": self.claim, "rule": self.rule, "contrast": self.contrast,
                "estimate": e.value if e else math.nan, "lo": lo, "hi": hi,
                "p": (e.tost(self.threshold) if self.equivalence else e.p_value()) if e else math.nan,
                "margin": self.threshold if self.threshold is not None else math.nan,
                "mde": e.mde(p.alpha, p.power) if e else math.nan, "smallest margin shown": reach,
                "seeds": e.n_seeds if e else 0, "verdict": self.verdict + (f" ({self.detail})" if self.detail else "")}

    def sentence(self) -> str:
        """The verdict with its rule, estimate, interval, test and the design's power."""
        r, e, p = RULES[self.rule], self.estimate, self.plan
        head = f"{self.claim.capitalize()} (rule {r.id}: {self.contrast}): **{self.verdict}**" + \
            (f" ({self.detail})" if self.detail else "")
        if e is None or not np.isfinite(e.value):
            why = [n for n in (self.reason, *self.caveats) if n] or ["no runs"]
            return f"{head}; " + "; ".join(why) + "."
        lo, hi = e.interval(p.level)
        parts = [f"estimate {fmt(e.value, 'signed')}"]
        if e.ok:
            parts.append(f"{p.level:.0%} interval {fmt(lo, 'signed')} to {fmt(hi, 'signed')}")
            if self.equivalence:
                l2, h2 = e.interval(1 - 2 * p.alpha)
                parts.append(f"{1 - 2 * p.alpha:.0%} interval {fmt(l2, 'signed')} to {fmt(h2, 'signed')} against "
                             f"±{fmt(self.threshold)} (TOST p = {fmt(e.tost(self.threshold), 'p')})")
            else:
                parts.append(f"p = {fmt(e.p_value(), 'p')}")
        parts.append(f"{e.n_seeds} seed{'s' if e.n_seeds != 1 else ''}, {e.method}")
        text = f"{head}; " + ", ".join(parts)
        if e.ok:
            text += f". MDE at {p.power:.0%} power: {fmt(e.mde(p.alpha, p.power))}"
            if self.equivalence:
                text += f"; the smallest margin this design shows: {fmt(e.equivalence_reach(p.alpha, p.power))}"
            need = e.seeds_needed(self.effect, p.alpha, p.power) if self.effect else None
            if self.verdict == "not resolved" and self.effect and e.n_seeds >= MIN_VERDICT_SEEDS:
                # (one seed measures no run-to-run spread, so it cannot say how many seeds would do)
                if need and need <= e.n_seeds:  # powered for the effect, and it did not show
                    text += f"; these {e.n_seeds} seeds had the power to detect {fmt(self.effect)} (about {need} would)"
                    if -self.effect < lo and hi < self.effect:
                        text += f" and the interval excludes ±{fmt(self.effect)}: no effect of that size here"
                elif need:
                    text += f"; at the spread these runs show, about {need} seeds would detect {fmt(self.effect)}"
                else:
                    text += f"; more seeds alone would not detect {fmt(self.effect)} (the evaluation set is too small)"
        # a one-seed estimate's own note says what the reason already says
        note = "" if e.n_seeds < MIN_VERDICT_SEEDS and self.reason else e.note
        notes = [n for n in [self.reason, note, *self.caveats] if n]
        return text + "." + ("" if not notes else " " + " ".join(n[0].upper() + n[1:].rstrip(".") + "." for n in notes))


def _equivalence(e: Estimate, margin: float, alpha: float) -> str:
    lo, hi = e.interval(1 - 2 * alpha)
    if -margin < lo and hi < margin:
        return "inside"
    if lo > margin:
        return "above"
    if hi < -margin:
        return "below"
    return "unresolved"


#: a verdict needs the run-to-run noise measured: at least this many seeds behind its estimate
MIN_VERDICT_SEEDS = 2


def _decidable(e: Estimate) -> bool:
    """Whether an estimate may decide a verdict: it has an interval and rests on at least
    :data:`MIN_VERDICT_SEEDS` seeds (one seed's per-item interval leaves out the run-to-run noise)."""
    return e.ok and e.n_seeds >= MIN_VERDICT_SEEDS


def _reason(e: Estimate) -> str:
    if not e.ok:
        return e.note
    if e.n_seeds < MIN_VERDICT_SEEDS:
        return (f"{e.n_seeds} seed: run-to-run noise is not measured, and a verdict needs at least "
                f"{MIN_VERDICT_SEEDS} seeds")
    return ""


def plateau_verdict(e: Estimate, delta: float, plan: AnalysisPlan, *, arm: str = DEFAULT_ARM,
                    caveats: Sequence[str] = ()) -> Verdict:
    """Rule P: the plateau holds when ``y(N) - y(N/2)`` is equivalent to zero within ``±delta``."""
    outcome = _equivalence(e, delta, plan.alpha) if _decidable(e) else "unresolved"
    verdict, detail = {"inside": ("holds", "levels off"), "above": ("fails", "still rising"),
                       "below": ("fails", "falls with more data")}.get(outcome, ("not resolved", ""))
    return Verdict("plateau", "P", verdict, detail, f"y(N) − y(N/2), {arm} arm", e, delta, plan,
                   reason=_reason(e), caveats=list(caveats), effect=delta)


def subset_verdict(e: Estimate, margin: float, plan: AnalysisPlan, caveats: Sequence[str] = ()) -> Verdict:
    """Rule E: the subset is equivalent to the whole pool within ``±margin``, worse, or not resolved."""
    outcome = _equivalence(e, margin, plan.alpha) if _decidable(e) else "unresolved"
    verdict, detail = {"inside": ("holds", "equivalent"), "below": ("fails", "worse"),
                       "above": ("holds", "better")}.get(outcome, ("not resolved", ""))
    return Verdict("small subset", "E", verdict, detail,
                   f"{plan.sampler} at {plan.primary_budget:.0%} − whole pool", e, margin, plan,
                   reason=_reason(e), caveats=list(caveats), effect=margin)


def sampler_verdict(e: Estimate, plan: AnalysisPlan, effect: float | None = None) -> Verdict:
    """Rule S: one two-sided test of the primary contrast, the same both ways."""
    p = e.p_value()
    verdict, detail = "not resolved", ""
    if _decidable(e) and np.isfinite(p) and p < plan.alpha:
        verdict, detail = ("holds", f"{plan.sampler} ahead") if e.value > 0 else ("fails", f"{plan.sampler} behind")
    return Verdict("sampler", "S", verdict, detail, f"{plan.sampler} − {plan.baseline} at {plan.primary_budget:.0%}",
                   e, None, plan, reason=_reason(e), effect=effect)
