"""A profile's pre-registered design (``common.design``) as run grids.

The design names, per grid, the samplers, the pool fractions, the seeds and the *arm*: a
training-budget override from the track's ``arms`` (``{budget: epochs, epochs: 2}`` or
``{budget: steps, max_steps: N}``), merged into the grid's ``train`` settings, so each arm has run
keys of its own. Every track's ``data`` keeps ``pool_per_seed``, so each seed draws its pool and
every sampler of that seed shares it. The grids are plain mappings for ``python -m effalign run``
(and :func:`effalign.compute.estimate_design_seconds`), each with the ``track`` it belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

GRID_FIELDS = {"samplers", "fractions", "arm", "seeds"}


def seed_list(seeds: int | list[int]) -> list[int]:
    """``seeds`` as a list: a count ``n`` means seeds 0 … n−1 (shared with every grid that uses them)."""
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def design_grids(profile: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The grids of ``common.design`` for every track, named ``<track>_<grid>``."""
    common = profile["common"]
    design = common.get("design")
    if not design:
        raise ValueError(f"profile {profile.get('profile')!r} has no common.design")
    grids_spec = dict(design["grids"])
    grids_spec = {"primary": _primary_grid(design["primary"]), **grids_spec}
    out: dict[str, dict[str, Any]] = {}
    for track_name, track in common["tracks"].items():
        arms = track.get("arms") or {}
        for grid_name, g in grids_spec.items():
            unknown = set(g) - GRID_FIELDS
            if unknown:
                raise ValueError(f"design grid {grid_name!r}: unknown fields {sorted(unknown)}; known {sorted(GRID_FIELDS)}")
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


def export_design(profile: str, out_dir: str | Path) -> list[Path]:
    """Write a profile's design grids as ``<track>_<grid>.yaml`` for ``python -m effalign run --grid``."""
    import yaml

    from .book import load_profile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, grid in design_grids(load_profile(profile)).items():
        path = out / f"{name}.yaml"
        path.write_text(f"# design grid {name!r} of profile {profile!r} (effalign.design.export_design)\n"
                        + yaml.safe_dump(grid, sort_keys=False))
        written.append(path)
    return written
