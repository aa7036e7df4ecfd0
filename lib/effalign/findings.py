"""The paper's claims judged by rules written down before the grid runs, and the sentences that say so.

The rules and their values (:mod:`effalign.verdicts`: :data:`RULES`, the profile's
``common.analysis`` as an :class:`AnalysisPlan`) decide every verdict:

- **P, plateau**: ``y(N) - y(N/2)``, the whole pool minus half of it, paired by seed, in the profile's
  plateau arm (equal compute when it has one); two one-sided tests against ``±delta``;
- **E, small subset**: ISA at the primary budget minus the whole pool, paired by seed; two one-sided
  tests against ``±margin``: equivalent, worse or not resolved;
- **S, sampler**: ISA minus random at the primary budget, paired by seed; one two-sided test, the
  same both ways; **H**: every other sampler against random, Holm-adjusted; **R**: ranks only from a
  bootstrap over at least ten seeds;
- **G** and **F** are descriptive: the gain over the untrained policy with ``n95`` and the saving,
  and the curve fits (:mod:`effalign.scaling`) on the per-size means.

Every verdict sentence names its rule and carries its interval, p-value and the design's minimum
detectable effect at the plan's power; "not resolved" says how many seeds would resolve it. This
module reads frames (:mod:`effalign.tables`); it never trains and never imports the training code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .inference import MIN_SEEDS_BOOTSTRAP, Estimate, rank_distribution
from .scaling import ScalingError, ScalingReport, fit_scaling
from .tables import (METRIC_RANGES, cell_runs, contrast, cost_table, device_label, fmt, length_profile_frame,
                     metric_baseline, paired_differences, runs_frame, sampler_label, selection_cost_frame, summarize)
from .verdicts import (DEFAULT_ARM, RULES, AnalysisPlan, Rule, Verdict, plateau_verdict, rules_frame, rules_markdown,
                       sampler_verdict, subset_verdict)

__all__ = [
    "AnalysisPlan", "RULES", "Rule", "ScalingOutcome", "TrackFindings", "TrackRuns", "Verdict",
    "claim_statements", "closing_statements", "cost_statements", "data_or_compute", "device_statements",
    "headline_frame", "length_split_statements", "length_statements", "means_frame", "paired_statements",
    "plateau_finding", "plateau_verdict", "rules_frame", "rules_markdown", "sampler_verdict", "saturation",
    "scaling_outcome", "selector_frame", "selector_statements", "subset_verdict", "track_findings",
    "truncation_statements",
]

# ----------------------------------------------------------------------------- descriptive scaling


@dataclass
class ScalingOutcome:
    """Descriptive curve fits (rule F) of one metric on the per-size means, or why there are none."""

    metric: str
    report: ScalingReport | None = None
    reason: str = ""
    sizes: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    arm: str = ""  #: the training arm whose runs were fitted ("" when unnamed)

    @property
    def ok(self) -> bool:
        return self.report is not None

    @property
    def subject(self) -> str:
        """The metric, with the arm when one is named (a track's findings fit one curve per arm)."""
        return f"{self.metric} ({self.arm} arm)" if self.arm else self.metric

    def table(self) -> pd.DataFrame:
        """One row per form (empty without a fit)."""
        if not self.ok:
            return pd.DataFrame()
        cols = ["favoured", "identified", "akaike_weight", "aicc", "fit_p", "plateau", "a_lo", "a_hi", "n95", "note"]
        t = self.report.to_frame()
        return t[[c for c in cols if c in t]]

    def verdict(self) -> str:
        """Is a plateau identified? (descriptive, rule F)"""
        if not self.ok:
            return f"No curve fit for {self.subject}: {self.reason.rstrip('.')}."
        r = self.report
        lo, hi = r.bounds
        missing = [f"{k} is not identified inside [{lo:g}, {hi:g}] ({', '.join(r.fits[k].at_bound)} at a bound)"
                   for k in ("exp_plateau", "power_law") if k in r.fits and r.fits[k].success and not r.fits[k].identified]
        if r.best is None:
            return f"For {self.subject} no form is identified by the data (rule F): " + "; ".join(missing) + "."
        w = r.fits[r.best].akaike_weight
        if r.forms[r.best].plateau_param is not None:
            return (f"For {self.subject} the favoured identified form is {r.best} (Akaike weight {w:.3f}, rule F): "
                    f"a plateau at {fmt(r.plateau())}.")
        head = f"For {self.subject} no plateau is identified (rule F): the favoured identified form is {r.best} " \
               f"(Akaike weight {w:.3f}), which has no plateau"
        return head + ("; " + "; ".join(missing) if missing else "") + "."

    def statements(self) -> list[str]:
        """Weights of every form, lack of fit, and the notes."""
        if not self.ok:
            return [self.verdict()]
        r = self.report
        weights = ", ".join(f"{k} {f.akaike_weight:.3f}" + ("" if f.identified else " (not identified)")
                            for k, f in sorted(r.fits.items(), key=lambda kv: -kv[1].akaike_weight) if f.success)
        out = [self.verdict(), f"Akaike weights ({r.criterion}, {len(r.n)} per-size means): {weights}."]
        if r.best and np.isfinite(r.fits[r.best].fit_p):
            out.append(f"Lack of fit of {r.best}: chi-square p = {fmt(r.fits[r.best].fit_p, 'p')}.")
        return out + self.notes


def _size_means(frame: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """Per training-set size: seeds, mean and the standard error from the variance pooled over sizes."""
    d = frame[["n_train", metric]].dropna()
    g = d.groupby("n_train")[metric]
    sizes = pd.DataFrame({"seeds": g.count(), "mean": g.mean()})
    dof = int((sizes["seeds"] - 1).sum())
    pooled = float(((d[metric] - g.transform("mean")) ** 2).sum() / dof) if dof else 0.0
    sizes["se"] = np.sqrt(pooled / sizes["seeds"]) if pooled > 0 else np.nan
    notes = [] if pooled > 0 else ["One seed per size (or no spread): the noise is estimated from the fit's residuals."]
    return sizes.reset_index(), notes


def scaling_outcome(frame: pd.DataFrame | None, metric: str, *, n_boot: int = 200, seed: int = 0,
                    level: float = 0.95, arm: str = "") -> ScalingOutcome:
    """Fit the scaling forms to the per-size means of ``metric`` with their standard errors, inside the
    metric's range (:data:`effalign.tables.METRIC_RANGES`); ``arm`` names the runs' training arm in the
    sentences. Never raises for data reasons."""
    if frame is None or len(frame) == 0:
        return ScalingOutcome(metric, reason="no runs are stored for this grid yet", arm=arm)
    if metric not in frame:
        return ScalingOutcome(metric, reason=f"the runs do not record {metric!r}", arm=arm)
    sizes, notes = _size_means(frame, metric)
    pool = float(frame["pool_size"].max()) if "pool_size" in frame else math.nan
    untrained = metric_baseline(frame, metric)
    sigma = sizes["se"].to_numpy() if sizes["se"].notna().all() else None
    try:
        rep = fit_scaling(sizes["n_train"], sizes["mean"], sigma=sigma, absolute_sigma=sigma is not None,
                          bounds=METRIC_RANGES.get(metric), untrained=untrained if np.isfinite(untrained) else None,
                          n_full=pool if np.isfinite(pool) else None, n_boot=n_boot, seed=seed, level=level)
    except ScalingError as err:
        return ScalingOutcome(metric, reason=str(err), sizes=sizes, arm=arm)
    return ScalingOutcome(metric, report=rep, sizes=sizes, notes=notes, arm=arm)


# ----------------------------------------------------------------------------- gain and saturation (rule G)


def _first_crossing(n: np.ndarray, share: np.ndarray, target: float) -> np.ndarray:
    """Per row of ``share`` (sizes in columns), the first ``n`` at which it reaches ``target``,
    interpolated linearly in ``log n`` (NaN where it never does)."""
    share = np.atleast_2d(share)
    hit = share >= target
    i = hit.argmax(axis=1)
    prev = np.maximum(i - 1, 0)
    rows = np.arange(share.shape[0])
    lo, hi = share[rows, prev], share[rows, i]
    with np.errstate(all="ignore"):
        t = np.where(hi > lo, (target - lo) / (hi - lo), 1.0)
    log_n = np.log(n[prev]) + t * (np.log(n[i]) - np.log(n[prev]))
    return np.where(hit.any(axis=1), np.where(i == 0, n[0], np.exp(log_n)), np.nan)


def saturation(frame: pd.DataFrame | None, metric: str, plan: AnalysisPlan, *, items: pd.DataFrame | None = None,
               share: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Rule G: the gain over the untrained policy at each size (t intervals), ``n95`` (the fewest pairs
    whose gain reaches ``share`` of the whole pool's, interpolated in log n between the measured
    sizes), the saving ``1 - n95 / N`` and their intervals (Monte Carlo from the per-size t
    distributions, which treats the sizes as independent). Keys: ``gains`` (frame), ``full_gain``
    (:class:`Estimate`), ``n95``, ``n95_lo``, ``n95_hi``, ``saving``, ``saving_lo``, ``saving_hi``,
    ``n_full``, ``sentence``."""
    out: dict[str, Any] = {"metric": metric, "gains": pd.DataFrame(), "full_gain": None, "n_full": math.nan,
                           **{k: math.nan for k in ("n95", "n95_lo", "n95_hi", "saving", "saving_lo", "saving_hi")}}
    if frame is None or len(frame) == 0 or metric not in frame:
        out["sentence"] = f"No runs with {metric} are stored yet."
        return out
    cells = sorted({(lab, f) for lab, f in zip(frame["label"], frame["fraction"]) if lab in ("random", "full")},
                   key=lambda c: c[1])
    ests = {c: contrast(frame, metric, c, None, items=items) for c in cells}
    n = np.array([float(cell_runs(frame, c, metric)["n_train"].mean()) for c in cells])
    gains = pd.DataFrame({"fraction": [c[1] for c in cells], "n_train": n, "gain": [e.value for e in ests.values()],
                          "lo": [e.interval(plan.level)[0] for e in ests.values()],
                          "hi": [e.interval(plan.level)[1] for e in ests.values()],
                          "seeds": [e.n_seeds for e in ests.values()]})
    out["gains"] = gains
    full = ests.get(("full", 1.0))
    if full is None:
        out["sentence"] = "The whole-pool runs are not stored, so there is no full-data gain to saturate."
        return out
    out.update(full_gain=full, n_full=float(n[-1]))
    lo, hi = full.interval(plan.level)
    seeds = f"{full.n_seeds} seed" + ("s" if full.n_seeds != 1 else "")
    gain_text = f"the whole pool's gain in {metric} over the untrained policy is {fmt(full.value, 'signed')}" + \
        (f" ({plan.level:.0%} interval {fmt(lo, 'signed')} to {fmt(hi, 'signed')}, {seeds})" if full.ok else "")
    if not (full.ok and full.value > 0 and full.p_value() < plan.alpha):
        out["sentence"] = f"Rule G: {gain_text}; no gain is shown, so n95 and the saving are undefined."
        return out
    values = gains["gain"].to_numpy()
    out["n95"] = float(_first_crossing(n, values / values[-1], share)[0])
    rng = np.random.default_rng(seed)
    se = np.array([e.se if e.ok else 0.0 for e in ests.values()])
    df = np.array([e.df if e.ok else 1.0 for e in ests.values()])
    draws = values + se * rng.standard_t(df, size=(plan.n_sim, len(cells)))
    draws = draws[draws[:, -1] > 0]
    sims = _first_crossing(n, draws / draws[:, -1:], share)
    sims = sims[np.isfinite(sims)]
    q = (1 - plan.level) / 2
    out["n95_lo"], out["n95_hi"] = np.quantile(sims, [q, 1 - q]) if sims.size else (math.nan, math.nan)
    out["saving"], out["saving_lo"], out["saving_hi"] = (1 - out["n95"] / n[-1], 1 - out["n95_hi"] / n[-1],
                                                         1 - out["n95_lo"] / n[-1])
    out["sentence"] = (f"Rule G: {gain_text}. Random subsets reach {share:.0%} of it from about "
                       f"{fmt(out['n95'], 'int')} pairs (interval {fmt(out['n95_lo'], 'int')} to {fmt(out['n95_hi'], 'int')} "
                       f"of {fmt(n[-1], 'int')}): a saving of {fmt(out['saving'], 'pct')} (interval "
                       f"{fmt(out['saving_lo'], 'pct')} to {fmt(out['saving_hi'], 'pct')}).")
    return out


# ----------------------------------------------------------------------------- one track


@dataclass
class TrackRuns:
    """The runs of one track as frames: ``scaling`` per arm, the sampler grid, the whole-pool runs at
    the sampler grid's seeds and training (``full``), and the per-item outcomes of the track's
    primary metric (``items``, :func:`effalign.tables.items_frame`; empty when none are stored)."""

    scaling: dict[str, pd.DataFrame]
    samplers: pd.DataFrame
    full: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    records: list[dict[str, Any]] = field(default_factory=list)  # every stored record of the track's grids
    grids: dict[str, pd.DataFrame] = field(default_factory=dict)  # the stored runs of each grid, by grid name

    def primary_records(self) -> list[dict[str, Any]]:
        """The records of the sampler grid and the whole pool (the primary arm's contrasts)."""
        keys = set().union(*[set(x["key"]) for x in (self.samplers, self.full) if x is not None and len(x)])
        return [r for r in self.records if r["key"] in keys]

    def all(self) -> pd.DataFrame:
        frames = [f for f in [*self.scaling.values(), self.samplers, self.full] if f is not None and len(f)]
        return pd.concat(frames, ignore_index=True).drop_duplicates("key") if frames else pd.DataFrame()


@dataclass
class TrackFindings:
    """Everything the findings say about one track (see :func:`track_findings`)."""

    track: str
    metric: str
    plan: AnalysisPlan
    runs: int
    untrained: float
    scaling: dict[str, ScalingOutcome]
    saturation: dict[str, dict[str, Any]]
    plateau: dict[str, Verdict]
    plateau_arm: str
    subset: Verdict
    sampler: Verdict
    secondary: pd.DataFrame
    ranks: pd.DataFrame | None
    ranks_note: str
    means: pd.DataFrame
    equal_compute: list[str] = field(default_factory=list)  # the scaling arms with an equal compute budget for every size
    exact_steps: list[str] = field(default_factory=list)  # those of them with exactly the same steps for every size
    pilot: Any = None  # the design's pilot rule (effalign.design.PilotRule), when the profile has a design

    @property
    def claims(self) -> list[Verdict]:
        return [self.plateau[self.plateau_arm], self.subset, self.sampler]

    def data_or_compute(self) -> str:
        """Is the fixed-epoch (paper's) plateau contrast a data effect or a compute effect here? Read off
        rule P in the equal-steps arm against the same contrast in the fixed-epoch arm."""
        return data_or_compute(self.plateau, self.equal_compute, self.exact_steps)


def _plateau_arm(plan: AnalysisPlan, arms: Sequence[str]) -> str:
    if plan.plateau_arm:
        return plan.plateau_arm
    return DEFAULT_ARM if DEFAULT_ARM in arms or not arms else arms[0]


def plateau_finding(frame: pd.DataFrame | None, arm: str, track: str, plan: AnalysisPlan, *,
                    equal_compute: bool = False, items: pd.DataFrame | None = None) -> Verdict:
    """Rule P on one scaling arm's runs: ``y(N) - y(N/2)`` paired by seed (per item when stored)."""
    metric, delta = plan.metric(track), plan.delta(track)
    caveats = [] if equal_compute else [
        "the arm trains a fixed number of epochs, so the whole pool also gets more optimiser steps than half of it: "
        "this contrast mixes data with compute"]
    empty = Estimate(math.nan, math.nan, math.nan, 0, "paired by seed")
    if frame is None or len(frame) == 0:
        return plateau_verdict(empty, delta, plan, arm=arm, caveats=[f"no runs of the {arm} arm are stored"])
    halves = sorted({f for f in frame["fraction"] if abs(f - 0.5) < 0.01})
    if not halves:
        return plateau_verdict(empty, delta, plan, arm=arm, caveats=["the grid has no run at half the pool"])
    est = contrast(frame, metric, ("full", 1.0), ("random", halves[0]), items=items)
    return plateau_verdict(est, delta, plan, arm=arm, caveats=caveats)


def _ranks(frame: pd.DataFrame, metric: str, fraction: float, plan: AnalysisPlan) -> tuple[pd.DataFrame | None, str]:
    """Rule R: probability of rank 1 and mean rank of each selector, from a bootstrap over seeds."""
    at = frame[np.isclose(frame["fraction"], fraction, atol=1e-6)]
    if at.empty:
        return None, f"no sampler runs at {fraction:.0%} of the pool"
    wide = at.pivot_table(index="seed", columns="label", values=metric, aggfunc="first").dropna()
    if len(wide) < MIN_SEEDS_BOOTSTRAP:
        return None, (f"ranks are not reported (rule R): a bootstrap over seeds needs at least {MIN_SEEDS_BOOTSTRAP} "
                      f"seeds with every selector, {len(wide)} stored")
    probs = rank_distribution(wide.to_numpy(), n_boot=plan.n_sim)
    ranks = pd.DataFrame({"label": wide.columns, "mean": wide.mean().to_numpy(), "P(rank 1)": probs[:, 0],
                          "mean rank": probs @ np.arange(1, probs.shape[1] + 1)})
    return ranks.sort_values("mean rank").reset_index(drop=True), ""


def track_findings(track: str, plan: AnalysisPlan, runs: TrackRuns, *, n_boot: int = 200,
                   outcomes: Mapping[str, ScalingOutcome] | None = None, equal_compute: Sequence[str] = (),
                   primary_arm: str | None = None, exact_steps: Sequence[str] = ()) -> TrackFindings:
    """Judge the three claims on one track (rules P, E, S), with the secondary comparisons (H, R) and
    the descriptive gain and fits (G, F). ``outcomes``: the scaling fits per arm when already made;
    ``equal_compute``: the arms that give every size the same optimiser steps; ``primary_arm``: the
    arm of the sampler grid and the whole pool (a design's primary arm; None: the profile's training);
    ``exact_steps``: the equal-compute arms of exactly the same steps (read first by :func:`data_or_compute`).
    Rules E and S read only the sampler grid and the whole pool (``runs.samplers`` and ``runs.full``),
    never another arm's runs of the same cell."""
    metric, items = plan.metric(track), runs.items
    frame = runs.all() if runs.full is None else pd.concat(
        [f for f in (runs.samplers, runs.full) if f is not None and len(f)] or [runs.samplers],
        ignore_index=True).drop_duplicates("key")
    untrained = metric_baseline(runs.all(), metric)
    outcomes = dict(outcomes or {})
    scaling = {arm: replace(o, arm=o.arm or arm) if (o := outcomes.get(arm)) is not None
               else scaling_outcome(f, metric, n_boot=n_boot, level=plan.level, arm=arm)
               for arm, f in runs.scaling.items()}
    arm = _plateau_arm(plan, list(runs.scaling))
    plateau = {a: plateau_finding(f, a, track, plan, equal_compute=a in equal_compute, items=items)
               for a, f in runs.scaling.items()}
    if arm not in plateau:
        plateau[arm] = plateau_finding(None, arm, track, plan, equal_compute=arm in equal_compute, items=items)
    budget, label = plan.primary_budget, plan.sampler
    subset_est = contrast(frame, metric, (label, budget), ("full", 1.0), items=items)
    compute = [] if not len(cell_runs(frame, (label, budget), metric)) or primary_arm in equal_compute else [
        "the subset and the whole pool train the same number of epochs, so the subset also gets fewer optimiser steps"]
    subset = subset_verdict(subset_est, plan.margin(track), plan, caveats=compute)
    sampler = sampler_verdict(contrast(frame, metric, (label, budget), (plan.baseline, budget), items=items), plan,
                              effect=plan.effect_of(track))
    secondary = paired_differences(runs.samplers, metric, baseline=plan.baseline, items=items, level=plan.level,
                                   alpha=plan.alpha, power=plan.power, primary=(label, budget))
    ranks, ranks_note = _ranks(runs.samplers, metric, budget, plan) if len(runs.samplers) else (None, "no sampler runs")
    return TrackFindings(track=track, metric=metric, plan=plan, runs=len(runs.all()), untrained=untrained, scaling=scaling,
                         saturation={a: saturation(f, metric, plan, items=items) for a, f in runs.scaling.items()},
                         plateau=plateau, plateau_arm=arm, subset=subset, sampler=sampler, secondary=secondary,
                         ranks=ranks, ranks_note=ranks_note, means=summarize(frame, metric, level=plan.level),
                         equal_compute=[a for a in runs.scaling if a in equal_compute],
                         exact_steps=[a for a in runs.scaling if a in exact_steps])


# ----------------------------------------------------------------------------- sentences and tables


def data_or_compute(plateau: Mapping[str, Verdict], equal_compute: Sequence[str], exact_steps: Sequence[str] = ()
                    ) -> str:
    """One sentence: whether y(N) − y(N/2) under fixed epochs (more data *and* more steps) is matched at
    equal steps (more data only: a data effect) or vanishes there (a compute effect), by rule P in each
    arm; "not resolved" when either contrast is. The equal side is an arm of exactly the same steps
    (``exact_steps``) where there is one, else the first equal-compute arm (an equal cap of steps)."""
    equal = [a for a in plateau if a in equal_compute]
    equal.sort(key=lambda a: a not in exact_steps)
    fixed = [a for a in plateau if a not in equal_compute]
    if not equal or not fixed:
        return "Data or compute: the design has no pair of equal-steps and fixed-epoch arms to compare."
    e, f = plateau[equal[0]], plateau[fixed[0]]
    at_equal = "at equal steps" if equal[0] in exact_steps or not exact_steps else "under an equal cap of steps"
    est = [v.estimate for v in (e, f)]
    if any(x is None or not x.ok for x in est):
        missing = [a for a, x in zip((equal[0], fixed[0]), est) if x is None or not x.ok]
        return (f"Data or compute: not resolved; the contrast y(N) − y(N/2) has no interval yet in the "
                f"{' and '.join(missing)} arm{'s' if len(missing) > 1 else ''}.")
    head = (f"Data or compute: y(N) − y(N/2) is {fmt(f.estimate.value, 'signed')} with fixed epochs ({fixed[0]}: "
            f"{f.verdict}{', ' + f.detail if f.detail else ''}) and {fmt(e.estimate.value, 'signed')} {at_equal} "
            f"({equal[0]}: {e.verdict}{', ' + e.detail if e.detail else ''})")
    rising_fixed, rising_equal = f.detail == "still rising", e.detail == "still rising"
    if rising_fixed and e.verdict == "holds":
        return head + ": the fixed-epoch rise goes with the extra optimiser steps, a compute effect here."
    if rising_fixed and rising_equal:
        return head + ": the rise remains at equal compute, a data effect here."
    if f.verdict == "holds" and e.verdict == "holds":
        return head + ": both level off; neither data nor compute adds measurably beyond half the pool."
    return head + ": not resolved (rule P does not decide both arms)."


def claim_statements(f: TrackFindings) -> list[str]:
    """The three claims on one track, each with its rule, estimate, interval, test and MDE."""
    out = [v.sentence() for v in f.claims]
    others = [v.sentence() for a, v in f.plateau.items() if a != f.plateau_arm]
    extra = [f.data_or_compute()] if len(f.plateau) > 1 and f.equal_compute else []
    return out + [f"Also: {s}" for s in others] + extra + ([f.pilot.sentence()] if f.pilot is not None else [])


def headline_frame(findings: Mapping[str, TrackFindings]) -> pd.DataFrame:
    """One row per track and claim: rule, contrast, estimate with interval, p (TOST p for rules P and
    E), margin, MDE, seeds and verdict (the README's and the findings chapter's headline table)."""
    rows = [{"track": t, "metric": f.metric, **v.row()} for t, f in findings.items() for v in f.claims]
    return pd.DataFrame(rows)


def means_frame(findings: Mapping[str, TrackFindings]) -> pd.DataFrame:
    """Per track: the untrained policy, the whole pool, and the baseline and the sampler at each budget."""
    rows = []
    for t, f in findings.items():
        m = f.means
        full = m[m["label"] == "full"]
        row: dict[str, Any] = {"track": t, "metric": f.metric, "untrained": f.untrained,
                               "whole pool": float(full["mean"].iloc[0]) if len(full) else math.nan}
        for lab in (f.plan.baseline, f.plan.sampler):
            for _, r in m[(m["label"] == lab) & (m["fraction"] < 1)].iterrows():
                row[f"{lab} at {r['fraction']:.0%}"] = r["mean"]
        rows.append(row)
    return pd.DataFrame(rows)


def paired_statements(paired: pd.DataFrame, metric: str, label: str = "isa", baseline: str = "random",
                      level: float = 0.95) -> list[str]:
    """Sentences on ``label`` minus ``baseline`` at each budget (:func:`effalign.tables.paired_differences`)."""
    rows = paired[paired["label"] == label] if paired is not None and len(paired) else pd.DataFrame()
    if rows.empty:
        return [f"No paired runs of {label} and {baseline} are stored yet."]
    out = []
    for _, r in rows.iterrows():
        head = f"At {r['fraction']:.0%} of the pool, {label} minus {baseline} in {metric}: {fmt(r['mean_diff'], 'signed')}"
        if not np.isfinite(r["lo"]):
            out.append(f"{head} over {r['n_seeds']} seed(s); {r['note'] or 'no interval'}.")
            continue
        test = "p" if r["family"] == "primary" else "Holm-adjusted p"
        out.append(f"{head} ({level:.0%} interval {fmt(r['lo'], 'signed')} to {fmt(r['hi'], 'signed')}; {test} = "
                   f"{fmt(r['p_adj'], 'p')}; MDE {fmt(r['mde'])}; {r['n_seeds']} seeds, {r['method']}).")
    return out


def selector_statements(summary: pd.DataFrame, metric: str, ranks_note: str = "") -> list[str]:
    """For each budget, the selector with the highest mean (not a rank: see rule R) and its run time."""
    if summary is None or len(summary) == 0:
        return [f"No sampler runs with {metric} are stored yet."]
    out = []
    for frac, g in summary.groupby("fraction", sort=True):
        g = g.dropna(subset=["mean"]).sort_values("mean", ascending=False)
        if g.empty:
            continue
        best = g.iloc[0]
        out.append(f"At {frac:.0%} of the pool the highest mean {metric} is {best['label']} ({fmt(best['mean'])} over "
                   f"{best['n']} seed(s), {fmt(best['seconds'], 'int')} s per run)"
                   + (f", ahead of {g.iloc[1]['label']} ({fmt(g.iloc[1]['mean'])})" if len(g) > 1 else "") + ".")
    return (out or [f"No sampler runs with {metric} are stored yet."]) + ([ranks_note[0].upper() + ranks_note[1:] + "."]
                                                                         if ranks_note else [])


def device_statements(records: Sequence[Mapping[str, Any]], current: Any = None) -> list[str]:
    """Which device produced the records (from their provenance), and the device of this session;
    a truncation note when their tokenisation cut many answer tokens (:func:`truncation_statements`)."""
    if not records:
        return ["No runs of this comparison are stored yet (the chapter trains them when `run_missing` is true "
                "and its store is one of your own: `python -m effalign book --profile PROFILE`)."]
    out = [f"The runs below were produced on {', '.join(sorted({device_label(r) for r in records}))} (from the "
           "records' provenance)."]
    if current is not None:
        kind = getattr(current, "type", str(current))
        out.append(f"This build of the notebook ran on {'a CUDA GPU' if kind == 'cuda' else 'the CPU'}; "
                   "stored runs are read, not recomputed.")
    return out + truncation_statements(records)


def truncation_statements(records: Any, threshold: float = 0.25) -> list[str]:
    """A sentence when the runs' tokenisation cut more than ``threshold`` of the completion tokens
    (records that counted them: ``extra.truncation.completion_tokens``), naming the setting;
    ``records``: records, or lists and mappings of them."""

    def flat(value: Any) -> list[Any]:
        if isinstance(value, Mapping) and "key" not in value:
            return [r for v in value.values() for r in flat(v)]
        if isinstance(value, (list, tuple)):
            return [r for v in value for r in flat(v)]
        return [value]

    cut = total = 0
    heavy = set()
    for rec in {r["key"]: r for r in flat(records) if isinstance(r, Mapping) and "key" in r}.values():
        trunc = ((rec.get("extra") or {}).get("truncation") or {})
        if trunc.get("completion_tokens"):
            cut, total = cut + trunc["completion_tokens_cut"], total + trunc["completion_tokens"]
            if trunc["completion_tokens_cut"] > threshold * trunc["completion_tokens"]:
                heavy.add(rec["spec"].get("train", {}).get("max_completion_tokens", "the default"))
    if total and cut > threshold * total:
        return [f"The tokenisation cut {cut / total:.0%} of the completion tokens these runs trained on "
                f"(max_completion_tokens: {', '.join(map(str, sorted(heavy, key=str)))}): the policy learned from "
                "the first tokens of each answer only. Raise `train.max_completion_tokens` in the profile to keep more."]
    return []


def cost_statements(records: Sequence[Mapping[str, Any]], metric: str, full_label: str = "full") -> list[str]:
    """Each subset run against the whole-pool run: share of pairs, device-hours and tokens, and the metric."""
    cost = cost_table(records)
    if cost.empty or full_label not in set(cost["label"]):
        return ["The full-pool run is not stored yet, so there is nothing to compare with."]
    full = cost[cost["label"] == full_label].iloc[0]
    fm = next(r["metrics"] for r in records if r["spec"]["sampler"] == full_label)
    out = [f"The full pool ({fmt(full['n_train'], 'int')} pairs) took {fmt(full['device_hours'])} device-hours for "
           f"the whole run (selection, training and evaluation; {fmt(full['train_s'], 'int')} s of training, "
           f"{fmt(full['tokens'] or 0, 'int')} tokens, peak memory {fmt(full['peak_gib'])} GiB) and reached {metric} "
           f"{fmt(fm.get(metric))}."]
    for rec in records:
        if rec["spec"]["sampler"] == full_label:
            continue
        row = cost[cost["label"] == sampler_label(rec["spec"]["sampler"], rec["spec"].get("sampler_params"))].iloc[0]
        hours = row["device_hours"] / full["device_hours"] if full["device_hours"] else math.nan
        train = row["train_s"] / full["train_s"] if full["train_s"] else math.nan
        tokens = (row["tokens"] or 0) / full["tokens"] if full["tokens"] else math.nan
        out.append(f"{row['label']} on {fmt(row['n_train'], 'int')} pairs ({fmt(row['n_train'] / full['n_train'], 'pct')} "
                   f"of the pool) took {fmt(hours, 'pct')} of the whole pool's device-hours (the evaluation, the same "
                   f"for both, included), {fmt(train, 'pct')} of its training seconds and {fmt(tokens, 'pct')} of its "
                   f"training tokens, and reached {metric} {fmt(rec['metrics'].get(metric))}.")
    return out


def length_statements(frame: pd.DataFrame, baseline: str, tolerance: float = 0.15) -> list[str]:
    """The selectors (of :func:`selector_frame`) whose subsets' chosen answers differ in mean length from
    their pools' by ``tolerance`` (a share) or more, so that a selector that wins by picking shorter or
    longer answers shows as such; the baseline's subsets are given for comparison."""
    def profile(r: Any) -> str:
        return (f"{fmt(r['chosen_chars'])} characters, {fmt(r['chosen vs pool'])} times the pool's, chosen − rejected "
                f"{fmt(r['chosen_minus_rejected'], 'signed')} characters")

    base = frame[frame["label"] == baseline]
    versus = f" ({baseline}'s subsets: {profile(base.iloc[0])})" if len(base) else ""
    out = []
    for _, r in frame.iterrows():
        ratio = float(r["chosen vs pool"])
        if r["label"] in ("full", baseline) or not np.isfinite(ratio) or abs(ratio - 1) < tolerance:
            continue
        out.append(f"{r['label']} picks {'shorter' if ratio < 1 else 'longer'} chosen answers than its pools hold: "
                   f"{profile(r)}{versus}. Its result above may partly be a length effect.")
    return out or [f"No selector's subsets differ from their pools in chosen-answer length by {tolerance:.0%} or more."]


def length_split_statements(split: Mapping[str, Estimate], groups: Mapping[str, Sequence[str]], sampler: str,
                            baseline: str, *, level: float = 0.95, alpha: float = 0.05, power: float = 0.8
                            ) -> list[str]:
    """Exploratory, not a rule: ``sampler`` − ``baseline`` on the held-out pairs whose chosen answer is
    shorter than the rejected one and on those where it is longer, and the difference between the two
    (:func:`effalign.tables.item_group_contrasts` over ``groups`` of
    :func:`effalign.notebook.eval_length_groups`). A selector that teaches "shorter is better" gains on
    the first and loses on the second."""
    if not groups:
        return ["No split by answer length: this track's metric scores answers to prompts, not held-out pairs."]
    if len(split) < 3:
        return ["No split by answer length: the runs of the primary contrast stored no per-item outcomes."]
    short, long_ = groups
    both = f"{short} − {long_}"  # the name item_group_contrasts gives the difference

    def text(e: Estimate) -> str:
        lo, hi = e.interval(level)
        return f"{fmt(e.value, 'signed')} ({level:.0%} interval {fmt(lo, 'signed')} to {fmt(hi, 'signed')})"

    diff = split[both]
    lo, hi = diff.interval(level)
    reading = ("The interval excludes zero: part of the difference between the selectors is a length effect."
               if lo > 0 or hi < 0 else
               "The interval contains zero: these runs do not separate a length effect from the rest.")
    return [f"Exploratory (no rule was registered for it): {sampler} − {baseline} is {text(split[short])} on the "
            f"{fmt(len(groups[short]), 'int')} held-out pairs whose chosen answer is shorter than the rejected one "
            f"and {text(split[long_])} on the {fmt(len(groups[long_]), 'int')} whose chosen answer is longer. A "
            f"selector that teaches the policy to prefer shorter answers gains on the first and loses on the "
            f"second; the difference between the two is {text(diff)}, p = {fmt(diff.p_value(), 'p')}, "
            f"{diff.n_seeds} seeds, MDE at {power:.0%} power {fmt(diff.mde(alpha, power))}. {reading}"]


def selector_frame(f: TrackFindings, runs: TrackRuns) -> pd.DataFrame:
    """Each selector's cost beside its benefit and its subset's length profile, at the primary budget
    and for the whole pool (the runs of the sampler grid and the whole pool only): runs, the mean
    metric, the paired difference to the baseline (interval and p; Holm-adjusted except the primary
    contrast), the mean seconds of selection (of which scoring a model), of training and in all, the
    tokens (scoring + training), the total seconds as a share of the whole pool's, and the mean
    characters of the subset's chosen answers, chosen − rejected, and chosen against the pool's."""
    records = runs.primary_records()
    cols = ["label", "fraction", "runs", "mean", "diff", "lo", "hi", "p", "select_s", "scoring_s", "train_s",
            "total_s", "total_tokens", "compute vs whole pool", "chosen_chars", "chosen_minus_rejected",
            "chosen vs pool"]
    if not records:
        return pd.DataFrame(columns=cols)
    frame = runs_frame(records)
    if f.metric not in frame:
        frame[f.metric] = np.nan
    per_run = (frame[["key", f.metric]].merge(selection_cost_frame(records), on="key")
               .merge(length_profile_frame(records).drop(columns=["label", "fraction", "seed"]), on="key"))
    budget = f.plan.primary_budget
    per_run = per_run[np.isclose(per_run["fraction"], budget, atol=1e-6) | (per_run["label"] == "full")]
    g = per_run.groupby(["label", "fraction"], sort=False)
    out = g[["select_s", "scoring_s", "train_s", "total_s", "total_tokens", "chosen_chars",
             "chosen_minus_rejected"]].mean()
    out["mean"] = g[f.metric].mean()
    out["runs"] = g.size()
    out["pool_chars"] = g["pool_chosen_chars"].mean()
    out = out.reset_index()
    full_s = out.loc[out["label"] == "full", "total_s"]
    out["compute vs whole pool"] = out["total_s"] / float(full_s.iloc[0]) if len(full_s) else math.nan
    out["chosen vs pool"] = out["chosen_chars"] / out["pool_chars"]
    diffs = {r["label"]: (r["mean_diff"], r["lo"], r["hi"], r["p_adj"]) for _, r in f.secondary.iterrows()
             if np.isclose(r["fraction"], budget, atol=1e-6)}
    for v in (f.sampler,):
        if v.estimate is not None:
            lo, hi = v.estimate.interval(f.plan.level)
            diffs[f.plan.sampler] = (v.estimate.value, lo, hi, v.estimate.p_value())
    for i, name in enumerate(("diff", "lo", "hi", "p")):
        out[name] = [diffs.get(lab, (math.nan,) * 4)[i] for lab in out["label"]]
    order = {f.plan.baseline: 0, f.plan.sampler: 1, "full": 99}
    out = out.sort_values("label", key=lambda s: s.map(lambda x: order.get(x, 2))).reset_index(drop=True)
    return out[cols]



def closing_statements(findings: Mapping[str, TrackFindings], runs: Mapping[str, TrackRuns]) -> list[str]:
    """The closing note: per track the verdict of each claim with the seeds it used, the pilot rule's
    seeds, and the run time of the stored runs (selection, training and evaluation, in CPU- or
    device-hours as the records' provenance says)."""
    out = []
    for name, f in findings.items():
        verdicts = "; ".join(f"{v.claim} {v.verdict}{' (' + v.detail + ')' if v.detail else ''} from "
                             f"{v.estimate.n_seeds if v.estimate is not None else 0} seeds" for v in f.claims)
        pilot = f" The pilot rule asks for {f.pilot.seeds} primary seeds." if f.pilot is not None and f.pilot.seeds else ""
        recs = runs[name].records
        hours = sum(float((r.get("timings") or {}).get("seconds", 0.0)) for r in recs) / 3600
        devices = ", ".join(sorted({device_label(r) for r in recs})) or "no device"
        out.append(f"{name}: {verdicts}.{pilot} Stored runs: {len(recs)}, {fmt(hours)} hours of run time ({devices}).")
    return out
