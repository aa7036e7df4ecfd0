"""Fault injection (issue 19): every bad input gets a clear error, no fault loses or falsifies a
record, caches and models heal, no default command reaches the network.

Each test ends by recording what it tried and what happened (the observed message or counts);
the module writes those rows to ``benchmarks/results/reliability.json``, and
``python scripts/reliability_table.py`` puts them into the README's reliability section.

Real processes are killed with SIGKILL and run concurrently through a fork server that has
imported torch, TRL and sentence-transformers once, so each child starts in well under a second.
Faults that need a real small or read-only file system mount a tmpfs inside an unprivileged
user namespace (``unshare -rm``); they are skipped where that is not allowed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from effalign import cli
from effalign.data import load_preferences
from effalign.runs import CLAIM_DIR, ResultStore, RunSpec, StoreError, run_grid

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ROOT / "benchmarks" / "results" / "reliability.json"
AREAS = ("bad input", "run store", "several runners", "caches", "models", "network")
_ROWS: dict[str, list[dict[str, str]]] = {}


# --------------------------------------------------------------------------- recording outcomes


def _clean(text: str) -> str:
    """Outcome text without the test's temporary paths, host or pids (stable across runs)."""
    text = re.sub(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/[^/\s'\"]+", "<tmp>", str(text))
    text = re.sub(r"/tmp/[A-Za-z0-9_.-]+/", "<tmp>/", text)
    return text.replace(str(Path.home()), "~").replace(socket.gethostname(), "<host>")


@pytest.fixture
def record(request):
    """``record(area, tried, outcome)``: a row of the README table, kept only if the test passes."""
    rows: list[dict[str, str]] = []
    failed_before = request.session.testsfailed
    yield lambda area, tried, outcome: rows.append({"area": area, "tried": _clean(tried), "outcome": _clean(outcome)})
    if request.session.testsfailed == failed_before and rows:
        _ROWS[request.node.name] = rows


@pytest.fixture(scope="module", autouse=True)
def write_outcomes(request):
    """After the module: merge this run's rows into the outcomes file (tests not run keep theirs,
    tests that no longer exist are dropped)."""
    yield
    if not _ROWS:
        return
    old = json.loads(OUTCOMES.read_text()) if OUTCOMES.exists() else {}
    names = [item.name for item in request.node.collect()]  # every test of the module, in file order
    tests = {**old.get("tests", {}), **_ROWS}
    tests = {name: tests[name] for name in names if name in tests}
    OUTCOMES.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"generated_by": "tests/test_reliability.py", "tests": tests}, indent=1, ensure_ascii=False) + "\n"
    if not OUTCOMES.exists() or OUTCOMES.read_text() != text:
        OUTCOMES.write_text(text)


def q(message: object) -> str:
    """A message as inline code in the README (double backticks when it holds a backtick)."""
    text = str(message)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def run_main(capsys, *args) -> tuple[int, str]:
    """``python -m effalign <args>`` in this process: exit status and the last stderr line."""
    rc = cli.main([str(a) for a in args])
    lines = capsys.readouterr().err.strip().splitlines()
    return rc, (lines[-1] if lines else "")


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def plain_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    words = "apple river stone cloud green quick lazy bright shadow music paper window garden silver".split()
    return [{"prompt": " ".join(rng.choices(words, k=6)) + f" question {i}?", "chosen": " ".join(rng.choices(words, k=5)),
             "rejected": " ".join(rng.choices(words, k=4))} for i in range(n)]


def unshare_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True, timeout=20)
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(not unshare_available(), reason="cannot mount a tmpfs in a user namespace here")


# --------------------------------------------------------------------------- bad input: data files


TRL = {"prompt": [{"role": "user", "content": "Name a colour."}], "chosen": [{"role": "assistant", "content": "Blue."}],
       "rejected": [{"role": "assistant", "content": "Seven."}]}
UF = {"prompt": "Say hi.", "chosen": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
      "rejected": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "No."}]}
HH = "\n\nHuman: {q}\n\nAssistant: {a}"


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


BAD_DATA = [
    ("an integer `chosen` on row 1 (.jsonl)", "bad.jsonl",
     lambda p: write_rows(p, [{"prompt": "Q?", "chosen": 3, "rejected": "no"}]),
     r"bad\.jsonl, row 1: field 'chosen' must be text .* got an integer"),
    ("a parquet file with the HH columns but an integer `chosen`", "bad.parquet",
     lambda p: _parquet(p, {"chosen": [1, 2], "rejected": ["a", "b"]}),
     r"bad\.parquet, row 1: field 'chosen' must be text .* got an integer"),
    ("a plain row with an integer `rejected` on row 2", "bad.jsonl",
     lambda p: write_rows(p, [{"prompt": "Q?", "chosen": "yes", "rejected": "no"}, {"prompt": "Q?", "chosen": "y", "rejected": 7}]),
     r"bad\.jsonl, row 2: field 'rejected' must be str, got int"),
    ("a file whose every row has chosen == rejected (0 pairs and no warning before)", "same.jsonl",
     lambda p: write_rows(p, [{"prompt": f"Q{i}?", "chosen": "same", "rejected": "same"} for i in range(3)]),
     r"same\.jsonl: no usable pairs: all 3 rows were dropped \(chosen_equals_rejected: 3 \(rows 1, 2, 3\)\)"),
    ("an HH file whose every pair differs before the last turn", "hh.jsonl",
     lambda p: write_rows(p, [{"chosen": HH.format(q=f"Q{i}", a="yes"), "rejected": HH.format(q=f"other {i}", a="no")}
                              for i in range(2)]),
     r"hh\.jsonl: no usable pairs: all 2 rows were dropped \(prompt_mismatch: 2"),
    ("bytes that are not UTF-8 on line 2 of a .jsonl (no line number before)", "latin.jsonl",
     lambda p: _bytes(p, json.dumps({"prompt": "Q?", "chosen": "a", "rejected": "b"}).encode() + b"\n"
                             + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'),
     r"latin\.jsonl, row 2: not UTF-8 text \(byte 16 of the line is b'\\xe9'\)"),
    ("bytes that are not UTF-8 in a .json (no file name before)", "latin.json",
     lambda p: _bytes(p, b'[\n{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}]'),
     r"latin\.json: not UTF-8 text \(line 2, byte 18 of the file is b'\\xe9'\)"),
    ("TRL `metadata` that is malformed JSON text (a bare decode message before)", "meta.jsonl",
     lambda p: write_rows(p, [{**TRL, "metadata": "{broken"}]),
     r"meta\.jsonl, row 1: field 'metadata' is text but not valid JSON"),
    ("TRL `metadata` that is a list (TypeError before)", "meta.jsonl",
     lambda p: write_rows(p, [{**TRL, "metadata": [1, 2]}]),
     r"meta\.jsonl, row 1: field 'metadata' must be an object \(or JSON text of one\), got a list"),
    ("an UltraFeedback `role` that is a list (TypeError before)", "uf.jsonl",
     lambda p: write_rows(p, [{**UF, "chosen": [UF["chosen"][0], {"role": ["assistant"], "content": "Hi!"}]}]),
     r"uf\.jsonl, row 1: field 'chosen' item 1 has unknown role \['assistant'\]"),
    ("an UltraFeedback first `role` that is a list", "uf.jsonl",
     lambda p: write_rows(p, [{**UF, "chosen": [{"role": ["user"], "content": "Say hi."}, UF["chosen"][1]]}]),
     r"uf\.jsonl, row 1: field 'chosen' is a list but not an ultrafeedback conversation"),
    ("a truncated .jsonl.gz", "cut.jsonl.gz",
     lambda p: _bytes(p, gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in plain_pairs(400)))[:900]),
     r"cut\.jsonl\.gz: cannot read file after line \d+ \(EOFError"),
]


@pytest.mark.parametrize("tried, name, make, message", BAD_DATA, ids=[b[0] for b in BAD_DATA])
def test_bad_data_is_a_clear_cli_error(tmp_path, capsys, record, tried, name, make, message):
    source = make(tmp_path / name)
    rc, err = run_main(capsys, "select", "--source", source, "--sampler", "random", "--budget", 1,
                       "--out", tmp_path / "out.jsonl")
    assert rc == 2 and err.startswith("effalign: error: ") and re.search(message, err), err
    assert not list(tmp_path.glob("out*")), "nothing is written on an error"
    record("bad input", f"`select` on {tried}", f"exit 2: {q(err)}")


def test_limit_must_be_positive(tmp_path, record):
    path = write_rows(tmp_path / "p.jsonl", plain_pairs(3))
    for limit in (0, -1):
        with pytest.raises(ValueError, match=f"limit must be a positive integer .* got {limit}") as err:
            load_preferences(path, limit=limit)
        record("bad input", f"`load_preferences(limit={limit})` (returned one pair before)", f"ValueError: {q(err.value)}")
    assert len(load_preferences(path, limit=2)) == 2


def test_row_metadata_does_not_override_provenance(tmp_path, record):
    rows = [{**TRL, "metadata": {"row": 99, "source": "upstream.jsonl", "pool_index": 5, "topic": "x"}}]
    pair = load_preferences(write_rows(tmp_path / "subset.jsonl", rows))[0]
    assert pair.metadata["row"] == 1 and pair.metadata["source"] == "subset.jsonl"
    assert pair.metadata["upstream_row"] == 99 and pair.metadata["upstream_source"] == "upstream.jsonl"
    assert pair.metadata["topic"] == "x" and pair.metadata["pool_index"] == 5
    record("bad input", "a row whose `metadata` carries its own `row`/`source` (an exported subset)",
           "the pair keeps where it was read (`row` 1, `source` subset.jsonl); the row's own values are kept as "
           "`upstream_row`/`upstream_source`")


# --------------------------------------------------------------------------- bad input: arguments


@pytest.fixture
def no_export(monkeypatch):
    """Fail loudly if a command gets as far as loading data and selecting."""
    import effalign.export

    def boom(*args, **kwargs):
        raise AssertionError("export_subset reached: the arguments were not checked first")

    monkeypatch.setattr(effalign.export, "export_subset", boom)


@pytest.mark.parametrize("args, message", [
    (["--params", "{dim:3}"], r"argument --params: not valid JSON \(Expecting property name enclosed in double quotes"),
    (["--params", "[1]"], r"argument --params: must be a JSON object such as \{\"dim\": 16\}, got '\[1\]'"),
    (["--params", '{"dim": "abc"}'], r"argument --params: isa parameter 'dim' must be an integer or null, got str 'abc'"),
    (["--params", '{"colour": 1}'], r"argument --params: sampler 'isa' does not take 'colour'"),
    (["--sampler", "nope"], r"argument --sampler: unknown sampler 'nope'"),
    (["--fraction", "0"], r"argument --fraction: must be in \(0, 1\], got 0.0"),
    (["--budget", "0"], r"argument --budget: must be at least 1, got 0"),
], ids=["params-not-json", "params-list", "params-wrong-type", "params-unknown", "sampler", "fraction", "budget"])
def test_bad_arguments_fail_before_any_work(tmp_path, capsys, record, no_export, args, message):
    source = write_rows(tmp_path / "p.jsonl", plain_pairs(10))
    base = {"--sampler": "isa", "--fraction": "0.5"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    if "--budget" in base:
        base.pop("--fraction")
    argv = ["select", "--source", source, "--out", tmp_path / "o.jsonl"] + [x for kv in base.items() for x in kv]
    t0 = time.perf_counter()
    rc, err = run_main(capsys, *argv)
    assert rc == 2 and re.search(message, err), err
    assert time.perf_counter() - t0 < 5  # no data loaded, nothing embedded
    shown = " ".join(f"{k} {v!r}" if k == "--params" else f"{k} {v}" for k, v in zip(args[::2], args[1::2]))
    record("bad input", f"`select {shown}`", f"exit 2 before loading data: {q(err)}")


def test_out_is_a_directory_or_the_input(tmp_path, capsys, record, no_export):
    source = write_rows(tmp_path / "p.jsonl", plain_pairs(10))
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    folder = tmp_path / "subset.jsonl"
    folder.mkdir()
    rc, err = run_main(capsys, "select", "--source", source, "--sampler", "random", "--budget", 2, "--out", folder)
    assert rc == 2 and "is a directory; give a file name" in err and not list(tmp_path.rglob("*.tmp"))
    record("bad input", "`select --out` naming a directory (was IsADirectoryError, left a .tmp file)", f"exit 2: {q(err)}; no .tmp file")
    rc, err = run_main(capsys, "select", "--source", source, "--sampler", "random", "--budget", 2, "--out", source)
    assert rc == 2 and "is the input data" in err
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    record("bad input", "`select --out` equal to `--source` (overwrote the input before)", f"exit 2, input unchanged: {q(err)}")


@needs_unshare
def test_out_on_a_read_only_file_system(tmp_path, record):
    source = write_rows(tmp_path / "p.jsonl", plain_pairs(10))
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount -t tmpfs -o ro tmpfs {ro} && {sys.executable} -m effalign select --source {source} "
              f"--sampler random --budget 2 --out {ro}/subset.jsonl")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    err = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "cannot write in" in err and "Read-only file system" in err, proc.stderr
    record("bad input", "`select --out` on a read-only file system", f"exit 2 before loading data: {q(err)}")


@pytest.mark.parametrize("error, expected", [
    (TypeError("unsupported operand"), "effalign: error: TypeError: unsupported operand (EFFALIGN_DEBUG=1 shows where)"),
    (sqlite3.OperationalError("disk I/O error"), "effalign: error: SQLite cache error (OperationalError: disk I/O error)"),
    (PermissionError(13, "Permission denied", "/data/x.jsonl"), "effalign: error: /data/x.jsonl: Permission denied"),
], ids=["TypeError", "sqlite3", "OSError"])
def test_unexpected_exceptions_are_one_line(tmp_path, capsys, monkeypatch, record, error, expected):
    import effalign.export

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(effalign.export, "export_subset", fail)
    source = write_rows(tmp_path / "p.jsonl", plain_pairs(4))
    rc, err = run_main(capsys, "select", "--source", source, "--sampler", "random", "--budget", 1, "--out", tmp_path / "o.jsonl")
    assert rc == 2 and err == expected
    name = type(error).__name__
    record("bad input", f"{'an' if name[0] in 'AEIOU' else 'a'} {name} raised inside a command (escaped as a traceback "
           "before)", f"exit 2: {q(err)}")


GRID = """\
experiment: tiny
data: {{source: {source}, eval_size: 6, split_seed: 0}}
model: tiny-random
samplers: [random]
budgets: [4]
seeds: [0, 1, 2, 3]
train: {{epochs: 1, batch_size: 4, lora: false, learning_rate: {lr}, warmup_ratio: 0.0, max_prompt_tokens: 16, max_completion_tokens: 8}}
eval: {{n_boot: 20, batch_size: 8}}
"""


def tiny_grid(folder: Path, lr: str = "0.005", extra: str = "", n_pairs: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    source = write_rows(folder / "pairs.jsonl", plain_pairs(n_pairs))
    path = folder / "grid.yaml"
    path.write_text(GRID.format(source=source, lr=lr) + extra)
    return path


def test_grid_number_written_as_text_is_read_as_a_number(tmp_path, record):
    from effalign.experiment import expand_grid, load_grid

    grid = load_grid(tiny_grid(tmp_path / "a", lr="5e-4"))
    assert grid["train"]["learning_rate"] == 0.0005 and isinstance(grid["train"]["learning_rate"], float)
    same = load_grid(tiny_grid(tmp_path / "b", lr="0.0005"))
    assert [s.key for s in expand_grid(grid)] == [s.key for s in expand_grid({**same, "data": grid["data"]})]
    record("bad input", "a grid with `learning_rate: 5e-4` (PyYAML reads the string '5e-4'; failed in the optimiser)",
           "read as the number 0.0005 when the grid is loaded (same run keys as `0.0005`)")


@pytest.mark.parametrize("tried, lr, extra, message", [
    ("`learning_rate: fast`", "fast", "", r"grid\.yaml: train\.learning_rate must be a number, got str 'fast'"),
    ("the unknown key `seed: 3` (a typo for seeds)", "0.005", "seed: 3\n", r"grid\.yaml: unknown grid key\(s\) 'seed'"),
    ("`store: [a]`", "0.005", "store: [a]\n", r"grid\.yaml: 'store' must be text"),
    ("`learning_rate: -1`", "-1", "", r"grid\.yaml: train\.learning_rate must be positive, got -1"),
], ids=["lr-text", "unknown-key", "store-type", "lr-negative"])
def test_bad_grid_fails_before_any_work(tmp_path, capsys, record, tried, lr, extra, message):
    grid = tiny_grid(tmp_path, lr=lr, extra=extra)
    t0 = time.perf_counter()
    rc, err = run_main(capsys, "run", "--grid", grid, "--store", tmp_path / "store", "--quiet")
    assert rc == 2 and re.search(message, err), err
    assert not (tmp_path / "store").exists() and time.perf_counter() - t0 < 20
    record("bad input", f"`run` on a grid with {tried}", f"exit 2 before any run: {q(err)}")


def test_bad_grid_sampler_parameters_and_yaml(tmp_path, capsys, record):
    grid = tiny_grid(tmp_path)
    text = grid.read_text().replace("samplers: [random]", "samplers: [{name: isa, params: {dim: abc}}]")
    grid.write_text(text)
    rc, err = run_main(capsys, "run", "--grid", grid, "--dry-run")
    assert rc == 2 and re.search(r"samplers\[0\]: isa parameter 'dim' must be an integer or null, got str 'abc'", err), err
    record("bad input", "a grid sampler with `params: {dim: abc}`", f"exit 2: {q(err)}")
    grid.write_text("experiment: [unclosed\n")
    rc, err = run_main(capsys, "run", "--grid", grid, "--dry-run")
    assert rc == 2 and re.search(r"grid\.yaml: not valid YAML at line 2", err), err
    record("bad input", "a grid file that is not valid YAML", f"exit 2: {q(err)}")


# --------------------------------------------------------------------------- run store


def spec(seed: int, experiment: str = "t") -> RunSpec:
    return RunSpec(experiment=experiment, data={"source": "x"}, model="tiny", sampler="random", budget=5, seed=seed)


def test_edited_or_malformed_records_are_skipped_and_run_again(tmp_path, record):
    store = ResultStore(tmp_path)
    run_grid([spec(0), spec(1)], lambda s: {"acc": 0.5}, store, progress=False)
    lines = store.file("t").read_text().splitlines()
    edited = json.loads(lines[0])
    edited["spec"]["seed"] = 7  # the real cell would disappear, a fake one appear
    edited["metrics"]["acc"] = 0.99
    wrong_schema = json.loads(lines[1])
    wrong_schema["metrics"] = [0.5]
    store.file("t").write_text(json.dumps(edited) + "\n" + json.dumps(wrong_schema) + "\n")
    with pytest.warns(UserWarning) as caught:
        assert store.records("t") == []
    messages = sorted(str(w.message) for w in caught)
    assert any("line 1: invalid record skipped: key" in m and "is not its spec's key" in m for m in messages)
    assert any("line 2: invalid record skipped: 'metrics' must be an object, not list" in m for m in messages)
    calls = []
    with pytest.warns(UserWarning, match="invalid record skipped"):
        recs = run_grid([spec(0), spec(1)], lambda s: calls.append(s.seed) or {"acc": 0.5}, store, progress=False)
    assert calls == [0, 1] and [r["metrics"]["acc"] for r in recs] == [0.5, 0.5]
    for problem, tried in [(messages[0], "a record whose spec was edited after it was stored (accepted before)"),
                           (messages[1], "a record with `metrics` of the wrong type (counted as done, then crashed the report)")]:
        record("run store", tried, "skipped with a warning naming file and line, its cell run again: `"
               + problem.split(": ", 1)[1].split(" (its run")[0] + "`")


def test_short_write_is_undone_and_raised(tmp_path, monkeypatch, record):
    import effalign.runs as runs

    store = ResultStore(tmp_path)
    run_grid([spec(0)], lambda s: {"acc": 0.5}, store, progress=False)
    before = store.file("t").read_bytes()
    real_write = os.write

    def short_write(fd, data):  # half the bytes land, then the disk is full
        if os.readlink(f"/proc/self/fd/{fd}").endswith("t.jsonl") and len(data) > 100:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(runs.os, "write", short_write)
    with pytest.raises(StoreError, match=r"could not store run \w+ in .*t\.jsonl \(No space left on device\); the file is left as it was") as err:
        run_grid([spec(1)], lambda s: {"acc": 0.5}, store, progress=False)
    monkeypatch.setattr(runs.os, "write", real_write)
    assert store.file("t").read_bytes() == before
    run_grid([spec(1)], lambda s: {"acc": 0.5}, store, progress=False)
    assert len(store.records("t")) == 2
    record("run store", "an injected short write (half a record, then ENOSPC; was a torn record and exit 0)",
           f"StoreError `{str(err.value).split(' in ')[0]} …: No space left on device; the file is left as it was`; "
           "file byte-identical to before; the next run stores it")


FILL_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import effalign.runs
    from effalign.runs import ResultStore, RunSpec, StoreError, run_grid
    effalign.runs.git_commit = lambda repo=None: "test"  # provenance without git and torch (fast)
    effalign.runs.device_description = lambda: {"device": "cpu"}
    store = ResultStore(sys.argv[1])
    specs = [RunSpec("big", {"source": "x"}, "tiny", "random", 5, seed) for seed in range(int(sys.argv[2]))]
    try:
        run_grid(specs, lambda s: {"acc": 0.5, "extra": {"payload": "x" * 12000}}, store, progress=False)
    except StoreError as err:
        print("STOREERROR", err, file=sys.stderr)
        sys.exit(2)
""")


def _check_lines(path: Path, experiment: str | None = None) -> tuple[int, int, int]:
    """(valid records, distinct keys, torn or invalid lines) of a store file."""
    from effalign.runs import record_problem

    good, keys, bad = 0, set(), 0
    data = path.read_bytes() if path.exists() else b""
    if data and not data.endswith(b"\n"):
        bad += 1
    for line in data.splitlines():
        try:
            rec = json.loads(line)
            assert record_problem(rec, experiment or path.stem) is None
            good += 1
            keys.add(rec["key"])
        except (ValueError, AssertionError):
            bad += 1
    return good, len(keys), bad


@needs_unshare
def test_full_64k_file_system(tmp_path, record):
    script = tmp_path / "fill.py"
    script.write_text(FILL_SCRIPT)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh = (f"mount -t tmpfs -o size=64k tmpfs {mnt} && "
          f"{sys.executable} {script} {mnt}/store 8; echo RC1=$?; "
          f"cp {mnt}/store/big.jsonl {tmp_path}/after_fail.jsonl; "
          f"mount -o remount,size=1m {mnt} && {sys.executable} {script} {mnt}/store 8; echo RC2=$?; "
          f"cp {mnt}/store/big.jsonl {tmp_path}/after_resume.jsonl")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", sh], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    out = proc.stdout + proc.stderr
    assert "RC1=2" in out and "RC2=0" in out, out
    err = next(line for line in out.splitlines() if line.startswith("STOREERROR"))
    assert "No space left on device" in err or "not writable" in err
    good, keys, bad = _check_lines(tmp_path / "after_fail.jsonl", "big")
    assert bad == 0 and 0 < good < 8 and keys == good
    good2, keys2, bad2 = _check_lines(tmp_path / "after_resume.jsonl", "big")
    assert (good2, keys2, bad2) == (8, 8, 0)
    record("run store", "a 64 KB file system filling up during a grid of 12 KB records",
           f"exit 2 with `{err.split(' ', 1)[1].split(' in ')[0]} …: No space left on device; the file is left as it was`; "
           f"{good} whole records kept, 0 torn; after freeing space the resume stores 8 of 8, 0 duplicated")


RLIMIT_SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    import effalign.runs
    from effalign.runs import ResultStore, RunSpec, StoreError, make_record
    effalign.runs.git_commit = lambda repo=None: "test"  # provenance without git and torch (fast)
    effalign.runs.device_description = lambda: {"device": "cpu"}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit then fails with EFBIG
    store = ResultStore(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
    stored = 0
    for seed in range(100):
        try:
            store.append(make_record(RunSpec("lim", {"source": "x"}, "tiny", "random", 5, seed), {"acc": 0.5},
                                     "t0", "t1", 1.0, {"payload": "y" * 3000}))
            stored += 1
        except StoreError as err:
            print("STOREERROR", stored, err)
            sys.exit(0)
""")


def test_kernel_short_write_at_a_file_size_limit(tmp_path, record):
    script = tmp_path / "lim.py"
    script.write_text(RLIMIT_SCRIPT)
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, str(script), str(store), "20000"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("STOREERROR"))
    stored = int(line.split()[1])
    assert "File too large" in line
    good, keys, bad = _check_lines(store / "lim.jsonl")
    assert good == keys == stored and bad == 0 and (store / "lim.jsonl").stat().st_size < 20000
    record("run store", "a file-size limit reached inside a record (the kernel writes part of it, then EFBIG)",
           f"StoreError `… (File too large); the file is left as it was`; {stored} whole records, 0 torn")


@needs_unshare
def test_read_only_store_fails_before_the_first_run(tmp_path, record):
    grid = tiny_grid(tmp_path / "g")
    ro = tmp_path / "ro"
    ro.mkdir()
    sh = (f"mount -t tmpfs -o ro tmpfs {ro} && {sys.executable} -m effalign run --grid {grid} --store {ro}/results "
          "--threads 1 --quiet")
    t0 = time.perf_counter()
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", sh], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    seconds = time.perf_counter() - t0
    err = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "is not writable (Read-only file system); nothing was run" in err, proc.stderr
    assert "log-probs" not in proc.stderr and seconds < 60
    record("run store", "`run` with the store on a read-only file system (found only after training before)",
           f"exit 2 before loading data or model: {q(err)}")


def test_new_store_folder_and_file_are_synced(tmp_path, monkeypatch, record):
    import effalign.runs as runs

    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(runs.os, "fsync", spy)
    store = ResultStore(tmp_path / "a" / "results")
    run_grid([spec(0)], lambda s: {"acc": 0.5}, store, progress=False)
    assert str(store.file("t")) in synced  # the record
    assert str(tmp_path / "a" / "results") in synced and str(tmp_path / "a") in synced and str(tmp_path) in synced
    record("run store", "a new store folder and experiment file (a crash could lose the new directory entries)",
           "the record, the new file's folder and each new folder's parent are fsynced")


# --------------------------------------------------------------------------- several runners, kill -9


class Children:
    """Child processes from a fork server that imported the heavy libraries once."""

    def __init__(self, ctx, base: Path):
        self.ctx, self.base, self.guard = ctx, base, base / "network.log"
        self.n = 0

    def start(self, args: list) -> multiprocessing.Process:
        from _reliability_worker import run_cli

        self.n += 1
        proc = self.ctx.Process(target=run_cli, args=([str(a) for a in args], str(self.guard), str(self.base / f"child{self.n}.log")))
        proc.start()
        return proc

    def connections(self) -> list[str]:
        return self.guard.read_text().splitlines() if self.guard.exists() else []


@pytest.fixture(scope="module", autouse=True)
def fork_server(tmp_path_factory):
    """A fork server, started when the module starts so that it imports torch, TRL and
    sentence-transformers while the other tests run. Its children run ``python -m effalign`` with
    a separate cache (the models linked in), one thread, and conftest's Hugging Face variables
    removed (so that the network test sees the defaults a user gets)."""
    from multiprocessing import forkserver

    from effalign.models import materialise_smollm2, materialise_tiny

    base = tmp_path_factory.mktemp("children")
    (base / "cache" / "models").mkdir(parents=True)
    for path in (materialise_smollm2().path, materialise_tiny()):
        (base / "cache" / "models" / path.name).symlink_to(path)
    saved = dict(os.environ)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.pop(var, None)
    os.environ.update(EFFALIGN_CACHE=str(base / "cache"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                      TOKENIZERS_PARALLELISM="false", PYTHONPATH=os.pathsep.join(sys.path))
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["_reliability_worker", "effalign.cli", "effalign.experiment", "effalign.samplers",
                                "trl.trainer.dpo_trainer", "peft", "sentence_transformers"])
    try:
        forkserver.ensure_running()  # returns at once; the server imports in the background
    finally:
        os.environ.clear()
        os.environ.update(saved)
    yield Children(ctx, base)
    server = forkserver._forkserver
    if getattr(server, "_forkserver_pid", None):  # the server holds torch and TRL: end it now
        os.kill(server._forkserver_pid, signal.SIGKILL)
        server._stop()


@pytest.fixture(scope="module")
def children(fork_server):
    return fork_server


TIMING = ("wall_s", "pairs_per_s", "tokens_per_s", "peak_memory_mb", "select_s", "eval_s", "cpu_s")


def _science(rec: dict) -> dict:
    """A record's metrics without the timings (which differ between any two runs) and the cost breakdown
    (a resumed process charges the shared reference work to other runs than an uninterrupted one); NaN (e.g.
    ``best_val_loss`` of a run without validation) as text, since NaN never equals itself."""
    return {k: "nan" if isinstance(v, float) and v != v else v for k, v in rec["metrics"].items() if k not in TIMING and not k.startswith("cost_")}


@pytest.fixture(scope="module")
def concurrent_store(children):
    """Two runners started together on one tiny grid, same direction (the reference records)."""
    folder = children.base / "concurrent"
    grid = tiny_grid(folder)
    store = folder / "store"
    procs = [children.start(["run", "--grid", grid, "--store", store, "--threads", "1", "--quiet"]) for _ in range(2)]
    for p in procs:
        p.join(300)
    return grid, store, [p.exitcode for p in procs]


def test_two_runners_on_one_grid_train_each_cell_once(concurrent_store, record):
    grid, store, codes = concurrent_store
    assert codes == [0, 0]
    good, keys, bad = _check_lines(store / "tiny.jsonl")
    assert (good, keys, bad) == (4, 4, 0)  # one line per cell: no cell trained twice
    assert not list((store / CLAIM_DIR).glob("*.claim"))
    record("several runners", "two `run` processes started together on one 4-cell tiny grid, same direction "
           "(trained every cell twice before)", "each cell trained once (4 records, 4 lines, 0 duplicated); no claim left")


def test_kill_9_at_random_points_then_resume(children, concurrent_store, record):
    grid, reference_store, _ = concurrent_store
    store = children.base / "killed"
    rng = random.Random(19)
    kills, stored_at_kill = 0, []
    for i in range(3):  # the i-th kill comes a random 0-0.5 s after the i-th record is stored
        proc = children.start(["run", "--grid", grid, "--store", store, "--threads", "1", "--quiet"])
        deadline = time.time() + 120
        while _check_lines(store / "tiny.jsonl")[0] < i and proc.exitcode is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.exitcode is None:
            proc.kill()
            kills += 1
        proc.join(60)
        stored_at_kill.append(_check_lines(store / "tiny.jsonl")[0])
    assert kills >= 1, stored_at_kill
    for path in store.glob(f"{CLAIM_DIR}/*.claim"):  # claims of killed runs: recovered by the resume
        assert json.loads(path.read_text())["host"] == socket.gethostname()
    proc = children.start(["run", "--grid", grid, "--store", store, "--threads", "1", "--quiet"])
    proc.join(300)
    assert proc.exitcode == 0
    good, keys, bad = _check_lines(store / "tiny.jsonl")
    assert (good, keys, bad) == (4, 4, 0)
    reference = {r["key"]: _science(r) for r in ResultStore(reference_store).records("tiny")}
    resumed = {r["key"]: _science(r) for r in ResultStore(store).records("tiny")}
    assert resumed == reference  # nothing lost, nothing duplicated, nothing falsified
    assert not list(store.glob(f"{CLAIM_DIR}/*.claim"))
    record("run store", "kill -9 of a real tiny 4-cell grid at up to 3 random points (the i-th a random 0-0.5 s after "
           "the i-th record is stored), then a resume", "the claims of killed runs are taken over; after the resume 4 of 4 "
           "records, 0 duplicated, 0 torn, every metric equal to an uninterrupted run's")


def test_run_stops_at_its_limits_with_status_75_and_resumes(children, concurrent_store, record):
    grid, reference_store, _ = concurrent_store
    store = children.base / "limited"
    codes = []
    for limit in (["--max-runs", "1"], ["--stop-after", "0s"], []):
        proc = children.start(["run", "--grid", grid, "--store", store, "--threads", "1", "--quiet", *limit])
        proc.join(300)
        codes.append((proc.exitcode, _check_lines(store / "tiny.jsonl")[0]))
    assert codes == [(75, 1), (75, 1), (0, 4)], codes
    reference = {r["key"]: _science(r) for r in ResultStore(reference_store).records("tiny")}
    assert {r["key"]: _science(r) for r in ResultStore(store).records("tiny")} == reference
    record("session limits", "`run --max-runs 1`, then `--stop-after 0s`, then a plain `run` on a 4-cell tiny grid",
           "exit 75 with 1 record, exit 75 with still 1, exit 0 with 4 records equal to an uninterrupted run's")


def _fake_claim(store: ResultStore, key: str, **holder) -> Path:
    path = store.claim_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "token": "other", **holder}))
    return path


def test_claims_of_live_and_dead_processes(tmp_path, record):
    from effalign.runs import _pid_namespace

    store = ResultStore(tmp_path)
    here = {"host": socket.gethostname(), "pidns": _pid_namespace()}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cases = [
        ("a claim of a live process on this machine", dict(pid=os.getpid(), **here), 0, False),
        ("a claim of a dead process on this machine (kill -9)", dict(pid=dead.pid, **here), 0, True),
        ("a claim from another machine, heartbeat 10 s old", dict(pid=1, host="elsewhere", pidns="x"), 10, False),
        ("a claim from another machine, heartbeat 10 min old", dict(pid=1, host="elsewhere", pidns="x"), 600, True),
        ("an unreadable claim file, 2 min old", None, 120, True),
    ]
    for i, (tried, holder, age, taken) in enumerate(cases):
        key = f"{i:016x}"
        path = _fake_claim(store, key, **holder) if holder else store.claim_path(key)
        if holder is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{torn")
        os.utime(path, (time.time() - age, time.time() - age))
        if taken:
            with pytest.warns(UserWarning, match="stale claim .* removed; its run is taken over"):
                claim = store.claim(key)
            assert claim is not None and json.loads(path.read_text())["pid"] == os.getpid()
            claim.release()
            assert not path.exists()
        else:
            assert store.claim(key) is None and key in store.in_flight()
        record("several runners", tried, "taken over with a warning (`stale claim … removed; its run is taken over`)"
               if taken else "respected: the cell is left to its holder")


def test_claim_api_and_grid_leaves_cells_in_flight(tmp_path, record):
    store = ResultStore(tmp_path)
    claim = store.claim(spec(1).key)
    assert claim is not None and store.claim(spec(1).key) is None  # a second claimant is refused
    calls = []
    with pytest.warns(UserWarning, match=r"1 run\(s\) are being computed by other processes and were left to them"):
        recs = run_grid([spec(0), spec(1), spec(2)], lambda s: calls.append(s.seed) or {"acc": 1.0}, store, progress=False)
    assert calls == [0, 2] and len(recs) == 2
    claim.release()
    run_grid([spec(1)], lambda s: calls.append(s.seed) or {"acc": 1.0}, store, progress=False)
    assert calls == [0, 2, 1] and not list((tmp_path / CLAIM_DIR).glob("*.claim"))
    record("several runners", "a grid meeting a cell that another live runner has claimed",
           "the cell is skipped, the rest run, a warning lists it; after its release a later run computes it once")


def test_grid_stops_after_max_runs_or_deadline_and_the_next_call_resumes(tmp_path, record):
    store = ResultStore(tmp_path)
    calls = []
    with pytest.warns(UserWarning, match=r"2 run\(s\) were not started after 1 trained \(max_runs 1\)"):
        recs = run_grid([spec(0), spec(1), spec(2)], lambda s: calls.append(s.seed) or {"acc": 1.0}, store,
                        progress=False, max_runs=1)
    assert calls == [0] and len(recs) == 1
    with pytest.warns(UserWarning, match=r"2 run\(s\) were not started after 0 trained \(its start_by deadline\)"):
        run_grid([spec(0), spec(1), spec(2)], lambda s: calls.append(s.seed) or {"acc": 1.0}, store,
                 progress=False, start_by=time.time() - 1)
    assert calls == [0]
    recs = run_grid([spec(0), spec(1), spec(2)], lambda s: calls.append(s.seed) or {"acc": 1.0}, store, progress=False)
    assert calls == [0, 1, 2] and len(recs) == 3 and not list((tmp_path / CLAIM_DIR).glob("*.claim"))
    record("session limits", "a grid told to stop after one run (--max-runs 1), then after a deadline already past "
           "(--stop-after)", "one run trained, then none; a warning names the cells left; the next call trains "
           "each of them once")


def test_stop_after_reads_durations_and_refuses_others():
    from effalign.cli import ArgumentError, parse_duration

    assert parse_duration("90m") == 5400 and parse_duration("2h30m") == 9000 and parse_duration("45") == 45
    for bad in ("", "soon", "2x", "h"):
        with pytest.raises(ArgumentError, match="not a duration such as 90m"):
            parse_duration(bad)


# --------------------------------------------------------------------------- caches


class FakeEncoder:
    """Deterministic 384-d vectors from the text (so cache tests need no model)."""

    calls = 0

    def encode(self, texts, **kwargs):
        FakeEncoder.calls += len(texts)
        out = np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=384)
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_embedding_cache_is_moved_aside_and_rebuilt(tmp_path, monkeypatch, record, damage):
    from effalign import caches, embed

    monkeypatch.setattr(embed, "load_embedder", lambda name: FakeEncoder())
    monkeypatch.setattr(caches, "_checked", set())
    path = tmp_path / "embeddings.sqlite"
    texts = [f"text number {i} " * 8 for i in range(400)]
    fresh = embed.embed_texts(texts, cache=path)
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        os.truncate(path, path.stat().st_size // 2)
    caches._checked.clear()  # a new process
    FakeEncoder.calls = 0
    with pytest.warns(UserWarning, match=r"cache .*embeddings\.sqlite was damaged \(.*\); moved aside to .*corrupt-") as w:
        again = embed.embed_texts(texts, cache=path)
    assert np.array_equal(again, fresh) and FakeEncoder.calls == len(texts)
    assert len(list(tmp_path.glob("embeddings.sqlite.corrupt-*"))) == 1
    FakeEncoder.calls = 0
    assert np.array_equal(embed.embed_texts(texts, cache=path), fresh) and FakeEncoder.calls == 0  # healed cache hits
    reason = re.search(r"was damaged \((.*)\); moved", str(w[0].message)).group(1)
    record("caches", f"a {damage} embedding cache (was a traceback)",
           f"moved aside with a warning naming both paths (`{reason}`), rebuilt; same vectors, later calls hit the cache")


def test_embedding_cache_is_keyed_on_the_model_files(tmp_path, monkeypatch, record):
    from effalign import embed

    folder = tmp_path / "my-embedder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights v1")
    (folder / "README.md").write_text("docs")
    monkeypatch.setattr(embed, "load_embedder", lambda name: FakeEncoder())
    first = embed.embedder_id(str(folder))
    (folder / "README.md").write_text("other docs")
    assert embed.embedder_id(str(folder)) == first  # documentation does not change the model
    FakeEncoder.calls = 0
    embed.embed_texts(["a", "b"], model=str(folder), cache=tmp_path / "e.sqlite")
    (folder / "model.safetensors").write_bytes(b"weights v2")  # same name, other model
    assert embed.embedder_id(str(folder)) != first
    embed.embed_texts(["a", "b"], model=str(folder), cache=tmp_path / "e.sqlite")
    assert FakeEncoder.calls == 4
    assert embed.embedder_id("all-minilm-l6-v2").startswith("files:")
    record("caches", "the embedding model's files replaced under the same name (the cache was keyed on the name)",
           "a cache miss: the key is a hash of the model folder's files (documentation left out)")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_reference_cache_heals(tmp_path, tiny, monkeypatch, record, damage):
    from effalign import caches
    from effalign.data import PreferenceData
    from effalign.logps import TokenizeConfig, reference_logps

    monkeypatch.setattr(caches, "_checked", set())
    pairs = load_preferences(write_rows(tmp_path / "p.jsonl", plain_pairs(120)))
    config = TokenizeConfig(16, 8)
    path = tmp_path / "ref.sqlite"
    fresh = reference_logps(pairs, tiny, config=config, cache=path, batch_size=64, progress=False)
    if damage == "garbage":
        path.write_bytes(os.urandom(50000))
    else:
        os.truncate(path, path.stat().st_size // 2)
    caches._checked.clear()
    with pytest.warns(UserWarning, match=r"ref\.sqlite was damaged .* moved aside to .*corrupt-") as w:
        again = reference_logps(pairs, tiny, config=config, cache=path, batch_size=64, progress=False)
    assert again.computed == len(pairs) and np.array_equal(again.chosen, fresh.chosen)
    assert reference_logps(PreferenceData(pairs.pairs[:5]), tiny, config=config, cache=path, progress=False).computed == 0
    reason = re.search(r"was damaged \((.*)\); moved", str(w[0].message)).group(1)
    record("caches", f"a {damage} reference log-prob cache (was a traceback)",
           f"moved aside with a warning (`{reason}`), rebuilt with the same values")


def test_reference_cache_key_sees_template_tokens_and_every_weight(tmp_path, tiny, record):
    import copy

    import torch

    from effalign.logps import TokenizeConfig, model_fingerprint, reference_logps

    model, tok = copy.deepcopy(tiny)
    pairs = load_preferences(write_rows(tmp_path / "p.jsonl", plain_pairs(6)))
    config, path = TokenizeConfig(96, 8), tmp_path / "ref.sqlite"
    base = reference_logps(pairs, (model, tok), config=config, cache=path, progress=False)
    assert base.computed == 6
    assert reference_logps(pairs, (model, tok), config=config, cache=path, progress=False).computed == 0
    tok.chat_template = tok.chat_template.replace("You are a helpful AI assistant", "You are a pirate")
    templ = reference_logps(pairs, (model, tok), config=config, cache=path, progress=False)
    assert templ.computed == 6 and not np.allclose(templ.chosen, base.chosen)
    tok = copy.deepcopy(tiny[1])
    before = model_fingerprint(model)
    with torch.no_grad():
        weight = model.model.layers[1].mlp.down_proj.weight
        weight.view(-1)[4097] += 1e-3  # one value off the old 4096-stride sample
    assert model_fingerprint(model) != before
    assert reference_logps(pairs, (model, tok), config=config, cache=path, progress=False).computed == 6
    record("caches", "another chat template with the same weights (reused the first template's values before)",
           f"a cache miss: the key hashes the tokenizer and template; values differ by up to "
           f"{np.abs(templ.chosen - base.chosen).max():.2f} nats")
    record("caches", "one weight value changed off the old fingerprint's sampling stride",
           "a cache miss: the key hashes every weight value")


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def pristine_models():
    from effalign.models import materialise_smollm2, materialise_tiny

    return materialise_smollm2().path, materialise_tiny()


@pytest.fixture
def model_cache(tmp_path, monkeypatch, pristine_models):
    """A cache folder with SmolLM2 linked in and a copy of the materialised tiny model."""
    smol, tiny_dir = pristine_models
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / smol.name).symlink_to(smol)
    shutil.copytree(tiny_dir, tmp_path / "models" / tiny_dir.name)
    monkeypatch.setenv("EFFALIGN_CACHE", str(tmp_path))
    return tmp_path / "models" / tiny_dir.name


@pytest.mark.parametrize("damage", ["truncated weights", "missing tokenizer files"])
def test_damaged_materialised_model_is_materialised_again(model_cache, record, damage):
    from effalign.models import load_policy

    weights = model_cache / "model.safetensors"
    if damage == "truncated weights":
        os.truncate(weights, weights.stat().st_size // 3)
    else:
        (model_cache / "tokenizer.json").unlink()
    with pytest.warns(UserWarning, match=r"materialised tiny model at .* is damaged \((.*)\); materialising it again") as w:
        model, tok = load_policy("tiny-random")
    assert tok("hello")["input_ids"] and sum(p.numel() for p in model.parameters()) > 0
    reason = re.search(r"is damaged \((.*)\); materialising", str(w[0].message)).group(1)
    record("models", f"a materialised model with its marker but {damage} (raw SafetensorError / tokenizer error before)",
           f"found when resolved (`{reason}`), materialised again with a warning, loads")


def test_damaged_model_folder_names_the_folder(model_cache, tmp_path, monkeypatch, record):
    import effalign.models as models

    folder = tmp_path / "my-checkpoint"
    shutil.copytree(model_cache, folder)
    os.truncate(folder / "model.safetensors", 1000)
    with pytest.raises(models.ModelError) as err:
        models.load_policy(str(folder))
    assert f"from the folder {folder}" in str(err.value) and "Replace or delete the folder" in str(err.value)
    record("models", "a local checkpoint folder with truncated weights", f"ModelError: {q(err.value)}")
    os.truncate(model_cache / "model.safetensors", 1000)
    monkeypatch.setattr(models, "_save_tiny", lambda target, seed: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.warns(UserWarning), pytest.raises(models.ModelError, match=r"delete the folder .*tiny-random-0") as err:
        models.materialise_tiny()
    record("models", "a damaged materialised model that cannot be materialised again (disk full)",
           f"ModelError naming the folder to delete: {q(err.value)}")


def test_stale_temporary_folders_are_cleaned(model_cache, record):
    import effalign.models as models
    from effalign.runs import _pid_namespace, process_identity

    parent = model_cache.parent
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owners = {"killed": {"pid": dead.pid, "host": socket.gethostname(), "pidns": _pid_namespace()},
              "live": process_identity()}
    for name, owner in owners.items():
        (parent / f".tiny-random-0-{name}").mkdir()
        (parent / f".tiny-random-0-{name}" / ".effalign-owner.json").write_text(json.dumps(owner))
    old = parent / ".tiny-random-0-legacy"
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    with pytest.warns(UserWarning, match="temporary folder left by an interrupted materialisation"):
        models.materialise_tiny()
    left = sorted(p.name for p in parent.glob(".tiny-random-0-*"))
    assert left == [".tiny-random-0-live"]
    record("models", "temporary `.tiny-random-0-…` folders of a killed materialisation, an old one without owner, "
           "and one being written", "on the next start the killed and the old one are removed (with a warning); "
           "the live one is kept")


# --------------------------------------------------------------------------- network


def test_select_and_run_make_no_connection_attempt(children, record):
    folder = children.base / "network"
    grid = tiny_grid(folder)
    grid.write_text(grid.read_text().replace("seeds: [0, 1, 2, 3]", "seeds: [0]"))
    before = children.connections()
    select = children.start(["select", "--source", folder / "pairs.jsonl", "--sampler", "isa", "--params", '{"dim": 4}',
                             "--budget", 5, "--out", folder / "subset.jsonl"])
    select.join(300)
    run = children.start(["run", "--grid", grid, "--store", folder / "store", "--threads", "1", "--quiet"])
    run.join(300)
    logs = "".join(p.read_text() for p in children.base.glob("child*.log"))
    assert (select.exitcode, run.exitcode) == (0, 0), logs[-3000:]
    assert (folder / "subset.jsonl").exists() and _check_lines(folder / "store" / "tiny.jsonl")[0] == 1
    assert children.connections() == before == [], children.connections()
    record("network", "`select --sampler isa` (MiniLM embeddings) and a tiny `run`, without the HF offline variables, "
           "under a socket guard", f"both succeed; 0 connection attempts and 0 host-name lookups in all {children.n} "
           "child processes this module ran")
