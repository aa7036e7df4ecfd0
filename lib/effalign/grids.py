"""Grid builders: the experiment grids the notebooks, the findings and ``make experiments`` ask for.

Every grid goes through :func:`make_grid`, so the notebooks, the findings chapter and
:func:`export_grids` produce the same run keys. A grid is a mapping for
:func:`effalign.experiment.expand_grid`. Per track (:func:`track_grids`):

- ``scaling``: random subsets at each fraction of the pool, once per *training arm*
  (:func:`scaling_grids`: a mapping of arm name to train overrides, e.g.
  ``{equal_steps: {budget: steps, max_steps: 120}, fixed_epochs: {}}``; without arms, one arm named
  ``default`` with the profile's training);
- ``samplers``: every sampler at each budget; ``full``: the whole pool at the sampler grid's seeds
  and training (the small-subset claim's reference); ``ablation``: ISA variants at one budget.

All of a track's grids share its experiment ``<track>_subsets``, so a run with the same spec (a
random subset of one size and seed, the whole pool) is trained once and shared. The profile's
``gpu_dpo`` block adds one larger comparison (:func:`gpu_dpo_grids`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .book import load_profile

__all__ = [
    "DEFAULT_ARM", "ablation_grid", "ablation_samplers", "arm_of", "design_pair_grids", "equal_compute_arms",
    "export_grids", "full_grid", "full_vs_subset_grids", "gpu_dpo_grids", "make_grid", "notebook_grids",
    "sampler_grid", "scaling_grid", "scaling_grids", "stage_grids", "track_grids",
]

#: The name of the scaling arm of a profile without ``scaling_arms``: its own training settings.
DEFAULT_ARM = "default"


def make_grid(
    track: str,
    kind: str,
    spec: Mapping[str, Any],
    *,
    model: str,
    seeds: Sequence[int],
    train: Mapping[str, Any],
    samplers: Sequence[Any] = ("random",),
    fractions: Sequence[float] | None = None,
    budgets: Sequence[Any] | None = None,
    experiment: str | None = None,
    data_overrides: Mapping[str, Any] | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    eval_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A grid mapping for :func:`effalign.experiment.expand_grid`.

    ``spec`` is one track of the profile (``{"data": ..., "eval": ..., "metric": ...}`` and an optional
    ``train`` mapping that updates the profile's common training settings); the experiment is
    ``f"{track}_{kind}"`` unless given. ``*_overrides`` update the data, train and eval mappings (a
    ``None`` value removes a data key, e.g. ``pool_size: None`` for the whole pool).
    """
    if (fractions is None) == (budgets is None):
        raise ValueError("give exactly one of fractions and budgets")
    data = dict(spec["data"])
    for k, v in (data_overrides or {}).items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    grid: dict[str, Any] = {
        "experiment": experiment or f"{track}_{kind}",
        "data": data,
        "model": model,
        "samplers": list(samplers),
        "seeds": [int(s) for s in seeds],
        "train": {**dict(train), **dict(spec.get("train") or {}), **dict(train_overrides or {})},
        "eval": {**dict(spec.get("eval") or {}), **dict(eval_overrides or {})},
    }
    if fractions is not None:
        grid["fractions"] = [float(f) for f in fractions]
    else:
        grid["budgets"] = list(budgets or [])
    return grid


def ablation_samplers(variants: Sequence[Mapping[str, Any]], *, base: str = "isa",
                      baseline: str = "random") -> list[Any]:
    """Sampler entries for an ablation grid: the baseline, the default ``base`` and one
    ``{"name": base, "params": variant}`` per variant."""
    return [baseline, base, *({"name": base, "params": dict(v)} for v in variants)]


def scaling_grid(track: str, spec: Mapping[str, Any], *, model: str, seeds: Sequence[int],
                 train: Mapping[str, Any], fractions: Sequence[float],
                 arm: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Random subsets at each fraction (experiment ``<track>_subsets``, shared with the sampler grid),
    trained with the profile's settings updated by one arm's train overrides ``arm``."""
    return make_grid(track, "subsets", spec, model=model, seeds=seeds, train=train, fractions=fractions,
                     train_overrides=arm)


def scaling_grids(track: str, spec: Mapping[str, Any], *, model: str, seeds: Sequence[int],
                  train: Mapping[str, Any], fractions: Sequence[float],
                  arms: Mapping[str, Mapping[str, Any] | None] | None = None) -> dict[str, dict[str, Any]]:
    """The scaling grid of each training arm (name → train overrides; ``{}`` keeps the profile's
    training, so its runs are the default arm's). Without arms: ``{"default": scaling_grid(...)}``."""
    arms = dict(arms or {DEFAULT_ARM: {}})
    return {name: scaling_grid(track, spec, model=model, seeds=seeds, train=train, fractions=fractions,
                               arm=overrides or {}) for name, overrides in arms.items()}


def sampler_grid(track: str, spec: Mapping[str, Any], *, model: str, seeds: Sequence[int],
                 train: Mapping[str, Any], samplers: Sequence[Any], budgets: Sequence[float]) -> dict[str, Any]:
    """Every sampler at each budget (a share of the pool), experiment ``<track>_subsets``."""
    return make_grid(track, "subsets", spec, model=model, seeds=seeds, train=train, samplers=samplers,
                     fractions=budgets)


def full_grid(track: str, spec: Mapping[str, Any], *, model: str, seeds: Sequence[int],
              train: Mapping[str, Any]) -> dict[str, Any]:
    """The whole pool at the sampler grid's seeds and training: the small-subset claim's reference
    (the same runs as the default scaling arm's whole pool where the seeds agree)."""
    return make_grid(track, "subsets", spec, model=model, seeds=seeds, train=train, fractions=[1.0])


def ablation_grid(track: str, spec: Mapping[str, Any], *, model: str, seeds: Sequence[int],
                  train: Mapping[str, Any], variants: Sequence[Mapping[str, Any]], budget: float) -> dict[str, Any]:
    """The ISA ablation of a track, in the same experiment as its sampler grid (shared runs)."""
    return make_grid(track, "subsets", spec, model=model, seeds=seeds, train=train,
                     samplers=ablation_samplers(variants), fractions=[budget])


def track_grids(track: str, spec: Mapping[str, Any], *, model: str, train: Mapping[str, Any], seeds: Sequence[int],
                scaling_seeds: Sequence[int], scaling_fractions: Sequence[float], samplers: Sequence[Any],
                budgets: Sequence[float], scaling_arms: Mapping[str, Any] | None = None,
                ablation: Sequence[Mapping[str, Any]] | None = None,
                ablation_budget: float | None = None) -> dict[str, dict[str, Any]]:
    """Every grid of one track, by name: ``scaling`` (the default arm) or ``scaling_<arm>``,
    ``samplers``, ``full`` and, with ``ablation`` variants, ``ablation``."""
    common = dict(model=model, train=train)
    out = {("scaling" if arm == DEFAULT_ARM else f"scaling_{arm}"): grid
           for arm, grid in scaling_grids(track, spec, seeds=scaling_seeds, fractions=scaling_fractions,
                                          arms=scaling_arms, **common).items()}
    out["samplers"] = sampler_grid(track, spec, seeds=seeds, samplers=samplers, budgets=budgets, **common)
    out["full"] = full_grid(track, spec, seeds=seeds, **common)
    if ablation:
        out["ablation"] = ablation_grid(track, spec, seeds=seeds, variants=ablation, budget=float(ablation_budget or 0),
                                        **common)
    return out


def equal_compute_arms(arms: Mapping[str, Mapping[str, Any] | None] | None, *, exact: bool = False) -> list[str]:
    """The scaling arms that give every subset size the same compute budget (``budget: steps``, or
    ``budget: converge``: the same cap of steps with early stopping on the validation split); with
    ``exact``, only those that give every size exactly the same optimiser steps (``budget: steps``)."""
    budgets = ("steps",) if exact else ("steps", "converge")
    return [name for name, o in (arms or {}).items() if (o or {}).get("budget") in budgets]


def arm_of(grid_name: str) -> str | None:
    """The training arm of a grid named by :func:`track_grids` (None for other grids)."""
    if grid_name == "scaling":
        return DEFAULT_ARM
    return grid_name[len("scaling_"):] if grid_name.startswith("scaling_") else None


def full_vs_subset_grids(track: str, spec: Mapping[str, Any], size: Mapping[str, Any], *, train: Mapping[str, Any],
                         seed: int, fraction: float, sampler: str = "isa",
                         experiment: str = "gpu_dpo") -> list[dict[str, Any]]:
    """Two grids for one larger comparison: the whole pool, and ``sampler`` at ``fraction``.
    ``size`` holds ``model`` and optional ``data``/``train``/``eval`` overrides (a profile's
    ``gpu_dpo.cuda`` or ``gpu_dpo.cpu`` block)."""
    common = dict(model=size["model"], seeds=[seed], train=train, experiment=experiment,
                  data_overrides=size.get("data"), train_overrides=size.get("train"), eval_overrides=size.get("eval"))
    return [make_grid(track, "dpo", spec, samplers=["random"], fractions=[1.0], **common),
            make_grid(track, "dpo", spec, samplers=[sampler], fractions=[fraction], **common)]


def gpu_dpo_grids(gpu_dpo: Mapping[str, Any], tracks: Mapping[str, Any], *, train: Mapping[str, Any],
                  device: str, design: Mapping[str, Any] | None = None, model: str | None = None) -> list[dict[str, Any]]:
    """The larger run of a profile's ``gpu_dpo`` block for a device type (``"cuda"`` or other: the
    ``cpu`` settings): the whole pool and ISA's subset. A size block may name its ``experiment``
    (default ``gpu_dpo``): a track's own experiment with no overrides reuses that track's runs; a size
    block ``{design: true}`` reads the design's own whole-pool and primary runs of that seed
    (:func:`design_pair_grids`; ``design`` and ``model`` are the profile's)."""
    size = gpu_dpo["cuda" if device == "cuda" else "cpu"]
    track = gpu_dpo["track"]
    if size.get("design"):
        if not design:
            raise ValueError(f"gpu_dpo.{'cuda' if device == 'cuda' else 'cpu'} reads the design's runs (design: true), "
                             "but the profile has no common.design")
        return design_pair_grids(design, tracks, train=train, track=track, seed=gpu_dpo["seed"], model=model)
    return full_vs_subset_grids(track, tracks[track], size, train=train, seed=gpu_dpo["seed"],
                                fraction=gpu_dpo["fraction"], experiment=size.get("experiment", "gpu_dpo"))


def design_pair_grids(design: Mapping[str, Any], tracks: Mapping[str, Any], *, train: Mapping[str, Any], track: str,
                      seed: int, model: str | None = None) -> list[dict[str, Any]]:
    """The whole pool (``full_pool``) and the primary sampler's subset (``primary``) of one track and
    seed, cut from the design's own grids (the same run keys, no extra training)."""
    from .design import design_grids

    profile = {"common": {"model": model, "train": dict(train), "tracks": {track: tracks[track]}, "design": design}}
    built = design_grids(profile)
    if f"{track}_full_pool" not in built:
        raise ValueError(f"gpu_dpo reads the design's whole-pool runs of track {track!r}, but the design's full_pool "
                         f"grid does not run on it (its `tracks`): set gpu_dpo.track to a track that has one")
    full, primary = dict(built[f"{track}_full_pool"]), dict(built[f"{track}_primary"])
    full["seeds"] = primary["seeds"] = [int(seed)]
    primary["samplers"] = [design["primary"]["sampler"]]
    return [full, primary]


def notebook_grids(profile: str | Mapping[str, Any], device: str = "cuda",
                   root: Path | None = None, store: Any = None) -> dict[str, dict[str, Any]]:
    """The grids the notebooks of a profile run, by name. With ``common.design``: the design's grids
    (:func:`effalign.design.design_grids`, ``<track>_primary`` first), and on ``"cuda"`` the
    ``gpu_dpo`` pair unless it reads the design's runs; with a ``store``, each primary grid cut to the seeds
    its pilot rule gives from the stored records (:func:`effalign.design.planned_grids`). Otherwise ``<track>_<name>`` for every grid of
    :func:`track_grids` (``<track>_scaling``, ``<track>_scaling_<arm>``, ``<track>_samplers``,
    ``<track>_full``, ``<track>_ablation``) and ``gpu_dpo_full``, ``gpu_dpo_subset``. ``device`` picks
    the ``gpu_dpo`` size (``"cuda"`` or ``"cpu"``)."""
    prof = load_profile(profile, root) if isinstance(profile, str) else profile
    c = prof["common"]
    if c.get("design"):
        from .design import design_grids, planned_grids

        grids = design_grids(prof) if store is None else planned_grids(prof, store)
        if device == "cuda" and not c["gpu_dpo"]["cuda"].get("design"):
            full, subset = gpu_dpo_grids(c["gpu_dpo"], c["tracks"], train=c["train"], device=device,
                                         design=c["design"], model=c["model"])
            grids.update(gpu_dpo_full=full, gpu_dpo_subset=subset)
        return grids
    grids = {}
    for name, track in c["tracks"].items():
        for kind, grid in track_grids(name, track, model=c["model"], train=c["train"], seeds=c["seeds"],
                                      scaling_seeds=c["scaling_seeds"], scaling_fractions=c["scaling_fractions"],
                                      samplers=c["samplers"], budgets=c["budgets"], scaling_arms=c.get("scaling_arms"),
                                      ablation=c.get("ablation"), ablation_budget=c.get("ablation_budget")).items():
            grids[f"{name}_{kind}"] = grid
    full, subset = gpu_dpo_grids(c["gpu_dpo"], c["tracks"], train=c["train"], device=device, model=c["model"])
    grids.update(gpu_dpo_full=full, gpu_dpo_subset=subset)
    return grids


def stage_grids(profile: str | Mapping[str, Any], stage: str | None = None, *, device: str = "cuda",
                store: str | Path = "results") -> dict[str, dict[str, Any]]:
    """A profile's grids in the order to run them (:func:`notebook_grids`), or one ``stage``'s
    (:data:`effalign.design.STAGES`): with a design, its primary grids cut to the internal pilot's seeds
    (``pilot``) or to the seeds the pilot rule gives from the records in ``store`` (``primary``), then
    every other grid (``secondary``); without one, every grid is ``secondary``."""
    from .design import STAGES, staged_grids

    prof = load_profile(profile) if isinstance(profile, str) else profile
    grids = notebook_grids(prof, device)
    if stage is None:
        return grids
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    if not prof["common"].get("design"):
        return grids if stage == "secondary" else {}
    staged = staged_grids(prof, stage, store)
    return staged if stage != "secondary" else {**staged, **{n: g for n, g in grids.items() if n.startswith("gpu_dpo")}}


def export_grids(profile: str, out_dir: str | Path, device: str = "cuda", stage: str | None = None,
                 store: str | Path = "results") -> list[Path]:
    """Write the notebooks' grids of a profile as grid files ``<name>.yaml`` (names as in
    :func:`notebook_grids`; with a design, the design's grids, primary first) for
    ``python -m effalign run --grid``; returns the paths in the order to run them. With a ``stage``
    (:data:`effalign.design.STAGES`) only that stage's grids: with a design, the primary grids cut to the
    internal pilot's seeds (``pilot``) or to the seeds the pilot rule gives from the records in ``store``
    (``primary``), then every other grid (``secondary``); without one, every grid is ``secondary``."""
    grids = stage_grids(profile, stage, device=device, store=store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, grid in grids.items():
        path = out / f"{name}.yaml"
        path.write_text(f"# grid {name!r} of profile {profile!r} as its notebooks run it (effalign.grids.export_grids)\n"
                        + yaml.safe_dump(grid, sort_keys=False))
        written.append(path)
    return written
