"""Preference data: one record type, loaders for four row formats, and a prompt-disjoint split.

:func:`load_preferences` reads a Hugging Face dataset id or a local ``.jsonl``, ``.jsonl.gz``,
``.json`` or ``.parquet`` file and detects the row format from the first row:

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
``upstream_row``/``upstream_source``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

Message = dict[str, str]
FORMATS = ("hh", "trl", "plain", "ultrafeedback")
LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")
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

    def drop(self, reason: str, row: int) -> None:
        self.dropped[reason] += 1
        self.dropped_rows.setdefault(reason, []).append(row)

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def __str__(self) -> str:
        drops = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items())) or "none"
        return (
            f"{self.source} [{self.format}]: {self.rows_read} rows read, {self.rows_kept} kept, "
            f"{self.rows_dropped} dropped ({drops})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "dropped": dict(self.dropped),
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
    return source.endswith(LOCAL_SUFFIXES) or Path(source).exists() or source.startswith((".", "/", "~"))


def _iter_local_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (row number, decoded row); JSONL rows are numbered by line (1-based)."""
    name = str(path)
    if not path.exists():
        raise DataError(name, None, "file not found")
    if path.is_dir():
        raise DataError(name, None, "is a directory, not a data file")
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
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types
            raise DataError(name, None, f"cannot read parquet ({err})") from None
        yield from enumerate(table.to_pylist(), start=1)
    else:
        raise DataError(name, None, f"unsupported file type; use one of {', '.join(LOCAL_SUFFIXES)}")


def _iter_hub_rows(source: str, split: str | None, **load_kwargs: Any) -> Iterator[tuple[int, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(source, split=split or "train", **load_kwargs)
    except Exception as err:  # network, missing dataset, bad split
        raise DataError(
            source, None, f"could not load from the Hugging Face hub ({type(err).__name__}: {err}); "
            "offline, pass a local .jsonl/.jsonl.gz/.json/.parquet file"
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
            {"row": rowno},
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
    return pair


def load_preferences(
    source: str | os.PathLike[str],
    split: str | None = None,
    strict: bool = False,
    limit: int | None = None,
    **load_kwargs: Any,
) -> PreferenceData:
    """Load preference pairs from a hub id, a local file or an alias (see :data:`ALIASES`).

    ``split`` selects the hub split (default ``train``); extra keyword arguments go to
    ``datasets.load_dataset`` (e.g. ``data_dir="harmless-base"`` for ``Anthropic/hh-rlhf``).
    ``limit`` (a positive integer) stops after that many rows read. The returned collection's
    ``report`` lists the detected format, rows read and kept, and drops by reason; a source with
    no usable pair (every row dropped) raises :class:`DataError`.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer (or None for every row), got {limit!r}")
    resolved = resolve_source(source)
    if _is_local(resolved):
        name = str(Path(resolved).expanduser())
        rows = _iter_local_rows(Path(name))
    else:
        name = resolved
        rows = _iter_hub_rows(resolved, split, **load_kwargs)
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
