"""The run store: frozen run specs with stable keys, and an append-only JSONL record per run.

A :class:`RunSpec` freezes everything that determines a result (data source and split, model,
sampler and its parameters, budget, seed, training and evaluation hyper-parameters). Its
:attr:`~RunSpec.key` is a hash of the canonical JSON of the spec, so the same spec always has
the same key. :class:`ResultStore` appends one JSON line per finished run to
``results/<experiment>.jsonl`` with the spec, key, metrics, timings and provenance (git commit,
package versions, device, start and end time). Appends are atomic (one ``write`` on an
``O_APPEND`` descriptor under an exclusive lock, then ``fsync``); a torn line left by a crash is
skipped with a warning and never breaks reading. :func:`run_grid` runs only the specs whose key
is not stored yet, so an interrupted grid resumes with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import fcntl
import functools
import hashlib
import json
import os
import platform
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

TRACKED_PACKAGES = (
    "effalign", "torch", "transformers", "trl", "datasets", "peft", "numpy", "scipy",
    "scikit-learn", "sentence-transformers",
)


def _freeze(value: Any) -> Any:
    """Canonical, JSON-ready form: dataclasses and mappings become sorted dicts, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_freeze(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return value  # keep floats as floats; json prints 1.0
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def canonical_json(value: Any) -> str:
    """Sorted-key, compact JSON of a value (the input to run keys)."""
    return json.dumps(_freeze(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's result.

    ``data``, ``sampler_params``, ``train`` and ``eval`` are plain dicts (kept in canonical form
    for hashing); ``budget`` is the number of training pairs (``None`` for the full pool).
    """

    experiment: str
    data: Mapping[str, Any]
    model: str
    sampler: str
    budget: int | None
    seed: int
    sampler_params: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    eval: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _freeze(self)

    @property
    def key(self) -> str:
        """A stable 16-hex-digit key: sha256 of the canonical spec."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown RunSpec fields: {sorted(unknown)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- provenance


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(repo: str | Path | None = None) -> str:
    """The current commit (with ``+dirty`` when tracked files other than the run store ``results/``
    have changes), or ``unknown``."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (subprocess.SubprocessError, OSError):
        return "unknown"


def device_description() -> dict[str, Any]:
    """The compute device: GPU name when CUDA is present, else the CPU model and thread count."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["device"] = "cuda"
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
            return info
    except ImportError:  # pragma: no cover
        pass
    info["device"] = "cpu"
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu"] = cpu
    info["cpu_count"] = os.cpu_count()
    return info


@functools.lru_cache(maxsize=1)
def _process_commit() -> str:
    return git_commit()


def provenance() -> dict[str, Any]:
    """Where a record comes from: the commit of the code this process loaded (read once per
    process, when its grid starts, so later commits during a long grid do not relabel it),
    packages and device."""
    return {"git_commit": _process_commit(), "packages": package_versions(), "device": device_description()}


def is_main_process() -> bool:
    """False on the non-zero ranks of a multi-process launch (``accelerate launch``, torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- store


class ResultStore:
    """Append-only JSONL records, one file per experiment, under a directory (e.g. ``results/``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, experiment: str) -> Path:
        if not experiment or "/" in experiment or experiment.startswith("."):
            raise ValueError(f"invalid experiment name {experiment!r}")
        return self.path / f"{experiment}.jsonl"

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record atomically (exclusive lock, single write, fsync).

        If the file ends in a torn line (no final newline), a newline is written first so the
        new record starts on its own line. Under a multi-process launch only rank 0 writes.
        """
        if not is_main_process():
            return
        experiment = record["spec"]["experiment"]
        target = self.file(experiment)
        target.parent.mkdir(parents=True, exist_ok=True)
        line = (canonical_json(record) + "\n").encode("utf-8")
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size:
                with open(target, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self, target: Path) -> Iterator[dict[str, Any]]:
        if not target.exists():
            return
        with open(target, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    warnings.warn(f"{target}, line {lineno}: torn or malformed record skipped", stacklevel=3)
                    continue
                if not isinstance(rec, dict) or "key" not in rec or "spec" not in rec:
                    warnings.warn(f"{target}, line {lineno}: record without key/spec skipped", stacklevel=3)
                    continue
                yield rec

    def experiments(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.jsonl"))

    def records(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """All records of an experiment (or of every experiment); the first record per key wins."""
        names = [experiment] if experiment else self.experiments()
        seen: set[str] = set()
        out = []
        for name in names:
            for rec in self._read(self.file(name)):
                if rec["key"] in seen:
                    continue
                seen.add(rec["key"])
                out.append(rec)
        return out

    def keys(self, experiment: str | None = None) -> set[str]:
        return {r["key"] for r in self.records(experiment)}

    def get(self, key: str, experiment: str | None = None) -> dict[str, Any] | None:
        for rec in self.records(experiment):
            if rec["key"] == key:
                return rec
        return None

    def __contains__(self, spec: RunSpec) -> bool:
        return spec.key in self.keys(spec.experiment)

    def to_frame(self, experiment: str | None = None) -> Any:
        """A pandas DataFrame: one row per run, spec and metric fields flattened with dots."""
        import pandas as pd

        rows = []
        for rec in self.records(experiment):
            flat = {"key": rec["key"]}
            flat.update(_flatten(rec["spec"], "spec"))
            flat.update(_flatten(rec.get("metrics", {}), "metrics"))
            flat.update(_flatten(rec.get("timings", {}), "timings"))
            rows.append(flat)
        return pd.DataFrame(rows)


def _flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}.{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


def make_record(
    spec: RunSpec, metrics: Mapping[str, Any], started: str, ended: str, seconds: float,
    extra: Mapping[str, Any] | None = None, items: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One run's record: key, spec, metrics, timings, provenance, and ``items`` (per-item
    outcomes: held-out ``pairs`` and ``prompts``, see :mod:`effalign.evaluate`) and ``extra``
    when present. An ``items`` entry inside ``metrics`` is moved to the record's top level."""
    metrics = dict(metrics)
    inside = metrics.pop("items", None)
    items = items if items is not None else inside
    record = {
        "key": spec.key,
        "spec": spec.to_dict(),
        "metrics": _freeze(metrics),
        "timings": {"started": started, "ended": ended, "seconds": round(seconds, 3)},
        "provenance": provenance(),
    }
    if items:
        record["items"] = _freeze(dict(items))
    if extra:
        record["extra"] = _freeze(dict(extra))
    return record


def run_grid(
    specs: Iterable[RunSpec],
    fn: Callable[[RunSpec], Mapping[str, Any]],
    store: ResultStore,
    *,
    progress: bool = True,
    desc: str = "runs",
) -> list[dict[str, Any]]:
    """Run ``fn(spec)`` for every spec whose key is not stored yet, storing each record at once.

    ``fn`` returns the metrics (a mapping; a nested ``"extra"`` entry, if present, is stored
    beside them). Duplicate specs in the grid run once, and the store is checked again before each
    run, so several processes can share one grid (e.g. one in grid order, one in reverse): only a
    run in flight in both can be done twice (the store keeps the first record). Returns the
    records of all specs, stored before or now, in grid order.
    """
    _process_commit()  # the code this process runs: fixed before the first run
    unique: dict[str, RunSpec] = {}
    for spec in specs:
        unique.setdefault(spec.key, spec)
    done = {exp: store.keys(exp) for exp in {s.experiment for s in unique.values()}}
    todo = [s for s in unique.values() if s.key not in done[s.experiment]]
    bar = tqdm(total=len(unique), initial=len(unique) - len(todo), desc=desc, disable=not progress, unit="run")
    for spec in todo:
        if spec.key in store.keys(spec.experiment):  # stored meanwhile by another process on the same grid
            bar.update(1)
            continue
        started, t0 = _now(), time.perf_counter()
        result = dict(fn(spec))
        extra = result.pop("extra", None)
        store.append(make_record(spec, result, started, _now(), time.perf_counter() - t0, extra))
        bar.update(1)
    bar.close()
    by_key = {r["key"]: r for exp in done for r in store.records(exp)}
    return [by_key[k] for k in unique if k in by_key]
