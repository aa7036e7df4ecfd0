"""Checks of user-supplied settings before any heavy work: grid files and sampler parameters.

:func:`validate_grid` checks a grid mapping read from YAML (top-level keys, ``data``,
``samplers`` and their parameters, ``budgets``/``fractions``, ``seeds``, ``train`` fields by
:class:`~effalign.train.DPOTrainConfig`'s types, ``eval`` fields by the defaults' types) and
coerces the one thing YAML gets wrong: numbers written as text (PyYAML reads ``5e-4`` as the
string ``"5e-4"``) become numbers. Values that are already valid are returned unchanged, so the
run keys of a valid grid do not change. :func:`check_sampler_params` checks a sampler's
parameters against its constructor's type hints (used by ``select --params`` too). Every error
is a :class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Top-level keys a grid file may hold (see :func:`effalign.experiment.expand_grid`); ``track`` and
#: ``arm`` are labels that :func:`effalign.design.design_grids` writes (they do not enter run keys).
GRID_KEYS = ("experiment", "data", "model", "samplers", "budgets", "fractions", "seeds", "train", "eval", "store",
             "description", "track", "arm")

#: Types of the ``data`` keys that :func:`effalign.experiment.load_split` reads.
DATA_TYPES: dict[str, Any] = {
    "source": str, "eval_source": str | None, "eval_size": int | float | None, "split_seed": int,
    "pool_size": int | None, "gen_prompts": str | None, "gen_n": int | None, "split": str | None,
    "pool_per_seed": bool,
}

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
    for name in ("model", "store"):
        if name in out and not isinstance(out[name], str):
            raise ConfigError(f"{where}: '{name}' must be text, got {type(out[name]).__name__} {out[name]!r}")

    data = _check_mapping(out, "data", where)
    if "source" not in data:
        raise ConfigError(f"{where}: 'data' lacks 'source' (an alias, a file or a hub id)")
    for k, v in data.items():
        if k in DATA_TYPES:
            data[k] = check_value(v, DATA_TYPES[k], f"{where}: data.{k}")
    out["data"] = data

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

    train = _check_mapping(out, "train", where)
    hints = _hints(DPOTrainConfig)
    unknown = sorted(set(train) - set(hints))
    if unknown:
        raise ConfigError(f"{where}: unknown train field(s) {', '.join(map(repr, unknown))}; "
                          f"known (DPOTrainConfig): {', '.join(hints)}")
    for k, v in train.items():
        train[k] = check_value(v, hints[k], f"{where}: train.{k}")
        if k in POSITIVE_TRAIN and train[k] is not None and train[k] <= 0:
            raise ConfigError(f"{where}: train.{k} must be positive, got {train[k]}")
    out["train"] = train

    ev = _check_mapping(out, "eval", where)
    for k, v in ev.items():
        if eval_defaults and k in eval_defaults:
            default = eval_defaults[k]
            hint = float if isinstance(default, float) else type(default) if default is not None else Any
            ev[k] = check_value(v, hint, f"{where}: eval.{k}")
    out["eval"] = ev
    return out
