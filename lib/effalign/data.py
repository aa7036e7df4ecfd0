"""Preference data: one record type, loaders for four row formats, and a prompt-disjoint split.

:func:`load_preferences` reads an alias (:data:`ALIASES`), a local ``.jsonl``, ``.jsonl.gz``,
``.json``, ``.parquet``, ``.csv`` or ``.csv.gz`` file, a folder written by ``datasets``'
``save_to_disk``, or a Hugging Face hub data set (``owner/name``, with ``config``, ``data_dir``,
``split`` and ``revision``), and detects the row format from the first row:

- ``hh``: Anthropic HH-RLHF, ``chosen``/``rejected`` whole dialogues with ``"\\n\\nHuman: "`` and
  ``"\\n\\nAssistant: "`` turns; the shared dialogue before the final assistant turn is the prompt.
- ``trl``: TRL conversational, ``prompt``/``chosen``/``rejected`` lists of ``{role, content}``.
- ``plain``: plain strings ``prompt``/``chosen``/``rejected``.
- ``ultrafeedback``: UltraFeedback-binarized, ``chosen``/``rejected`` message lists that include
  the user turn (the shared messages before the last assistant message are the prompt).

Malformed input raises :class:`DataError` naming the file, the row and the reason (a field of the
wrong type, bytes that are not UTF-8, malformed JSON or ``metadata``). Rows that are valid but
useless (chosen identical to rejected, HH dialogues that differ before the final assistant turn,
an empty final response) are dropped and counted in the :class:`LoadReport`; ``strict=True``
turns any drop into an error, and a file whose every row is dropped is an error too. A pair's
``metadata`` keeps its own ``row`` and ``source`` (where this load read it); a row's own
``metadata.row``/``metadata.source`` (e.g. from an exported subset) are kept as
``upstream_row``/``upstream_source``. Columns a format does not use (a numeric ``preference``, an
annotator id) are kept in each pair's ``metadata`` under their own names and listed in the
report (:attr:`LoadReport.extra_columns`).

A name that is neither an alias, nor a file or folder, nor a hub id (``owner/name``) is refused
with the list of known aliases (a mistyped alias never becomes a hub request).
:func:`source_fingerprint` is a content fingerprint of a source (a hash of the file or folder, or
the hub id and revision), part of every run key (:mod:`effalign.experiment`).
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import os
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

Message = dict[str, str]
FORMATS = ("hh", "trl", "plain", "ultrafeedback")
LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".csv", ".csv.gz")
#: files of a folder written by ``datasets``' ``save_to_disk`` (a Dataset, or a DatasetDict)
SAVED_DATASET_FILES = ("state.json", "dataset_dict.json")
ROLES = {"system", "user", "assistant"}


class DataError(ValueError):
    """Bad preference data; the message names the source, the row and the reason."""

    def __init__(self, source: str, row: int | None, reason: str):
        self.source, self.row, self.reason = source, row, reason
        where = f"{source}, row {row}" if row is not None else source
        super().__init__(f"{where}: {reason}")


@dataclass
class PreferencePair:
    """One preference pair: a prompt (chat messages) and two assistant continuations."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        """The prompt as one string (``role: content`` lines; a single user turn is bare)."""
        if len(self.prompt) == 1 and self.prompt[0]["role"] == "user":
            return self.prompt[0]["content"]
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.prompt)

    @property
    def chosen_text(self) -> str:
        return "\n".join(m["content"] for m in self.chosen)

    @property
    def rejected_text(self) -> str:
        return "\n".join(m["content"] for m in self.rejected)

    def to_trl(self, with_metadata: bool = False) -> dict[str, Any]:
        """TRL's conversational preference row (``prompt``/``chosen``/``rejected`` messages)."""
        row: dict[str, Any] = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if with_metadata:
            row["metadata"] = self.metadata
        return row


@dataclass
class LoadReport:
    """What a load did: the detected format, rows read and kept, and drops by reason."""

    source: str
    format: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    dropped_rows: dict[str, list[int]] = field(default_factory=dict)
    #: columns the row format does not use, kept in each pair's ``metadata`` (first seen first)
    extra_columns: list[str] = field(default_factory=list)

    def drop(self, reason: str, row: int) -> None:
        self.dropped[reason] += 1
        self.dropped_rows.setdefault(reason, []).append(row)

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def __str__(self) -> str:
        drops = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items())) or "none"
        extra = (f"; extra columns kept in each pair's metadata: {', '.join(self.extra_columns)}"
                 if self.extra_columns else "")
        return (
            f"{self.source} [{self.format}]: {self.rows_read} rows read, {self.rows_kept} kept, "
            f"{self.rows_dropped} dropped ({drops}){extra}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
            "extra_columns": list(self.extra_columns),
        }


class PreferenceData(Sequence[PreferencePair]):
    """A sized, indexable collection of pairs with the :class:`LoadReport` that produced it."""

    def __init__(self, pairs: Iterable[PreferencePair], report: LoadReport | None = None, name: str = ""):
        self.pairs = list(pairs)
        self.report = report
        self.name = name or (report.source if report else "")

    def __len__(self) -> int:
        return len(self.pairs)

    @overload
    def __getitem__(self, i: int) -> PreferencePair: ...
    @overload
    def __getitem__(self, i: slice) -> PreferenceData: ...
    def __getitem__(self, i: int | slice) -> PreferencePair | PreferenceData:
        if isinstance(i, slice):
            return PreferenceData(self.pairs[i], self.report, self.name)
        return self.pairs[i]

    def __iter__(self) -> Iterator[PreferencePair]:
        return iter(self.pairs)

    def __repr__(self) -> str:
        return f"PreferenceData({self.name!r}, {len(self)} pairs)"

    def subset(self, indices: Iterable[int]) -> PreferenceData:
        """The pairs at ``indices``, in that order."""
        return PreferenceData([self.pairs[int(i)] for i in indices], self.report, self.name)

    def to_trl_rows(self, with_metadata: bool = False) -> list[dict[str, Any]]:
        return [p.to_trl(with_metadata) for p in self.pairs]

    def to_dataset(self, with_metadata: bool = False) -> Any:
        """A ``datasets.Dataset`` with TRL's conversational columns."""
        import datasets

        rows = self.to_trl_rows(with_metadata)
        if with_metadata:
            for r in rows:
                r["metadata"] = json.dumps(r["metadata"], sort_keys=True)
        return datasets.Dataset.from_list(rows)

    def fingerprint(self) -> str:
        """A short content hash of the pairs (order-sensitive), for run provenance."""
        digest = hashlib.sha256()
        for p in self.pairs:
            digest.update(json.dumps(p.to_trl(), sort_keys=True, ensure_ascii=False).encode())
        return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- sources


def shared_dir() -> Path:
    """The read-only shared folder: ``$EFFALIGN_SHARED`` or ``../shared`` beside the repository."""
    env = os.environ.get("EFFALIGN_SHARED")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared"


def repo_dir() -> Path:
    """The repository root (two levels above ``lib/effalign``)."""
    return Path(__file__).resolve().parents[2]


#: Short names for the data sets this project uses; values are paths relative to their roots.
ALIASES: dict[str, tuple[str, str]] = {
    "hh-harmless": ("shared", "data/hh-rlhf/harmless-base/test.jsonl.gz"),
    "testbed": ("repo", "data/testbed/train.jsonl.gz"),
    "testbed-train": ("repo", "data/testbed/train.jsonl.gz"),
    "testbed-eval": ("repo", "data/testbed/eval.jsonl.gz"),
}


def resolve_source(source: str | os.PathLike[str]) -> str:
    """Resolve an alias (``hh-harmless``, ``testbed``…) to its file; other sources pass through."""
    text = str(source)
    if text in ALIASES:
        root, rel = ALIASES[text]
        base = shared_dir() if root == "shared" else repo_dir()
        return str(base / rel)
    return text


def _is_local(source: str) -> bool:
    return source.endswith(LOCAL_SUFFIXES) or Path(source).expanduser().exists() or source.startswith((".", "/", "~"))


def check_source_name(source: str | os.PathLike[str]) -> str:
    """The resolved source; :class:`DataError` for a name that is no alias, no existing file or
    folder and no hub id (``owner/name``): a mistyped alias, listed with the known ones."""
    resolved = resolve_source(source)
    if _is_local(resolved) or "/" in resolved:
        return resolved
    raise DataError(str(source), None, f"unknown data alias (and no such file or folder); known aliases: "
                                       f"{', '.join(sorted(ALIASES))}; a hub data set is named owner/name")


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``datasets``' ``save_to_disk``."""
    return path.is_dir() and any((path / name).is_file() for name in SAVED_DATASET_FILES)


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def content_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes; hidden files
    left out). Remembered per (path, size, modification time) within a process."""
    path = Path(path).expanduser()
    if path.is_file():
        st = path.stat()
        return _file_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)
    if not path.is_dir():
        raise DataError(str(path), None, "file not found")
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(str(rel.as_posix()).encode() + b"\0" + content_digest(f).encode())
    return digest.hexdigest()


def hub_revision(repo_id: str, revision: str | None = None, repo_type: str = "dataset") -> str | None:
    """The commit a hub repository resolves to: ``revision`` when given; else the hub's answer
    (online), else the revision of ``main`` in the local Hugging Face cache; None when unknown."""
    if revision:
        return revision
    offline = any(os.environ.get(v, "0").upper() in {"1", "ON", "YES", "TRUE"}
                  for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if not offline:
        try:
            from huggingface_hub import HfApi

            info = (HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info)(repo_id, timeout=10)
            if info.sha:
                return str(info.sha)
        except Exception:  # offline, missing, rate-limited: fall back to the cache
            pass
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        ref = Path(HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "refs" / "main"
        return ref.read_text().strip() or None
    except (OSError, ImportError):
        return None


def source_fingerprint(source: str | os.PathLike[str], revision: str | None = None) -> str:
    """A content fingerprint of a data source: ``sha256:<16 hex>`` of a file's bytes (or a
    ``save_to_disk`` folder's files), or ``hub:<id>@<commit>`` for a hub data set (the commit of
    ``revision`` or of ``main``; ``@unresolved`` with a warning when it cannot be found: give
    ``revision`` to pin it)."""
    resolved = check_source_name(source)
    if _is_local(resolved):
        return "sha256:" + content_digest(resolved)[:16]
    rev = hub_revision(resolved, revision)
    if rev is None:
        warnings.warn(f"{resolved}: the hub revision of this data set cannot be found (offline and not in the "
                      "cache); its runs are keyed on the id alone: give data.revision to pin it", stacklevel=2)
        rev = "unresolved"
    return f"hub:{resolved}@{rev}"


def _iter_local_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (row number, decoded row); JSONL rows are numbered by line (1-based)."""
    name = str(path)
    if not path.exists():
        raise DataError(name, None, "file not found")
    if path.is_dir():
        raise DataError(name, None, "is a directory, not a data file (a folder written by datasets' "
                                    "save_to_disk holds state.json or dataset_dict.json)")
    if name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        lineno = 0
        try:
            with opener(path, "rb") as fh:
                for lineno, raw in enumerate(fh, start=1):
                    try:
                        line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                    except UnicodeDecodeError as err:
                        raise DataError(name, lineno, f"not UTF-8 text (byte {err.start + 1} of the line is "
                                                      f"{raw[err.start:err.start + 1]!r})") from None
                    if not line.strip():
                        continue
                    try:
                        yield lineno, json.loads(line)
                    except json.JSONDecodeError as err:
                        raise DataError(name, lineno, f"malformed JSON ({err.msg} at column {err.colno})") from None
        except (OSError, EOFError) as err:
            after = f" after line {lineno}" if lineno else ""
            raise DataError(name, None, f"cannot read file{after} ({type(err).__name__}: {err})") from None
    elif name.endswith(".json"):
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise DataError(name, None, f"cannot read file ({err.strerror or err})") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise DataError(name, None, f"not UTF-8 text (line {line}, byte {err.start + 1} of the file is "
                                        f"{raw[err.start:err.start + 1]!r})") from None
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(name, None, f"malformed JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
        if isinstance(payload, dict) and isinstance(payload.get("data"), list):
            payload = payload["data"]
        if not isinstance(payload, list):
            raise DataError(name, None, "a .json file must hold a list of rows (or {\"data\": [...]})")
        yield from enumerate(payload, start=1)
    elif name.endswith((".csv", ".csv.gz")):
        yield from _iter_csv_rows(path)
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types
            raise DataError(name, None, f"cannot read parquet ({err})") from None
        yield from enumerate(table.to_pylist(), start=1)
    else:
        raise DataError(name, None, f"unsupported file type; use one of {', '.join(LOCAL_SUFFIXES)}")


def _csv_value(text: str, column: str) -> Any:
    """A CSV cell: message lists written as JSON text (TRL rows saved as CSV) become lists; in
    other columns numbers become numbers; the rest stays text."""
    stripped = text.strip()
    if column in ("prompt", "chosen", "rejected"):
        if stripped.startswith("[") and stripped.endswith("]"):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                return text
            if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
                return value
        return text
    if column == "metadata":
        return text
    for convert in (int, float):
        try:
            return convert(stripped)
        except ValueError:
            pass
    return text


def _iter_csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows of a CSV file with a header line (``.csv`` or gzip ``.csv.gz``), numbered from 1 (the
    first row after the header)."""
    name = str(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(name, None, f"cannot read file ({type(err).__name__}: {err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(name, None, f"not UTF-8 text (line {line} of the file)") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise DataError(name, None, "no header line (a CSV file needs column names such as prompt,chosen,rejected)")
    try:
        for rowno, row in enumerate(reader, start=1):
            if None in row:
                raise DataError(name, rowno, f"more cells than the {len(reader.fieldnames)} columns of the header")
            yield rowno, {k: _csv_value(v or "", k) for k, v in row.items() if not (v is None or k == "")}
    except csv.Error as err:
        raise DataError(name, reader.line_num, f"malformed CSV ({err})") from None


def _iter_saved_rows(path: Path, split: str | None) -> Iterator[tuple[int, Any]]:
    """Rows of a folder written by ``datasets``' ``save_to_disk`` (a DatasetDict: the ``split``,
    default ``train``)."""
    import datasets

    name = str(path)
    try:
        ds = datasets.load_from_disk(name)
    except Exception as err:  # damaged arrow files, version mismatches
        raise DataError(name, None, f"cannot read the saved data set ({type(err).__name__}: {err})") from None
    if isinstance(ds, datasets.DatasetDict):
        want = split or "train"
        if want not in ds:
            raise DataError(name, None, f"no split {want!r} in the saved data set; its splits: {', '.join(ds)}")
        ds = ds[want]
    yield from enumerate(ds, start=1)


def _iter_hub_rows(source: str, split: str | None, **load_kwargs: Any) -> Iterator[tuple[int, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(source, split=split or "train", **load_kwargs)
    except Exception as err:  # network, missing dataset, bad split
        raise DataError(
            source, None, f"could not load from the Hugging Face hub ({type(err).__name__}: {err}); "
            "offline, pass a local .jsonl/.jsonl.gz/.json/.parquet/.csv file or a save_to_disk folder"
            + (" (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set: unset it to download)"
               if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or
               os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "") else "")
        ) from None
    yield from enumerate(ds, start=1)


# --------------------------------------------------------------------------- row formats

_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def detect_format(row: Any, source: str = "<row>", rowno: int | None = None) -> str:
    """Name the row format of one decoded row, or raise :class:`DataError` listing the supported ones."""
    if not isinstance(row, dict):
        raise DataError(source, rowno, f"expected a JSON object, got {type(row).__name__}")
    if not {"chosen", "rejected"} <= set(row):
        raise DataError(
            source, rowno,
            f"unknown row format (keys: {sorted(row)}); supported: hh (chosen/rejected dialogues with "
            "'\\n\\nHuman: ' turns), trl (prompt/chosen/rejected message lists), plain (prompt/chosen/rejected "
            "strings), ultrafeedback (chosen/rejected message lists including the user turn)",
        )
    chosen, prompt = row["chosen"], row.get("prompt")
    if isinstance(prompt, list):
        return "trl"
    first = chosen[0] if isinstance(chosen, list) and chosen else None
    if isinstance(first, dict) and isinstance(first.get("role"), str) and first["role"] in {"user", "system"}:
        return "ultrafeedback"
    if isinstance(chosen, str) and "prompt" not in row and "\n\nHuman: " in chosen:
        return "hh"
    if isinstance(prompt, str) and isinstance(chosen, str):
        return "plain"
    # the keys name a format but a value has the wrong type: say which
    if "prompt" in row and not isinstance(prompt, str):
        raise DataError(source, rowno, "field 'prompt' must be text (plain format) or a list of messages "
                                       f"(trl format), got {_type_name(prompt)}")
    if isinstance(chosen, list):
        raise DataError(source, rowno, "field 'chosen' is a list but not an ultrafeedback conversation (its first "
                                       "item must be a {role: user or system, content} message), and there is "
                                       "no 'prompt' message list (trl format)")
    if isinstance(chosen, str):
        raise DataError(source, rowno, "field 'chosen' is text without '\\n\\nHuman: ' turns (hh format), and there "
                                       "is no 'prompt' field (plain format)")
    raise DataError(source, rowno, "field 'chosen' must be text (hh, plain) or a list of messages (trl, "
                                   f"ultrafeedback), got {_type_name(chosen)}")


def _type_name(value: Any) -> str:
    names = {str: "text", list: "a list", dict: "an object", int: "an integer", float: "a number",
             bool: "true/false", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class _Drop(Exception):
    """A valid but useless row, with the reason it is dropped."""


def _need(row: dict[str, Any], key: str, typ: type, source: str, rowno: int) -> Any:
    if key not in row:
        raise DataError(source, rowno, f"missing field '{key}'")
    value = row[key]
    if not isinstance(value, typ):
        raise DataError(source, rowno, f"field '{key}' must be {typ.__name__}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise DataError(source, rowno, f"field '{key}' is empty text")
    if isinstance(value, list) and not value:
        raise DataError(source, rowno, f"field '{key}' is an empty list")
    return value


def _messages(value: list[Any], key: str, source: str, rowno: int) -> list[Message]:
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(source, rowno, f"field '{key}' item {j} must be an object with 'role' and 'content'")
        if not isinstance(m["role"], str) or m["role"] not in ROLES:
            raise DataError(source, rowno, f"field '{key}' item {j} has unknown role {m['role']!r}; "
                                           f"a role is one of {', '.join(sorted(ROLES))}")
        if not isinstance(m["content"], str):
            raise DataError(source, rowno, f"field '{key}' item {j} content must be text, got {_type_name(m['content'])}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _hh_turns(dialogue: str, key: str, source: str, rowno: int) -> list[Message]:
    parts = _HH_TURN.split(dialogue)
    if parts[0].strip():
        raise DataError(source, rowno, f"field '{key}' has text before the first '\\n\\nHuman: ' turn")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def _split_last_assistant(msgs: list[Message], key: str, source: str, rowno: int) -> tuple[list[Message], Message]:
    if not msgs or msgs[-1]["role"] != "assistant":
        raise DataError(source, rowno, f"field '{key}' does not end with an assistant turn")
    if len(msgs) < 2:
        raise DataError(source, rowno, f"field '{key}' has no user turn before the assistant turn")
    return msgs[:-1], msgs[-1]


def _row_metadata(meta: Any, source: str, rowno: int) -> dict[str, Any]:
    """A row's own ``metadata`` (an object, or JSON text of one) with this load's ``row``; its own
    ``row``/``source`` are kept as ``upstream_row``/``upstream_source``."""
    if meta is None:
        meta = {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except json.JSONDecodeError as err:
            raise DataError(source, rowno, f"field 'metadata' is text but not valid JSON ({err.msg} at column "
                                           f"{err.colno})") from None
    if not isinstance(meta, dict):
        raise DataError(source, rowno, f"field 'metadata' must be an object (or JSON text of one), got {_type_name(meta)}")
    out = dict(meta)
    for key in ("row", "source"):
        if key in out:
            value = out.pop(key)
            out.setdefault(f"upstream_{key}", value)
    out["row"] = rowno
    return out


#: the columns each row format reads (or, for ultrafeedback, knowingly leaves out as copies)
FORMAT_COLUMNS = {
    "hh": {"chosen", "rejected"},
    "trl": {"prompt", "chosen", "rejected", "metadata"},
    "plain": {"prompt", "chosen", "rejected", "metadata"},
    "ultrafeedback": {"prompt", "chosen", "rejected", "messages", "prompt_id", "score_chosen", "score_rejected"},
}
#: metadata names a load sets itself; an extra column of that name is kept as ``column_<name>``
_RESERVED_METADATA = {"row", "source", "pool_index"}


def _jsonable(value: Any) -> Any:
    """A JSON-ready copy of a cell (numpy scalars and arrays, dates and bytes become numbers, lists, text)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return str(value)


def _extra_columns(fmt: str, row: dict[str, Any]) -> dict[str, Any]:
    """The row's columns that its format does not read, as metadata entries."""
    return {(f"column_{k}" if k in _RESERVED_METADATA else str(k)): _jsonable(v)
            for k, v in row.items() if k not in FORMAT_COLUMNS[fmt]}


def _parse_row(fmt: str, row: dict[str, Any], source: str, rowno: int) -> PreferencePair:
    if fmt == "hh":
        chosen_d = _need(row, "chosen", str, source, rowno)
        rejected_d = _need(row, "rejected", str, source, rowno)
        c_prompt, c_last = _split_last_assistant(_hh_turns(chosen_d, "chosen", source, rowno), "chosen", source, rowno)
        r_prompt, r_last = _split_last_assistant(_hh_turns(rejected_d, "rejected", source, rowno), "rejected", source, rowno)
        if c_prompt != r_prompt:
            raise _Drop("prompt_mismatch")
        pair = PreferencePair(c_prompt, [c_last], [r_last], {"row": rowno})
    elif fmt == "trl":
        prompt = _messages(_need(row, "prompt", list, source, rowno), "prompt", source, rowno)
        chosen = _messages(_need(row, "chosen", list, source, rowno), "chosen", source, rowno)
        rejected = _messages(_need(row, "rejected", list, source, rowno), "rejected", source, rowno)
        pair = PreferencePair(prompt, chosen, rejected, _row_metadata(row.get("metadata"), source, rowno))
    elif fmt == "plain":
        prompt = _need(row, "prompt", str, source, rowno)
        chosen = _need(row, "chosen", str, source, rowno)
        rejected = _need(row, "rejected", str, source, rowno)
        pair = PreferencePair(
            [{"role": "user", "content": prompt}],
            [{"role": "assistant", "content": chosen}],
            [{"role": "assistant", "content": rejected}],
            _row_metadata(row.get("metadata"), source, rowno),
        )
    elif fmt == "ultrafeedback":
        chosen = _messages(_need(row, "chosen", list, source, rowno), "chosen", source, rowno)
        rejected = _messages(_need(row, "rejected", list, source, rowno), "rejected", source, rowno)
        c_prompt, c_last = _split_last_assistant(chosen, "chosen", source, rowno)
        r_prompt, r_last = _split_last_assistant(rejected, "rejected", source, rowno)
        if c_prompt != r_prompt:
            raise _Drop("prompt_mismatch")
        meta = {"row": rowno}
        for key in ("prompt_id", "score_chosen", "score_rejected"):
            if key in row:
                meta[key] = row[key]
        pair = PreferencePair(c_prompt, [c_last], [r_last], meta)
    else:  # pragma: no cover - guarded by detect_format
        raise ValueError(fmt)
    for side in ("chosen", "rejected"):
        if not any(m["content"].strip() for m in getattr(pair, side)):
            raise _Drop("empty_response")
    if not any(m["content"].strip() for m in pair.prompt):
        raise DataError(source, rowno, "the prompt is empty text")
    if pair.chosen == pair.rejected:
        raise _Drop("chosen_equals_rejected")
    extra = _extra_columns(fmt, row)
    for key, value in extra.items():
        pair.metadata.setdefault(key, value)
    return pair


def load_preferences(
    source: str | os.PathLike[str],
    split: str | None = None,
    strict: bool = False,
    limit: int | None = None,
    *,
    config: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
    **load_kwargs: Any,
) -> PreferenceData:
    """Load preference pairs from an alias (see :data:`ALIASES`), a local file, a
    ``save_to_disk`` folder or a hub data set.

    ``split`` selects the split of a hub data set or of a saved ``DatasetDict`` (default
    ``train``); ``config`` (the hub configuration name), ``data_dir`` and ``revision`` and any
    other keyword arguments go to ``datasets.load_dataset`` (e.g. ``data_dir="harmless-base"`` for
    ``Anthropic/hh-rlhf``). ``limit`` (a positive integer) stops after that many rows read. The
    returned collection's ``report`` lists the detected format, rows read and kept, drops by
    reason and the extra columns kept in metadata; a source with no usable pair (every row
    dropped) raises :class:`DataError`, and so does an unknown alias-like name.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer (or None for every row), got {limit!r}")
    resolved = check_source_name(source)
    if _is_local(resolved):
        name = str(Path(resolved).expanduser())
        rows = (_iter_saved_rows(Path(name), split) if is_saved_dataset(Path(name))
                else _iter_local_rows(Path(name)))
    else:
        name = resolved
        hub_kwargs = {k: v for k, v in (("name", config), ("data_dir", data_dir), ("revision", revision)) if v}
        rows = _iter_hub_rows(resolved, split, **hub_kwargs, **load_kwargs)
    report: LoadReport | None = None
    pairs: list[PreferencePair] = []
    for rowno, row in rows:
        if limit is not None and report is not None and report.rows_read >= limit:
            break
        if report is None:
            report = LoadReport(name, detect_format(row, name, rowno))
        elif not isinstance(row, dict):
            raise DataError(name, rowno, f"expected a JSON object, got {type(row).__name__}")
        report.rows_read += 1
        for key in row:
            if key not in FORMAT_COLUMNS[report.format] and key not in report.extra_columns:
                report.extra_columns.append(key)
        try:
            pair = _parse_row(report.format, row, name, rowno)
        except _Drop as drop:
            if strict:
                raise DataError(name, rowno, f"dropped row ({drop.args[0]}) with strict=True") from None
            report.drop(drop.args[0], rowno)
            continue
        pair.metadata["source"] = Path(name).name if _is_local(resolved) else name
        pairs.append(pair)
    if report is None:
        raise DataError(name, None, "no rows found")
    report.rows_kept = len(pairs)
    if not pairs:
        reasons = "; ".join(f"{reason}: {count} (rows {', '.join(map(str, report.dropped_rows[reason][:5]))}"
                            f"{', …' if count > 5 else ''})" for reason, count in sorted(report.dropped.items()))
        raise DataError(name, None, f"no usable pairs: all {report.rows_read} rows were dropped ({reasons})")
    return PreferenceData(pairs, report, name=str(source))


# --------------------------------------------------------------------------- split


def normalise_prompt(pair: PreferencePair) -> str:
    """Case-folded, NFKC-normalised prompt text with whitespace collapsed."""
    text = unicodedata.normalize("NFKC", pair.prompt_text).casefold()
    return " ".join(text.split())


def prompt_hash(pair: PreferencePair, seed: int = 0) -> int:
    """A stable 64-bit hash of the normalised prompt, salted by ``seed``."""
    digest = hashlib.sha256(f"{seed}\x00{normalise_prompt(pair)}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def split_by_prompt(
    data: PreferenceData, eval_size: float | int = 0.13, seed: int = 0
) -> tuple[PreferenceData, PreferenceData]:
    """Deterministic pool/eval split that keeps every row of one prompt on the same side.

    Prompts are ordered by a salted hash of their normalised text; the first prompts go to
    evaluation until ``eval_size`` rows are reached (a fraction of all rows if < 1, a count
    otherwise). The result does not depend on the row order.
    """
    n = len(data)
    target = int(round(eval_size * n)) if eval_size < 1 else int(eval_size)
    if not 0 < target < n:
        raise ValueError(f"eval_size={eval_size} gives {target} evaluation rows out of {n}; need 0 < rows < {n}")
    groups: dict[str, list[int]] = {}
    for i, pair in enumerate(data):
        groups.setdefault(normalise_prompt(pair), []).append(i)
    order = sorted(groups, key=lambda k: hashlib.sha256(f"{seed}\x00{k}".encode()).digest())
    eval_idx: list[int] = []
    for key in order:
        if len(eval_idx) >= target:
            break
        eval_idx.extend(groups[key])
    eval_set = set(eval_idx)
    pool_idx = [i for i in range(n) if i not in eval_set]
    return data.subset(pool_idx), data.subset(sorted(eval_idx))


def write_jsonl_gz(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as gzip JSONL (deterministic bytes: no timestamp); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    count = 0
    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            for row in rows:
                gz.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
                count += 1
            gz.flush()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only when writing or renaming failed
    return count
