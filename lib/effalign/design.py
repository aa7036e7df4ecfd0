"""A profile's pre-registered design (``common.design``) as run grids.

The design names, per grid, the samplers, the pool fractions, the seeds and the *arm*: a
training-budget override from the track's ``arms`` (``{budget: epochs, epochs: 2}`` or
``{budget: steps, max_steps: N}``), merged into the grid's ``train`` settings, so each arm has run
keys of its own. Every track's ``data`` keeps ``pool_per_seed``, so each seed draws its pool and
every sampler of that seed shares it. The grids are plain mappings for ``python -m effalign run``
(and :func:`effalign.compute.estimate_design_seconds`), each with the ``track`` it belongs to.

The design is also the one source of the analysis (:func:`analysis_plan`: the verdict rules' values;
``common.analysis`` keeps only what the design does not say), of the internal pilot rule
(:func:`seeds_needed`: the seeds for the primary contrast's power, from the pilot seeds' variance only)
and of the variance components and minimum detectable effect the methods chapter prints
(:func:`variance_components`, :func:`variance_frame`). This module reads records; it never trains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import brentq

from .tables import fmt, items_frame, runs_frame
from .verdicts import AnalysisPlan

GRID_FIELDS = {"samplers", "fractions", "arm", "seeds", "tracks"}

#: The stages of running a design (:func:`staged_grids`), in order.
STAGES = ("pilot", "primary", "secondary")


def seed_list(seeds: int | list[int]) -> list[int]:
    """``seeds`` as a list: a count ``n`` means seeds 0 … n−1 (shared with every grid that uses them)."""
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def design_grids(profile: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The grids of ``common.design`` for every track (or for those of the grid's ``tracks`` that the
    profile has), named ``<track>_<grid>``, grid by grid in the design's order with ``primary`` first
    (the order to run them in)."""
    common = profile["common"]
    design = common.get("design")
    if not design:
        raise ValueError(f"profile {profile.get('profile')!r} has no common.design")
    grids_spec = dict(design["grids"])
    grids_spec = {"primary": _primary_grid(design["primary"]), **grids_spec}
    out: dict[str, dict[str, Any]] = {}
    for grid_name, g in grids_spec.items():  # grid by grid (primary first): the order to run them in
        unknown = set(g) - GRID_FIELDS
        if unknown:
            raise ValueError(f"design grid {grid_name!r}: unknown fields {sorted(unknown)}; known {sorted(GRID_FIELDS)}")
        only = g.get("tracks")  # a track the profile leaves out (a user's `tracks: {hh: null}`) runs nothing
        for track_name, track in common["tracks"].items():
            if only is not None and track_name not in only:
                continue
            arms = track.get("arms") or {}
            if g["arm"] not in arms:
                raise ValueError(f"design grid {grid_name!r} uses arm {g['arm']!r}, which track {track_name!r} "
                                 f"does not define (arms: {sorted(arms)})")
            train = {**common.get("train", {}), **track.get("train", {}), **arms[g["arm"]]}
            out[f"{track_name}_{grid_name}"] = {
                "experiment": design["experiment"].format(track=track_name),
                "track": track_name,
                "arm": g["arm"],
                "data": dict(track["data"]),
                "model": common["model"],
                "samplers": list(g["samplers"]),
                "fractions": [float(f) for f in g["fractions"]],
                "seeds": seed_list(g["seeds"]),
                "train": train,
                "eval": dict(track.get("eval", {})),
            }
    return out


def _primary_grid(primary: Mapping[str, Any]) -> dict[str, Any]:
    """The primary contrast's cells: its sampler and baseline at its fraction, every seed."""
    return {"samplers": [primary["baseline"], primary["sampler"]], "fractions": [primary["fraction"]],
            "arm": primary["arm"], "seeds": primary["seeds"]}


def rule_seeds(common: Mapping[str, Any], primary: Mapping[str, Any], store: Any) -> int | None:
    """The seeds the design's internal pilot rule gives to one track's ``primary`` grid (of
    :func:`design_grids`) from the records in ``store`` (a folder or :class:`~effalign.runs.ResultStore`);
    None while the pilot is incomplete or when the design has no internal pilot."""
    from .experiment import expand_grid, stored_records  # lazy: the module imports torch

    if not primary_of(common["design"])["pilot_seeds"]:
        return None
    return pilot_rule(common, primary["track"], stored_records(expand_grid(primary), store)).seeds


def planned_grids(profile: Mapping[str, Any], store: Any) -> dict[str, dict[str, Any]]:
    """:func:`design_grids` with each track's primary grid cut to the seeds its pilot rule gives once the
    pilot is complete (:func:`rule_seeds`): the runs the design will use, and so the runs a chapter
    reads and names as missing. While the pilot is incomplete the primary keeps the design's maximum."""
    grids = design_grids(profile)
    for name in [f"{t}_primary" for t in profile["common"]["tracks"] if f"{t}_primary" in grids]:
        n = rule_seeds(profile["common"], grids[name], store)
        if n is not None:
            grids[name] = {**grids[name], "seeds": grids[name]["seeds"][:n]}
    return grids


def staged_grids(profile: Mapping[str, Any], stage: str, store: str | Path) -> dict[str, dict[str, Any]]:
    """The design's grids for one stage of running it (``make experiments`` runs them in this order):
    ``pilot``: each track's primary grid cut to its internal-pilot seeds (none when the design has no
    internal pilot); ``primary``: each track's primary grid cut to the seeds its pilot rule gives from the
    records in ``store`` (the pilot seeds again while the pilot is incomplete; every seed when the design
    has no internal pilot);
    ``secondary``: the other grids, in the design's order."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    grids = design_grids(profile)
    primary = {f"{t}_primary" for t in profile["common"]["tracks"]}
    if stage == "secondary":
        return {name: g for name, g in grids.items() if name not in primary}
    pilot = int(primary_of(profile["common"]["design"])["pilot_seeds"])
    if stage == "pilot" and not pilot:
        return {}
    out = {}
    for name in (n for n in grids if n in primary):
        g = grids[name]
        keep = pilot or len(g["seeds"])
        if stage == "primary" and pilot:
            n = rule_seeds(profile["common"], g, store)
            keep = n if n is not None else keep
        out[name] = {**g, "seeds": g["seeds"][:keep]}
    return out


def export_design(profile: str | Mapping[str, Any], out_dir: str | Path, stage: str | None = None,
                  store: str | Path = "results") -> list[Path]:
    """Write a profile's design grids (all of them, or one ``stage``'s: :func:`staged_grids`, reading the
    records in ``store``) as ``<track>_<grid>.yaml`` for ``python -m effalign run --grid``; returns the
    paths in the order to run them."""
    import yaml

    from .book import load_profile

    prof = load_profile(profile) if isinstance(profile, str) else profile
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    grids = design_grids(prof) if stage is None else staged_grids(prof, stage, store)
    for name, grid in grids.items():
        path = out / f"{name}.yaml"
        path.write_text(f"# design grid {name!r} of profile {profile!r} (effalign.design.export_design)\n"
                        + yaml.safe_dump(grid, sort_keys=False))
        written.append(path)
    return written


# ----------------------------------------------------------------------------- the analysis the design fixes


def primary_of(design: Mapping[str, Any]) -> dict[str, Any]:
    """The design's primary contrast with the defaults of the fields a profile may leave out:
    ``pilot_seeds`` (0: no internal pilot), ``min_seeds`` (= ``seeds``), ``test`` (paired_t),
    ``alpha`` (0.05), ``power`` (0.8), ``effect`` (None: the equivalence margin is the effect of interest)."""
    p = dict(design["primary"])
    n = len(seed_list(p["seeds"]))
    return {"test": "paired_t", "alpha": 0.05, "power": 0.8, "pilot_seeds": 0, "min_seeds": n, "effect": None,
            **p, "n_seeds": n}


def analysis_plan(common: Mapping[str, Any]) -> AnalysisPlan:
    """The verdict rules' values of a profile (``common``): taken from ``common.design`` when it has one
    (primary budget, sampler and baseline, metric = each track's ``metric``, alpha, power, multiplicity,
    equivalence margins, effect of interest, plateau arm = the primary's arm, plateau delta = the
    secondary ``plateau_delta`` or else the equivalence margin), with ``common.analysis`` holding only
    what the design does not say (``level``, ``n_sim``); a key given in both raises ValueError. Without
    a design: :meth:`AnalysisPlan.from_profile` of ``common.analysis``."""
    analysis, tracks, design = dict(common.get("analysis") or {}), common["tracks"], common.get("design")
    if not design:
        return AnalysisPlan.from_profile(analysis, tracks)
    p, s = primary_of(design), dict(design.get("secondary") or {})
    derived: dict[str, Any] = {
        "primary_budget": float(p["fraction"]), "sampler": p["sampler"], "baseline": p["baseline"],
        "alpha": float(p["alpha"]), "power": float(p["power"]), "plateau_arm": p["arm"],
        "multiplicity": s.get("multiplicity", "holm"),
        "equivalence_margin": s["equivalence_margin"],
        "plateau_delta": s.get("plateau_delta", s["equivalence_margin"]),
        "effect": p["effect"] if p["effect"] is not None else s["equivalence_margin"],
    }
    twice = sorted(set(analysis) & (set(derived) | {"primary_metric"}))
    if twice:
        raise ValueError(f"common.analysis repeats {twice}, which common.design fixes: keep them in one place "
                         "(the design)")
    return AnalysisPlan.from_profile({**analysis, **derived}, tracks)


def equal_compute_arms(tracks: Mapping[str, Any], *, exact: bool = False) -> list[str]:
    """The arms (of any track) that give every subset size the same compute budget: the same optimiser
    steps (``budget: steps``) or the same cap of steps with early stopping on the validation split
    (``budget: converge``), so that a difference between sizes is a data effect; with ``exact``, only
    the arms of exactly the same steps."""
    from .grids import equal_compute_arms as of_arms  # the one rule, applied to each track's arms

    return sorted({name for t in tracks.values() for name in of_arms(t.get("arms"), exact=exact)})


def track_design_grids(grids: Mapping[str, Mapping[str, Any]], track: str) -> dict[str, dict[str, Any]]:
    """One track's grids of :func:`design_grids`, by design grid name (``primary``, ``full_pool``, ...)."""
    return {name[len(track) + 1:]: dict(g) for name, g in grids.items() if g.get("track") == track}


def runs_cells(grids: Mapping[str, Mapping[str, Any]], arm: str, fractions: Sequence[float]) -> bool:
    """Whether one track's design grids (:func:`track_design_grids`) have a cell in ``arm`` at every one
    of ``fractions`` of the pool (a design may leave a claim's cells out of a track: its grids' ``tracks``)."""
    return all(any(g["arm"] == arm and any(abs(float(f) - x) < 0.01 for f in g["fractions"]) for g in grids.values())
               for x in fractions)


def arm_sizes(grids: Mapping[str, Mapping[str, Any]], arm: str) -> list[float]:
    """The distinct shares of the pool at which one track's design grids train ``random`` in ``arm``: the
    sizes of that arm's scaling curve (1.0: the whole pool)."""
    return sorted({round(float(f), 6) for g in grids.values() if g["arm"] == arm and "random" in g["samplers"]
                   for f in g["fractions"]})


# ----------------------------------------------------------------------------- the internal pilot


def paired_t_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` pairs whose differences have
    standard deviation ``sd``, when the true mean difference is ``effect`` (noncentral t)."""
    if n < 2 or not (sd > 0):
        return math.nan if n < 2 else 1.0
    df, nc = n - 1, effect / (sd / math.sqrt(n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    power = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if not math.isfinite(power):  # scipy's noncentral t fails far in the tail: the normal approximation
        power = float(stats.norm.sf(crit - abs(nc)) + stats.norm.cdf(-crit - abs(nc)))
    return min(power, 1.0)


def paired_t_seeds(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8, max_seeds: int = 10_000) -> int | None:
    """The fewest pairs (seeds) with :func:`paired_t_power` at least ``power``; None beyond ``max_seeds``."""
    for n in range(2, max_seeds + 1):
        if paired_t_power(effect, sd, n, alpha) >= power:
            return n
    return None


def paired_t_mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference the two-sided paired t-test detects with ``power`` from ``n`` seeds."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return float(brentq(lambda e: paired_t_power(e, sd, n, alpha) - power, 0.0, 100 * sd + 1e-12)) if sd > 0 else 0.0


@dataclass(frozen=True)
class PilotRule:
    """The internal pilot's outcome (:func:`seeds_needed`). ``sd``: SD of the per-seed paired difference
    over the pilot seeds; ``needed``: the seeds for ``power`` at ``effect`` (None: not estimable);
    ``seeds``: ``needed`` clamped to ``[min_seeds, max_seeds]`` (None while the pilot is incomplete)."""

    track: str
    metric: str
    contrast: str
    pilot_seeds: int
    stored_pilot_seeds: int
    sd: float
    effect: float
    alpha: float
    power: float
    min_seeds: int
    max_seeds: int
    needed: int | None
    seeds: int | None

    @property
    def mde(self) -> float:
        """The design's minimum detectable effect at the seeds the rule gives (NaN while incomplete)."""
        return paired_t_mde(self.sd, self.seeds, self.alpha, self.power) if self.seeds else math.nan

    def sentence(self) -> str:
        head = (f"Pilot rule ({self.track}, {self.contrast} on {self.metric}, the first {self.pilot_seeds} seeds; "
                f"only the variance is used)")
        if self.seeds is None:
            return (f"{head}: {self.stored_pilot_seeds} of the {self.pilot_seeds} pilot seeds are stored, so the "
                    f"number of seeds is not fixed yet (it will lie in {self.min_seeds}–{self.max_seeds}).")
        need = "more than " + str(self.max_seeds) if self.needed is None else str(self.needed)
        return (f"{head}: SD of the paired difference {fmt(self.sd)}; {fmt(self.power, 'pct')} power at "
                f"{fmt(self.effect)} (two-sided paired t, α = {self.alpha:g}) needs {need} seeds; clamped to "
                f"{self.min_seeds}–{self.max_seeds}: **{self.seeds} seeds**, whose MDE at the pilot's SD is "
                f"{fmt(self.mde)}.")


def seeds_needed(records: Sequence[Mapping[str, Any]], *, track: str, metric: str, sampler: str, baseline: str,
                 fraction: float, effect: float, pilot_seeds: int, min_seeds: int, seeds: int,
                 alpha: float = 0.05, power: float = 0.8) -> PilotRule:
    """The internal pilot rule: from the first ``pilot_seeds`` seeds (0 … pilot_seeds − 1) of the primary
    grid's ``records``, the SD of the paired difference ``sampler − baseline`` per seed on ``metric``
    (the mean difference is never used), and the seeds that give the two-sided paired t-test ``power``
    at ``effect``, clamped to ``[min_seeds, seeds]``. While fewer than ``pilot_seeds`` pairs are stored
    the rule's ``seeds`` is None."""
    frame = runs_frame(records)
    diffs: list[float] = []
    if len(frame) and metric in frame:
        at = frame[np.isclose(frame["fraction"].astype(float), fraction, atol=1e-6) & (frame["seed"] < pilot_seeds)]
        wide = at.pivot_table(index="seed", columns="label", values=metric, aggfunc="first")
        if {sampler, baseline} <= set(wide.columns):
            diffs = (wide[sampler] - wide[baseline]).dropna().tolist()
    n = len(diffs)
    sd = float(np.std(diffs, ddof=1)) if n >= 2 else math.nan
    needed = paired_t_seeds(effect, sd, alpha, power) if n >= pilot_seeds and n >= 2 else None
    clamped = None
    if n >= pilot_seeds and n >= 2:
        clamped = seeds if needed is None else int(min(max(needed, min_seeds), seeds))
    return PilotRule(track=track, metric=metric, contrast=f"{sampler} − {baseline} at {fraction:.0%}",
                     pilot_seeds=pilot_seeds, stored_pilot_seeds=n, sd=sd, effect=float(effect), alpha=alpha,
                     power=power, min_seeds=min_seeds, max_seeds=seeds, needed=needed, seeds=clamped)


def pilot_rule(common: Mapping[str, Any], track: str, records: Sequence[Mapping[str, Any]]) -> PilotRule:
    """:func:`seeds_needed` with the values of a profile's design for one track (``records``: the primary
    grid's stored runs)."""
    p, plan = primary_of(common["design"]), analysis_plan(common)
    return seeds_needed(records, track=track, metric=plan.metric(track), sampler=p["sampler"], baseline=p["baseline"],
                        fraction=float(p["fraction"]), effect=plan.effect_of(track), pilot_seeds=int(p["pilot_seeds"]),
                        min_seeds=int(p["min_seeds"]), seeds=p["n_seeds"], alpha=plan.alpha, power=plan.power)


# ----------------------------------------------------------------------------- variance components


def variance_components(records: Sequence[Mapping[str, Any]], metric: str, *, sampler: str | None = None,
                        baseline: str | None = None, fraction: float | None = None) -> dict[str, float]:
    """Run-to-run against item-level noise of ``metric`` in stored runs.

    ``run_sd``: SD across seeds of a cell's run value, pooled over cells with two or more seeds;
    ``item_sd``: SD of one evaluation item's value within a run (pooled over runs, from
    ``record["items"]``); ``item_se``: the item-sampling standard error of one run's value (cluster
    means by prompt, the evaluation set's share of a run's noise); ``items``: items per run.
    With ``sampler``, ``baseline`` and ``fraction`` also ``diff_sd`` (SD across seeds of the paired run
    difference) and ``diff_item_se`` (the item-sampling SE of one seed's difference, clustered).
    Missing parts are NaN; ``runs``, ``cells`` count what was used."""
    frame = runs_frame(records)
    out = {k: math.nan for k in ("run_sd", "item_sd", "item_se", "items", "diff_sd", "diff_item_se")}
    out.update(runs=0, cells=0, pairs=0)
    if not len(frame) or metric not in frame:
        return out
    y = pd.to_numeric(frame[metric], errors="coerce")
    groups = frame.assign(y=y).dropna(subset=["y"]).groupby(["label", "fraction"])["y"]
    dev = groups.transform(lambda v: v - v.mean())
    dof = int((groups.count() - 1).clip(lower=0).sum())
    out.update(runs=int(groups.count().sum()), cells=int((groups.count() >= 2).sum()))
    if dof:
        out["run_sd"] = float(math.sqrt(float((dev**2).sum()) / dof))
    items = items_frame(records, metric)
    if len(items):
        by_run = items.groupby("key")
        out["items"] = float(by_run.size().mean())
        out["item_sd"] = float(math.sqrt(by_run["value"].var(ddof=1).mean()))
        out["item_se"] = float(np.mean([_cluster_se(g["value"], g["cluster"]) for _, g in by_run]))
    if sampler and baseline and fraction is not None:
        at = frame.assign(y=y)[np.isclose(frame["fraction"].astype(float), fraction, atol=1e-6)]
        wide = at.pivot_table(index="seed", columns="label", values="y", aggfunc="first")
        keys = at.pivot_table(index="seed", columns="label", values="key", aggfunc="first")
        if {sampler, baseline} <= set(wide.columns):
            d = (wide[sampler] - wide[baseline]).dropna()
            out["pairs"] = int(d.size)
            out["diff_sd"] = float(d.std(ddof=1)) if d.size >= 2 else math.nan
            ses = []
            for seed in d.index:
                a = items[items["key"] == keys.loc[seed, sampler]].set_index("id")
                b = items[items["key"] == keys.loc[seed, baseline]].set_index("id")
                both = a.join(b[["value"]], rsuffix="_b", how="inner")
                if len(both) > 1:
                    ses.append(_cluster_se(both["value"] - both["value_b"], both["cluster"]))
            out["diff_item_se"] = float(np.mean(ses)) if ses else math.nan
    return out


def _cluster_se(values: Any, clusters: Any) -> float:
    """Standard error of a mean over items whose clusters (prompts) are the sampling units."""
    frame = pd.DataFrame({"v": np.asarray(values, dtype=float), "c": np.asarray(clusters)})
    totals = frame.groupby("c")["v"].agg(["sum", "count"])
    n, mean = float(totals["count"].sum()), float(frame["v"].mean())
    k = len(totals)
    if k < 2:
        return math.nan
    r = totals["sum"] - mean * totals["count"]
    return float(math.sqrt(k / (k - 1) * float((r**2).sum())) / n)


def variance_frame(common: Mapping[str, Any], records_by_track: Mapping[str, Sequence[Mapping[str, Any]]]
                   ) -> pd.DataFrame:
    """Per track: the variance components of the primary metric in the primary arm's stored runs
    (:func:`variance_components`), the pilot rule's seeds and the design's MDE at those seeds and at
    the stored primary seeds. ``records_by_track``: the primary arm's records of each track."""
    p, plan = primary_of(common["design"]), analysis_plan(common)
    pair = f"{p['sampler']} vs {p['baseline']}"
    rows = []
    for track, recs in records_by_track.items():
        metric = plan.metric(track)
        vc = variance_components(recs, metric, sampler=p["sampler"], baseline=p["baseline"], fraction=float(p["fraction"]))
        rule = pilot_rule(common, track, [r for r in recs if r["spec"]["seed"] < int(p["pilot_seeds"])])
        rows.append({"track": track, "metric": metric, "runs": vc["runs"], "items per run": vc["items"],
                     "run-to-run SD": vc["run_sd"], "item SD": vc["item_sd"], "item SE of a run": vc["item_se"],
                     "paired seeds": vc["pairs"], f"SD of {pair} per seed": vc["diff_sd"],
                     f"item SE of {pair}": vc["diff_item_se"], "effect of interest": plan.effect_of(track),
                     "pilot seeds": rule.stored_pilot_seeds, "seeds (pilot rule)": rule.seeds,
                     "MDE at those seeds": rule.mde,
                     "MDE at the stored seeds": paired_t_mde(vc["diff_sd"], vc["pairs"], plan.alpha, plan.power)})
    return pd.DataFrame(rows)
