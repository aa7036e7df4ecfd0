"""The run store: frozen run specs with stable keys, and an append-only JSONL record per run.

A :class:`RunSpec` freezes everything that determines a result (data source and split, model,
sampler and its parameters, budget, seed, training and evaluation hyper-parameters, and content
fingerprints of the data and the model). Its :attr:`~RunSpec.key` is a hash of the canonical JSON
of the spec, so the same spec always has the same key, and changed data or weights under the same
name give a new key. Records stored before specs carried fingerprints keep their keys; a spec
with fingerprints finds such a record (:func:`find_records`) only when a check of its content
accepts it (:func:`effalign.experiment.legacy_record_matches`). :class:`ResultStore` appends one JSON line per finished run to
``results/<experiment>.jsonl`` with the spec, key, metrics, timings and provenance (git commit,
package versions, device, start and end time). Appends are atomic (the whole line written under
an exclusive lock on an ``O_APPEND`` descriptor, then ``fsync``; a short write such as a full disk
is undone and raised, never left as a torn record; a new file's directory is synced too).

Reading validates every record: a torn line, a record of the wrong shape, or one whose key is not
the hash of its spec (an edited record) is skipped with a warning naming file and line, so its
run counts as missing and runs again. :func:`run_grid` checks that the store is writable before
the first run, runs only the specs whose key is not stored yet, and takes a claim file per run
key (:meth:`ResultStore.claim`) so that several processes (or machines sharing the directory)
never train the same cell at once; a claim left by a killed process is recovered. An interrupted
grid resumes with nothing lost and nothing duplicated.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import fcntl
import functools
import glob
import hashlib
import json
import os
import platform
import socket
import subprocess
import threading
import time
import uuid
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
    ``fingerprint`` maps what the run reads (``source``, ``eval_source``, ``gen_prompts``,
    ``model``) to a content fingerprint (a file hash, or a hub id and revision); it is part of
    the key when present, and left out of the spec (and the key) when empty, as in specs made
    before fingerprints existed.
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
    fingerprint: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = _freeze(self)
        if not d["fingerprint"]:
            del d["fingerprint"]  # specs without fingerprints keep the keys they always had
        return d

    @property
    def legacy_key(self) -> str:
        """The key of this spec without its fingerprints: the key of a record stored before run
        keys carried them."""
        return self.replace(fingerprint={}).key

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


def _safe_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and all(c.isalnum() or c in "-_." for c in name)


def rank0_value(value: Any) -> Any:
    """Under a multi-process launch, rank 0's ``value`` (any picklable object) in every process: they
    train each run together, so they must agree on which runs to do. The value itself otherwise."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return value
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- store


class StoreError(RuntimeError):
    """The run store cannot be written (read-only, full, missing); the message names the path."""


#: RunSpec fields and the JSON types a stored spec must give them.
_SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "experiment": (str,), "data": (dict,), "model": (str,), "sampler": (str,), "budget": (int, type(None)),
    "seed": (int,), "sampler_params": (dict,), "train": (dict,), "eval": (dict,), "fingerprint": (dict,),
}


def record_problem(rec: Any, experiment: str | None = None) -> str | None:
    """Why a decoded line is not a valid record of ``experiment`` (``None`` when it is).

    A record is a JSON object with a string ``key``, a ``spec`` that :meth:`RunSpec.from_dict`
    accepts with fields of the right types, whose :attr:`RunSpec.key` equals ``key`` (so an
    edited spec or key is caught), a ``metrics`` object, and optional ``timings``,
    ``provenance`` and ``extra`` objects. ``experiment`` (the file's name) must match the spec's.
    """
    if not isinstance(rec, dict):
        return f"a record must be a JSON object, not {type(rec).__name__}"
    missing = [k for k in ("key", "spec", "metrics") if k not in rec]
    if missing:
        return f"record without {', '.join(missing)}"
    if not isinstance(rec["key"], str):
        return f"'key' must be a string, not {type(rec['key']).__name__}"
    spec = rec["spec"]
    if not isinstance(spec, dict):
        return f"'spec' must be an object, not {type(spec).__name__}"
    names = {f.name for f in dataclasses.fields(RunSpec)}
    if set(spec) - names:
        return f"'spec' has unknown fields {sorted(set(spec) - names)}"
    required = {f.name for f in dataclasses.fields(RunSpec)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if required - set(spec):
        return f"'spec' lacks {sorted(required - set(spec))}"
    for name, types in _SPEC_TYPES.items():
        if name in spec and (not isinstance(spec[name], types) or isinstance(spec[name], bool)):
            return f"spec.{name} must be {' or '.join(t.__name__ for t in types)}, not {type(spec[name]).__name__}"
    for name in ("metrics", "timings", "provenance", "extra"):
        if name in rec and not isinstance(rec[name], dict):
            return f"'{name}' must be an object, not {type(rec[name]).__name__}"
    if experiment is not None and spec["experiment"] != experiment:
        return f"spec.experiment is {spec['experiment']!r}, not this file's {experiment!r}"
    actual = RunSpec.from_dict(spec).key
    if actual != rec["key"]:
        return f"key {rec['key']!r} is not its spec's key {actual!r} (record edited?)"
    return None


def _fsync_dir(path: Path) -> None:
    """Make a directory entry (a new file or folder in ``path``) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def make_dirs_durable(path: Path) -> None:
    """``mkdir -p`` that syncs each new folder's parent, so the folders survive a crash."""
    new = []
    p = path
    while not p.exists():
        new.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in reversed(new):
        _fsync_dir(d.parent)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written; a write that makes no progress raises ENOSPC."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, "no progress writing (file system full?)")
        view = view[n:]


# ---- claims: one file per run key that is being computed


CLAIM_DIR = ".claims"
#: seconds between a held claim's heartbeats (its file's modification time is renewed)
CLAIM_HEARTBEAT_S = 30.0
#: a claim from another machine (or PID namespace) whose heartbeat is older than this is stale
CLAIM_STALE_S = 300.0


def _proc_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot, Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_namespace() -> str:
    try:
        return f"{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def process_identity() -> dict[str, Any]:
    """Who holds a claim: process id (and its start time), host, PID namespace and start time."""
    return {"pid": os.getpid(), "pid_start": _proc_start(os.getpid()), "host": socket.gethostname(),
            "pidns": _pid_namespace(), "since": _now()}


def claim_is_stale(holder: Mapping[str, Any] | None, age_s: float, stale_after: float = CLAIM_STALE_S) -> bool:
    """Whether a claim's holder is gone: on this machine (same host and PID namespace) its process
    is dead or its pid was reused; elsewhere its heartbeat is older than ``stale_after`` seconds.
    An unreadable claim is stale after a minute (writing one takes microseconds)."""
    if not holder or not isinstance(holder.get("pid"), int):
        return age_s > 60.0
    if holder.get("host") == socket.gethostname() and holder.get("pidns") == _pid_namespace():
        pid = holder["pid"]
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        start = _proc_start(pid)
        return holder.get("pid_start") is not None and start is not None and start != holder["pid_start"]
    return age_s > stale_after


class Claim:
    """A held claim on one run key (a file ``<store>/.claims/<key>.claim`` with the holder's pid,
    host and start time, its modification time renewed every :data:`CLAIM_HEARTBEAT_S` seconds).

    A context manager: leaving the ``with`` block (or :meth:`release`) removes the file.
    """

    def __init__(self, path: Path | None, key: str, holder: Mapping[str, Any]):
        self.path, self.key, self.holder = path, key, dict(holder)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if path is not None:
            self._thread = threading.Thread(target=self._heartbeat, name=f"claim-{key}", daemon=True)
            self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(CLAIM_HEARTBEAT_S):
            try:
                os.utime(self.path)  # type: ignore[arg-type]
            except OSError:
                return

    @property
    def held(self) -> bool:
        return not self._stop.is_set()

    def release(self) -> None:
        """Remove the claim file (only if it is still this claim's)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self.path is None:
            return
        try:
            if json.loads(self.path.read_text()).get("token") == self.holder.get("token"):
                self.path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Claim({self.key!r}, {'held' if self.held else 'released'}, {self.path})"


class ResultStore:
    """Append-only JSONL records, one file per experiment, under a directory (e.g. ``results/``).

    ``writer`` (e.g. ``shard-0-of-4`` or a host name) makes this store append to its own file,
    ``<experiment>@<writer>.jsonl``, so runners on several machines never write to one file (no
    lock across a shared file system is needed, and the files can simply be copied together).
    Reading always merges ``<experiment>.jsonl`` and every ``<experiment>@*.jsonl``.
    """

    def __init__(self, path: str | Path, writer: str | None = None):
        self.path = Path(path)
        if writer is not None and not _safe_name(writer):
            raise ValueError(f"invalid store writer name {writer!r} (letters, digits, '-', '_', '.')")
        self.writer = writer

    def file(self, experiment: str, writer: str | None = None) -> Path:
        """The experiment's main file, or ``writer``'s own file of it."""
        if not experiment or not isinstance(experiment, str) or "/" in experiment or "@" in experiment or experiment.startswith("."):
            raise ValueError(f"invalid experiment name {experiment!r}")
        return self.path / (f"{experiment}@{writer}.jsonl" if writer else f"{experiment}.jsonl")

    def files(self, experiment: str) -> list[Path]:
        """Every file holding the experiment's records: the main file first, then writers' files by name."""
        main = self.file(experiment)
        return [main] + sorted(self.path.glob(f"{glob.escape(experiment)}@*.jsonl"))

    # ---- writing

    def check_writable(self, experiments: Iterable[str] = ()) -> None:
        """Raise :class:`StoreError` unless records can be written: the folder can be created, a
        probe file written, synced and removed in it, and the given experiments' files opened
        for appending. Warns when less than 1 MiB is free. Run before the first (long) run."""
        if not is_main_process():
            return
        where = f"result store {self.path}"
        try:
            make_dirs_durable(self.path)
            probe = self.path / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                write_all(fd, b"\n" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
            for name in experiments:
                target = self.file(name)
                if target.exists():
                    os.close(os.open(target, os.O_WRONLY | os.O_APPEND))
        except OSError as err:
            raise StoreError(f"{where} is not writable ({err.strerror or err}); nothing was run") from None
        try:
            st = os.statvfs(self.path)
            free = st.f_bavail * st.f_frsize
            if free < 1 << 20:
                warnings.warn(f"{where} has only {free // 1024} KiB free; records may not fit", stacklevel=2)
        except OSError:  # pragma: no cover
            pass

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record atomically (exclusive lock, the whole line written, fsync).

        If the file ends in a torn line (no final newline), a newline is written first so the
        new record starts on its own line. A write that fails part-way (full disk, file size
        limit) is undone (the file is cut back to its old length) and raised as
        :class:`StoreError`. A new file's directory entry is synced. Under a multi-process
        launch only rank 0 writes.
        """
        if not is_main_process():
            return
        experiment = record["spec"]["experiment"]
        target = self.file(experiment, self.writer)
        line = (canonical_json(record) + "\n").encode("utf-8")
        try:
            make_dirs_durable(target.parent)
            created = not target.exists()
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot open {target} to store run {record.get('key')} ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size:
                with open(target, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        line = b"\n" + line
            try:
                write_all(fd, line)
                os.fsync(fd)
            except OSError as err:
                try:  # leave the file as it was: no torn record
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError:
                    pass
                raise StoreError(
                    f"could not store run {record.get('key')} in {target} ({err.strerror or err}); "
                    "the file is left as it was"
                ) from None
            if created:
                _fsync_dir(target.parent)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ---- claims

    def claim_path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"invalid run key {key!r}")
        return self.path / CLAIM_DIR / f"{key}.claim"

    def claim(self, key: str, *, stale_after: float = CLAIM_STALE_S) -> Claim | None:
        """Claim run ``key`` for this process: a :class:`Claim` (context manager; leaving it
        releases the claim), or ``None`` when a live process holds it.

        The claim is a file created with ``O_EXCL`` in ``<store>/.claims/`` holding the pid (and
        its start time), host name, PID namespace, start time and a random token; a heartbeat
        thread renews its modification time. A claim whose holder is gone (see
        :func:`claim_is_stale`) is removed with a warning and taken over. Under a multi-process
        launch (``WORLD_SIZE`` > 1) every rank runs every spec together, so claims are not
        taken (an unbacked :class:`Claim` is returned).
        """
        holder = {"key": key, **process_identity(), "token": uuid.uuid4().hex}
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 or not is_main_process():
            return Claim(None, key, holder)
        path = self.claim_path(key)
        try:
            make_dirs_durable(path.parent)
        except OSError as err:
            raise StoreError(f"cannot create {path.parent} ({err.strerror or err})") from None
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._break_if_stale(path, stale_after):
                    return None
                continue
            except OSError as err:
                raise StoreError(f"cannot create claim {path} ({err.strerror or err})") from None
            try:
                write_all(fd, json.dumps(holder).encode())
                os.fsync(fd)
            except OSError as err:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise StoreError(f"cannot write claim {path} ({err.strerror or err})") from None
            os.close(fd)
            _fsync_dir(path.parent)
            return Claim(path, key, holder)
        return None

    @staticmethod
    def _read_claim(path: Path) -> tuple[dict[str, Any] | None, float] | None:
        """(holder or None if unreadable, age in seconds), or None when the file is gone."""
        try:
            age = time.time() - path.stat().st_mtime
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except ValueError:
            holder = None
        return (holder if isinstance(holder, dict) else None), age

    def _break_if_stale(self, path: Path, stale_after: float) -> bool:
        """Remove the claim at ``path`` if its holder is gone (checked again under a lock so two
        processes never both break and retake it); True when the claim can be tried again."""
        lock_fd = os.open(path.parent / ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            state = self._read_claim(path)
            if state is None:
                return True  # released meanwhile
            holder, age = state
            if not claim_is_stale(holder, age, stale_after):
                return False
            path.unlink(missing_ok=True)
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}" if holder
                   else "unreadable")
            warnings.warn(f"{path}: stale claim ({who}) removed; its run is taken over", stacklevel=4)
            return True
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)

    def in_flight(self, stale_after: float = CLAIM_STALE_S) -> dict[str, dict[str, Any]]:
        """Run keys claimed by live processes now, with their holders."""
        out: dict[str, dict[str, Any]] = {}
        for path in sorted((self.path / CLAIM_DIR).glob("*.claim")):
            state = self._read_claim(path)
            if state is not None and not claim_is_stale(state[0], state[1], stale_after):
                out[path.stem] = state[0] or {}
        return out

    # ---- reading

    def _read(self, target: Path) -> Iterator[dict[str, Any]]:
        if not target.exists():
            return
        experiment = target.stem.split("@", 1)[0]  # <experiment>@<writer>.jsonl belongs to <experiment>
        with open(target, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    warnings.warn(f"{target}, line {lineno}: torn or malformed record skipped "
                                  "(its run counts as missing)", stacklevel=3)
                    continue
                problem = record_problem(rec, experiment)
                if problem:
                    warnings.warn(f"{target}, line {lineno}: invalid record skipped: {problem} "
                                  "(its run counts as missing and runs again)", stacklevel=3)
                    continue
                yield rec

    def experiments(self) -> list[str]:
        return sorted({p.stem.split("@", 1)[0] for p in self.path.glob("*.jsonl")})

    def records(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """All valid records of an experiment (or of every experiment); the first record per key wins."""
        names = [experiment] if experiment else self.experiments()
        seen: set[str] = set()
        out = []
        for name in names:
            for rec in (r for path in self.files(name) for r in self._read(path)):
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


#: ``adopt(spec, record)``: whether a record stored under ``spec.legacy_key`` is ``spec``'s run
Adopt = Callable[[RunSpec, Mapping[str, Any]], bool]


def find_records(specs: Iterable[RunSpec], store: ResultStore, adopt: Adopt | None = None) -> dict[str, dict[str, Any]]:
    """``spec.key`` → stored record for the specs that have one: the record with the spec's key
    or, for a spec with fingerprints, a record stored before keys carried them (its
    :attr:`RunSpec.legacy_key`) that ``adopt`` accepts. Duplicate specs once."""
    specs = list(specs)
    by_key: dict[str, dict[str, Any]] = {}
    for exp in sorted({s.experiment for s in specs}):
        for rec in store.records(exp):
            by_key.setdefault(rec["key"], rec)
    out: dict[str, dict[str, Any]] = {}
    for s in specs:
        if s.key in out:
            continue
        rec = by_key.get(s.key)
        if rec is None and s.fingerprint and adopt is not None:
            legacy = by_key.get(s.legacy_key)
            if legacy is not None and adopt(s, legacy):
                rec = legacy
        if rec is not None:
            out[s.key] = rec
    return out


def run_grid(
    specs: Iterable[RunSpec],
    fn: Callable[[RunSpec], Mapping[str, Any]],
    store: ResultStore,
    *,
    progress: bool = True,
    desc: str = "runs",
    adopt: Adopt | None = None,
    max_runs: int | None = None,
    start_by: float | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn(spec)`` for every spec whose key is not stored yet, storing each record at once.

    ``fn`` returns the metrics (a mapping; a nested ``"extra"`` entry, if present, is stored
    beside them). The store must be writable (checked before the first run). Duplicate specs in
    the grid run once; before each run the store is checked again and the run's key claimed
    (:meth:`ResultStore.claim`), so several processes can share one grid in any order: a cell
    another live process is computing is left to it (a warning lists such cells at the end), and
    one whose claimant died is taken over. ``adopt`` lets a spec with fingerprints use a record
    stored before keys carried them (:func:`find_records`). ``max_runs`` caps the runs this call
    trains and ``start_by`` (a ``time.time()`` deadline) starts none after it: the run in progress
    finishes and the cells left are named in a warning, for the next call. Returns the records of
    all specs stored before or now, in grid order.
    """
    _process_commit()  # the code this process runs: fixed before the first run
    unique: dict[str, RunSpec] = {}
    for spec in specs:
        unique.setdefault(spec.key, spec)
    experiments = sorted({s.experiment for s in unique.values()})
    found = find_records(unique.values(), store, adopt)
    done = {exp: store.keys(exp) for exp in experiments}
    todo_keys = set(rank0_value([s.key for s in unique.values() if s.key not in found]))
    todo = [s for s in unique.values() if s.key in todo_keys]
    if todo:
        store.check_writable(experiments)
    bar = tqdm(total=len(unique), initial=len(unique) - len(todo), desc=desc, disable=not progress or not is_main_process(),
               unit="run")

    trained = 0

    def may_start() -> bool:
        """False once this call has trained ``max_runs`` runs or ``start_by`` has passed."""
        done_enough = max_runs is not None and trained >= max_runs
        return not rank0_value(done_enough or (start_by is not None and time.time() >= start_by))

    def attempt(spec: RunSpec) -> bool:
        """Run ``spec`` unless it is stored or claimed by a live process; False when claimed."""
        nonlocal trained
        if rank0_value(spec.key in store.keys(spec.experiment)):  # stored meanwhile by another process
            return True
        claim = store.claim(spec.key)
        if claim is None:
            return False
        with claim:
            if rank0_value(spec.key in store.keys(spec.experiment)):  # stored between the check and the claim
                return True
            started, t0 = _now(), time.perf_counter()
            result = dict(fn(spec))
            extra = result.pop("extra", None)
            store.append(make_record(spec, result, started, _now(), time.perf_counter() - t0, extra))
        trained += 1
        return True

    deferred, in_flight, left = [], [], []
    for spec in todo:
        if not may_start():
            left.append(spec.key)
        elif attempt(spec):
            bar.update(1)
        else:
            deferred.append(spec)
    for spec in deferred:  # a second look: claimants that died meanwhile
        if not may_start():
            left.append(spec.key)
        elif attempt(spec):
            bar.update(1)
        else:
            in_flight.append(spec.key)
    bar.close()
    if in_flight:
        warnings.warn(f"{len(in_flight)} run(s) are being computed by other processes and were left to them: "
                      f"{', '.join(in_flight)}", stacklevel=2)
    if left:
        limit = f"max_runs {max_runs}" if max_runs is not None and trained >= max_runs else "its start_by deadline"
        warnings.warn(f"{len(left)} run(s) were not started after {trained} trained ({limit}); the next call "
                      f"runs them: {', '.join(left)}", stacklevel=2)
    by_key = {**found, **{r["key"]: r for exp in done for r in store.records(exp)}}
    return [by_key[k] for k in unique if k in by_key]
