"""The run store: stable keys, atomic appends, torn lines, and resume after a killed grid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from effalign.runs import ResultStore, RunSpec, run_grid


def spec(seed: int, **kw) -> RunSpec:
    return RunSpec(experiment="t", data={"source": "x", "eval_size": 10}, model="tiny", sampler="random",
                   budget=5, seed=seed, **kw)


def test_key_is_stable_and_sensitive():
    a = spec(0, train={"lr": 1e-5, "beta": 0.1})
    b = spec(0, train={"beta": 0.1, "lr": 1e-5})
    assert a.key == b.key and len(a.key) == 16
    assert spec(1).key != spec(0).key
    assert spec(0, train={"lr": 2e-5}).key != spec(0, train={"lr": 1e-5}).key
    assert RunSpec.from_dict(a.to_dict()).key == a.key
    with pytest.raises(ValueError, match="unknown RunSpec fields"):
        RunSpec.from_dict({**a.to_dict(), "colour": "red"})


def test_grid_skips_stored_runs_and_records_provenance(tmp_path):
    store = ResultStore(tmp_path)
    calls = []

    def fn(s):
        calls.append(s.seed)
        return {"acc": 0.5 + s.seed / 100, "extra": {"curve": [1, 2]}}

    recs = run_grid([spec(0), spec(1), spec(0)], fn, store, progress=False)
    assert calls == [0, 1] and len(recs) == 2
    rec = recs[0]
    assert rec["metrics"] == {"acc": 0.5} and rec["extra"] == {"curve": [1, 2]}
    assert {"git_commit", "packages", "device"} <= set(rec["provenance"])
    assert rec["timings"]["started"] <= rec["timings"]["ended"]
    run_grid([spec(0), spec(1), spec(2)], fn, store, progress=False)
    assert calls == [0, 1, 2]
    assert len(store.records("t")) == 3 and spec(2) in store
    frame = store.to_frame("t")
    assert list(frame["spec.seed"]) == [0, 1, 2] and "metrics.acc" in frame


def test_torn_line_is_skipped_and_next_append_starts_clean(tmp_path):
    store = ResultStore(tmp_path)
    run_grid([spec(0)], lambda s: {"acc": 1.0}, store, progress=False)
    with open(store.file("t"), "a") as fh:
        fh.write('{"key": "abc", "spec": {"experi')  # crash mid-write: no newline
    with pytest.warns(UserWarning, match=r"t\.jsonl, line 2: torn or malformed record skipped"):
        assert len(store.records("t")) == 1
    with pytest.warns(UserWarning, match="torn"):
        run_grid([spec(1)], lambda s: {"acc": 2.0}, store, progress=False)
    with pytest.warns(UserWarning):
        recs = store.records("t")
    assert [r["spec"]["seed"] for r in recs] == [0, 1]


GRID_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from effalign.runs import ResultStore, RunSpec, run_grid
    specs = [RunSpec("k", {"source": "x"}, "tiny", "random", 5, seed) for seed in range(6)]
    def fn(s):
        time.sleep(0.4)
        return {"seed_metric": s.seed}
    run_grid(specs, fn, ResultStore(sys.argv[1]), progress=False)
    """
)


def test_resume_after_process_killed_mid_grid(tmp_path):
    script = tmp_path / "grid.py"
    script.write_text(GRID_SCRIPT)
    out = tmp_path / "results"
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
    deadline = time.time() + 60
    target = out / "k.jsonl"
    while time.time() < deadline:  # wait until some but not all runs are stored
        if target.exists() and len(target.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(ResultStore(out).records("k"))
    assert 2 <= done_before < 6
    subprocess.run([sys.executable, str(script), str(out)], env=env, check=True)
    recs = ResultStore(out).records("k")
    lines = [json.loads(l) for l in target.read_text().splitlines() if l.strip()]
    assert sorted(r["spec"]["seed"] for r in recs) == list(range(6))
    assert len(lines) == 6  # nothing duplicated, nothing lost


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    monkeypatch.setenv("RANK", "1")
    run_grid([spec(0)], lambda s: {"acc": 1.0}, store, progress=False)
    assert store.records("t") == []
    monkeypatch.setenv("RANK", "0")
    run_grid([spec(0)], lambda s: {"acc": 1.0}, store, progress=False)
    assert len(store.records("t")) == 1


def test_run_stored_meanwhile_by_another_process_is_skipped(tmp_path):
    from effalign.runs import make_record

    store = ResultStore(tmp_path)
    calls = []

    def fn(s):
        calls.append(s.seed)
        if s.seed == 0:  # meanwhile, another process working from the other end stores seed 2
            other = spec(2)
            store.append(make_record(other, {"acc": -1.0}, "t0", "t1", 1.0))
        return {"acc": float(s.seed)}

    recs = run_grid([spec(0), spec(1), spec(2)], fn, store, progress=False)
    assert calls == [0, 1]
    assert [r["metrics"]["acc"] for r in recs] == [0.0, 1.0, -1.0]
    assert len(store.records()) == 3
