"""Checks of user-supplied settings before any heavy work: grid files, profiles, sampler parameters.

:func:`validate_grid` checks a grid mapping read from YAML (top-level keys, ``data``,
``samplers`` and their parameters, ``budgets``/``fractions``, ``seeds``, ``train`` fields by
:class:`~effalign.train.DPOTrainConfig`'s types, ``eval`` fields by the defaults' types) and
coerces the one thing YAML gets wrong: numbers written as text (PyYAML reads ``5e-4`` as the
string ``"5e-4"``) become numbers. Values that are already valid are returned unchanged, so the
run keys of a valid grid do not change. :func:`check_sampler_params` checks a sampler's
parameters against its constructor's type hints (used by ``select --params`` too).
:func:`validate_profile` checks a parameter profile (``params/*.yaml`` or a user's profile file,
:func:`effalign.book.load_profile`): its ``common`` keys (:data:`PROFILE_TYPES`), each track
(:data:`TRACK_TYPES`, its ``data``, ``eval`` and ``train``), the training fields, samplers and the
verdict rules. Every error is a :class:`ConfigError` naming the file and the key. The book's
reference page (``book/reference.md``, :mod:`effalign.schema`) documents every key checked here.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Top-level keys a grid file may hold (see :func:`effalign.experiment.expand_grid`); ``description``,
#: ``track`` and ``arm`` are labels (a design grid's track and training arm); ``save_model``,
#: ``report_to`` and ``logging_dir`` are run options. Neither labels nor options are part of the run keys.
GRID_KEYS = ("experiment", "data", "model", "samplers", "budgets", "fractions", "seeds", "train", "eval", "store",
             "description", "track", "arm", "save_model", "report_to", "logging_dir")

#: Types of the grid's run options (``python -m effalign run`` reads them; the command line overrides).
RUN_OPTION_TYPES: dict[str, Any] = {"save_model": str | None, "report_to": list[str], "logging_dir": str | None}

#: Types of the ``data`` keys that :func:`effalign.experiment.load_split` reads.
DATA_TYPES: dict[str, Any] = {
    "source": str, "eval_source": str | None, "eval_size": int | float | None, "split_seed": int,
    "pool_size": int | None, "gen_prompts": str | None, "gen_n": int | None, "split": str | None,
    "pool_per_seed": bool, "val_size": int | float | None, "config": str | None, "data_dir": str | None, "revision": str | None,
    "eval_split": str | None,
}

#: Types of a profile's ``common`` keys (each notebook takes the names its parameters cell declares).
PROFILE_TYPES: dict[str, Any] = {
    "threads": int | None, "store": str, "run_missing": bool, "model": str, "seeds": list[int], "n_boot": int,
    "train": dict, "tracks": dict, "scaling_fractions": list[float], "scaling_seeds": list[int], "samplers": list,
    "budgets": list[float], "ablation": list[dict], "ablation_budget": float, "scaling_arms": dict | None,
    "analysis": dict, "gpu_dpo": dict, "design": dict, "isa_fraction": float, "n_examples": int, "arms": dict,
}

#: Types of the keys of ``common.design`` (:mod:`effalign.design`).
DESIGN_TYPES: dict[str, Any] = {"experiment": str, "primary": dict, "secondary": dict, "grids": dict}

#: Types of the keys of ``common.design.primary`` (the primary contrast; :func:`effalign.design.primary_of`).
DESIGN_PRIMARY_TYPES: dict[str, Any] = {
    "sampler": str, "baseline": str, "fraction": float, "arm": str, "seeds": int | list[int], "pilot_seeds": int,
    "min_seeds": int, "effect": float | dict | None, "test": str, "alpha": float, "power": float,
}

#: Types of the keys of ``common.design.secondary`` (:func:`effalign.design.analysis_plan`).
DESIGN_SECONDARY_TYPES: dict[str, Any] = {"multiplicity": str, "equivalence_margin": float | dict,
                                          "plateau_delta": float | dict}

#: Types of the keys of one grid of ``common.design.grids`` (:data:`effalign.design.GRID_FIELDS`).
DESIGN_GRID_TYPES: dict[str, Any] = {"samplers": list, "fractions": list[float], "arm": str, "seeds": int | list[int],
                                     "tracks": list[str]}

#: Keys a design needs (the others have defaults: :func:`effalign.design.primary_of`).
DESIGN_REQUIRED = {"design": ("experiment", "primary", "secondary", "grids"),
                   "primary": ("sampler", "baseline", "fraction", "arm", "seeds"),
                   "secondary": ("equivalence_margin",), "grid": ("samplers", "fractions", "arm", "seeds")}

#: Types of the keys of one track (``common.tracks.<name>``).
TRACK_TYPES: dict[str, Any] = {"metric": str, "secondary": list[str], "data": dict, "eval": dict, "train": dict,
                               "arms": dict}

#: Top-level keys of a profile file (``base`` only in a user's profile, merged over it).
PROFILE_FILE_KEYS = ("base", "common", "notebooks")

#: ``train`` fields that must be positive numbers.
POSITIVE_TRAIN = ("beta", "learning_rate", "epochs", "batch_size", "grad_accum", "max_prompt_tokens",
                  "max_completion_tokens", "lora_r")


class ConfigError(ValueError):
    """A setting has the wrong key, type or value; the message names where (file and key)."""


def _describe(hint: Any) -> str:
    if hint is Any:
        return "any value"
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) in (tuple, list):
        return f"a list of {_describe(args[0])}" if args else "a list"
    names = {bool: "true/false", int: "an integer", float: "a number", str: "text", dict: "a mapping"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` already has type ``hint`` (an int counts as a float; a bool as neither)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args else Any
        return all(_matches(v, inner) for v in value)
    if origin is dict or hint is dict or origin is Mapping:
        return isinstance(value, Mapping)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # hints this module does not know (Literal, arrays): the consumer checks


def _from_text(value: str, hint: Any) -> Any:
    """A number written as text, for a hint that takes numbers; else a ``ValueError``."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    text = value.strip()
    if int in options:
        try:
            return int(text)
        except ValueError:
            pass
    if float in options:
        number = float(text)  # raises ValueError for non-numbers
        if math.isfinite(number):
            return number
    raise ValueError(value)


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` if it has type ``hint``; a number given as text is converted; else ConfigError."""
    if _matches(value, hint):
        return value
    if isinstance(value, str):
        try:
            return _from_text(value, hint)
        except ValueError:
            pass
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ConfigError(f"{where} must be {_describe(hint)}, got {type(value).__name__} {shown}")


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # unresolvable annotations: fall back to no checking
        return {}


def check_sampler_params(name: str, params: Any, where: str = "sampler parameters") -> dict[str, Any]:
    """Check ``params`` (a mapping) for sampler ``name``: known sampler, known parameter names,
    values of the constructor's annotated types (numbers given as text converted). Returns the
    (converted) parameters; raises :class:`ConfigError` naming ``where`` and the parameter."""
    from .samplers import SAMPLERS, available_samplers

    if not isinstance(params, Mapping):
        raise ConfigError(f"{where} must be a mapping of parameter names to values (e.g. {{\"dim\": 16}}), "
                          f"got {type(params).__name__}")
    key = str(name).lower().replace("-", "_")
    if key not in SAMPLERS:
        raise ConfigError(f"{where}: unknown sampler {name!r}; known samplers: {', '.join(available_samplers())}")
    cls = SAMPLERS[key]
    signature = inspect.signature(cls.__init__)
    names = [p for p in signature.parameters if p != "self"]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ConfigError(f"{where}: sampler {key!r} does not take {', '.join(map(repr, unknown))}; "
                          f"its parameters: {', '.join(names) or 'none'}")
    hints = _hints(cls.__init__)
    return {k: check_value(v, hints.get(k, Any), f"{where}: {key} parameter {k!r}") for k, v in params.items()}


def _check_mapping(grid: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = grid.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: '{name}' must be a mapping, got {type(value).__name__}")
    return dict(value)


def _check_list(grid: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = grid[name]
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: '{name}' must be a non-empty list, got {value!r}")
    return list(value)


def validate_grid(grid: Any, source: str | Path = "<grid>", *,
                  eval_defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check a grid mapping and return it with numbers-as-text converted (see module doc).

    ``eval_defaults`` (e.g. :data:`effalign.experiment.DEFAULT_EVAL`) gives the types of known
    ``eval`` keys; other ``eval`` keys pass unchecked.
    """
    from .train import DPOTrainConfig

    where = str(source)
    if not isinstance(grid, Mapping):
        raise ConfigError(f"{where}: a grid file must be a mapping, got {type(grid).__name__}")
    out = dict(grid)
    unknown = sorted(set(out) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown grid key(s) {', '.join(map(repr, unknown))}; known: {', '.join(GRID_KEYS)}")
    missing = [k for k in ("experiment", "data", "samplers", "seeds") if k not in out]
    if missing:
        raise ConfigError(f"{where}: the grid lacks {', '.join(map(repr, missing))}")
    if ("budgets" in out) == ("fractions" in out):
        raise ConfigError(f"{where}: a grid needs exactly one of 'budgets' or 'fractions'")
    exp = out["experiment"]
    if not isinstance(exp, str) or not exp or "/" in exp or exp.startswith("."):
        raise ConfigError(f"{where}: 'experiment' must be a file-name-safe text, got {exp!r}")
    for name in ("model", "store", "track", "arm", "description"):
        if name in out and not isinstance(out[name], str):
            raise ConfigError(f"{where}: '{name}' must be text, got {type(out[name]).__name__} {out[name]!r}")

    out["data"] = check_data(_check_mapping(out, "data", where), f"{where}: data")
    for name, hint in RUN_OPTION_TYPES.items():
        if name in out:
            out[name] = check_value(out[name], hint, f"{where}: {name}")

    samplers = []
    for i, entry in enumerate(_check_list(out, "samplers", where)):
        at = f"{where}: samplers[{i}]"
        if isinstance(entry, str):
            check_sampler_params(entry, {}, at)
            samplers.append(entry)
        elif isinstance(entry, Mapping) and "name" in entry and set(entry) <= {"name", "params"}:
            params = check_sampler_params(entry["name"], entry.get("params") or {}, at)
            samplers.append({**entry, "params": params} if "params" in entry else dict(entry))
        else:
            raise ConfigError(f"{at} must be a sampler name or {{name: ..., params: {{...}}}}, got {entry!r}")
    out["samplers"] = samplers

    seeds = [check_value(s, int, f"{where}: seeds[{i}]") for i, s in enumerate(_check_list(out, "seeds", where))]
    if any(s < 0 for s in seeds):
        raise ConfigError(f"{where}: seeds must be non-negative integers, got {seeds}")
    out["seeds"] = seeds
    if "budgets" in out:
        budgets = []
        for i, b in enumerate(_check_list(out, "budgets", where)):
            if b is None or b == "full":
                budgets.append(b)
                continue
            b = check_value(b, int, f"{where}: budgets[{i}]")
            if b < 1:
                raise ConfigError(f"{where}: budgets[{i}] must be at least 1 (or 'full'), got {b}")
            budgets.append(b)
        out["budgets"] = budgets
    else:
        fractions = []
        for i, f in enumerate(_check_list(out, "fractions", where)):
            f = check_value(f, float, f"{where}: fractions[{i}]")
            if not 0 < f <= 1:
                raise ConfigError(f"{where}: fractions[{i}] must be in (0, 1], got {f}")
            fractions.append(f)
        out["fractions"] = fractions

    out["train"] = check_train(_check_mapping(out, "train", where), f"{where}: train")
    out["eval"] = check_eval(_check_mapping(out, "eval", where), f"{where}: eval", eval_defaults)
    return out


def check_data(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``data`` mapping: known keys (:data:`DATA_TYPES`) of the right types, a ``source``."""
    data = dict(data)
    unknown = sorted(set(data) - set(DATA_TYPES))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(DATA_TYPES)}")
    if "source" not in data:
        raise ConfigError(f"{where} lacks 'source' (an alias, a file, a save_to_disk folder or a hub id owner/name)")
    for k, v in data.items():
        data[k] = check_value(v, DATA_TYPES[k], f"{where}.{k}")
    return data


def check_train(train: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``train`` mapping: :class:`~effalign.train.DPOTrainConfig` fields of the right types."""
    from .train import DPOTrainConfig

    train = dict(train)
    hints = _hints(DPOTrainConfig)
    unknown = sorted(set(train) - set(hints))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                          f"known (DPOTrainConfig): {', '.join(hints)}")
    for k, v in train.items():
        train[k] = check_value(v, hints[k], f"{where}.{k}")
        if k in POSITIVE_TRAIN and train[k] is not None and train[k] <= 0:
            raise ConfigError(f"{where}.{k} must be positive, got {train[k]}")
    return train


def check_eval(ev: Mapping[str, Any], where: str, eval_defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An ``eval`` mapping: known keys (those of ``eval_defaults``) of their defaults' types."""
    ev = dict(ev)
    if eval_defaults:
        unknown = sorted(set(ev) - set(eval_defaults))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(eval_defaults)}")
    for k, v in ev.items():
        if eval_defaults and k in eval_defaults:
            default = eval_defaults[k]
            hint = float if isinstance(default, float) else type(default) if default is not None else Any
            ev[k] = check_value(v, hint, f"{where}.{k}")
    return ev


def _check_keys(value: Any, known: Mapping[str, Any] | Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return dict(value)


def _check_samplers(entries: Any, where: str) -> None:
    """Sampler entries of a profile; the names of earlier versions (``margin_low``) pass, since a
    project profile keeps them to read its stored runs (a user's profile gets the new names)."""
    from .samplers import RENAMED

    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if isinstance(entry, str) and entry in RENAMED:
            continue
        if isinstance(entry, str):
            check_sampler_params(entry, {}, at)
        elif isinstance(entry, Mapping) and "name" in entry and set(entry) <= {"name", "params"}:
            check_sampler_params(entry["name"], entry.get("params") or {}, at)
        else:
            raise ConfigError(f"{at} must be a sampler name or {{name: ..., params: {{...}}}}, got {entry!r}")


def _check_typed(value: Any, types: Mapping[str, Any], required: Sequence[str], where: str) -> dict[str, Any]:
    out = _check_keys(value, types, where)
    missing = [k for k in required if k not in out]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(map(repr, missing))}")
    return {k: check_value(v, types[k], f"{where}.{k}") for k, v in out.items()}


def check_design(design: Any, where: str) -> dict[str, Any]:
    """A ``common.design`` mapping (:mod:`effalign.design`): its keys (:data:`DESIGN_TYPES`), the
    primary contrast (:data:`DESIGN_PRIMARY_TYPES`), the secondary rules
    (:data:`DESIGN_SECONDARY_TYPES`) and each grid (:data:`DESIGN_GRID_TYPES`, its samplers)."""
    out = _check_typed(design, DESIGN_TYPES, DESIGN_REQUIRED["design"], where)
    out["primary"] = _check_typed(out["primary"], DESIGN_PRIMARY_TYPES, DESIGN_REQUIRED["primary"], f"{where}.primary")
    out["secondary"] = _check_typed(out["secondary"], DESIGN_SECONDARY_TYPES, DESIGN_REQUIRED["secondary"],
                                    f"{where}.secondary")
    grids = {}
    for name, grid in out["grids"].items():
        grids[name] = _check_typed(grid, DESIGN_GRID_TYPES, DESIGN_REQUIRED["grid"], f"{where}.grids.{name}")
        _check_samplers(grids[name]["samplers"], f"{where}.grids.{name}.samplers")
    out["grids"] = grids
    return out


def validate_profile(profile: Any, source: str | Path = "<profile>", *,
                     eval_defaults: Mapping[str, Any] | None = None,
                     extra_keys: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Check a (merged) parameter profile: top-level keys, every ``common`` key's type
    (:data:`PROFILE_TYPES`), each track (:data:`TRACK_TYPES`; ``data``, ``eval`` and ``train`` as
    in a grid; ``arms`` are train overrides), ``train``, ``scaling_arms``, sampler names and
    parameters, ISA ablation variants and the verdict rules (``analysis``). ``extra_keys``: other
    parameters the notebooks declare (accepted, their types unchecked). Returns the profile;
    raises :class:`ConfigError` naming the file and the key (``common.tracks.hh.data.pool_size``)."""
    where = str(source)
    known = {**PROFILE_TYPES, **{k: Any for k in sorted(extra_keys) if k not in PROFILE_TYPES}}
    prof = _check_keys(profile, (*PROFILE_FILE_KEYS, "profile"), where)
    common = _check_keys(prof.get("common") or {}, known, f"{where}: common")
    for key, value in common.items():
        common[key] = check_value(value, known[key], f"{where}: common.{key}")
    if "train" in common:
        common["train"] = check_train(common["train"], f"{where}: common.train")
    for name, track in (common.get("tracks") or {}).items():
        at = f"{where}: common.tracks.{name}"
        track = _check_keys(track, TRACK_TYPES, at)
        for key, value in track.items():
            track[key] = check_value(value, TRACK_TYPES[key], f"{at}.{key}")
        if "data" not in track:
            raise ConfigError(f"{at} lacks 'data' (a mapping with a 'source')")
        track["data"] = check_data(track["data"], f"{at}.data")
        track["eval"] = check_eval(track.get("eval") or {}, f"{at}.eval", eval_defaults)
        track["train"] = check_train(track.get("train") or {}, f"{at}.train")
        for arm, overrides in (track.get("arms") or {}).items():
            check_train(overrides or {}, f"{at}.arms.{arm}")
        common["tracks"][name] = track
    for key in ("scaling_arms", "arms"):
        for arm, overrides in (common.get(key) or {}).items():
            check_train(overrides or {}, f"{where}: common.{key}.{arm}")
    if common.get("design"):
        common["design"] = check_design(common["design"], f"{where}: common.design")
    if "samplers" in common:
        _check_samplers(common["samplers"], f"{where}: common.samplers")
    for i, variant in enumerate(common.get("ablation") or []):
        check_sampler_params("isa", variant, f"{where}: common.ablation[{i}]")
    for key in ("budgets", "scaling_fractions"):
        for i, f in enumerate(common.get(key) or []):
            if not 0 < f <= 1:
                raise ConfigError(f"{where}: common.{key}[{i}] must be a share of the pool in (0, 1], got {f}")
    if "analysis" in common and common.get("tracks"):
        from .verdicts import AnalysisPlan

        try:
            AnalysisPlan.from_profile(common["analysis"], common["tracks"])
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {err}") from None
    notebooks = prof.get("notebooks") or {}
    if not isinstance(notebooks, Mapping):
        raise ConfigError(f"{where}: 'notebooks' must be a mapping of notebook names to parameters")
    for name, params in notebooks.items():
        _check_keys(params or {}, known, f"{where}: notebooks.{name}")
    prof["common"] = common
    return prof
