"""effalign.schedule and ``python -m effalign experiments``: which cell a free worker gets (stage
order, seed-major, claims and time limits respected), one-cell grids with the same run key, and a real
two-worker schedule of a tiny grid that trains every cell once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tiny_pairs

from effalign.experiment import expand_grid
from effalign.runs import ResultStore, make_record
from effalign.schedule import cell_grid, next_cell, run_schedule, typical_seconds


def grid(folder: Path, experiment: str, samplers: list, seeds: list[int]) -> dict:
    source = folder / "pairs.jsonl"
    if not source.exists():
        write_tiny_pairs(source, 24)
    return {"experiment": experiment, "data": {"source": str(source), "eval_size": 6, "split_seed": 0},
            "model": "tiny-random", "samplers": samplers, "budgets": [4, "full"], "seeds": seeds,
            "train": {"epochs": 1, "batch_size": 4, "lora": False, "learning_rate": 0.005, "warmup_ratio": 0.0,
                      "max_prompt_tokens": 16, "max_completion_tokens": 8},
            "eval": {"n_boot": 20, "batch_size": 8}}


def store_run(store: ResultStore, spec, seconds: float) -> None:
    store.append(make_record(spec, {"pref_accuracy": 0.5}, "2026-01-01T00:00:00+00:00", "2026-01-01T00:10:00+00:00",
                             seconds))


def test_next_cell_follows_the_work_order_seed_major_and_skips_stored_claimed_busy_and_long_cells(tmp_path):
    first, second = grid(tmp_path, "a", ["random", "isa"], [0, 1]), grid(tmp_path, "b", ["random"], [0])
    work = [("first", first), ("second", second)]
    store = ResultStore(tmp_path / "store")
    specs = expand_grid(first)
    assert [(s.sampler, s.seed) for s in specs][:2] == [("random", 0), ("random", 1)]  # sampler-major grid order
    cell = next_cell(work, store)
    assert (cell.grid, cell.spec.sampler, cell.spec.seed, cell.expected_s) == ("first", "random", 0, None)
    seed0 = [s.key for s in specs if s.seed == 0]
    picked = next_cell(work, store, busy=set(seed0[:2]))
    assert picked.spec.seed == 0 and picked.spec.key == seed0[2], "whole seeds first"
    claim = store.claim(seed0[0])
    assert next_cell(work, store).spec.key == seed0[1], "a cell a live process claimed is left to it"
    claim.release()
    for s in specs:
        store_run(store, s, 600.0)
    assert typical_seconds(first, store) == 600.0 and typical_seconds(second, store) is None
    cell = next_cell(work, store)
    assert cell.grid == "second" and cell.expected_s is None, "grid b has no stored run: its time is unknown"
    store_run(store, expand_grid(second)[0], 900.0)
    assert next_cell(work, store, remaining_s=800.0) is None, "a run whose typical time does not fit is not started"
    assert next_cell(work, store, remaining_s=1000.0).grid == "second"
    assert typical_seconds(grid(tmp_path, "b", ["random"], [5]), store) == 900.0, "no own run: its experiment's"
    assert next_cell(work, store, skip={s.key for s in expand_grid(second)}) is None
    whole = next(s for s in expand_grid(second) if s.budget is None)
    store_run(store, next(s for s in expand_grid(grid(tmp_path, "b", ["random"], [5])) if s.budget is None), 3000.0)
    assert typical_seconds(second, store, whole) == 3000.0, "a whole-pool cell is timed by whole-pool runs"
    assert next_cell(work, store, remaining_s=1000.0) is None


def test_cell_grid_runs_exactly_the_cell(tmp_path):
    g = grid(tmp_path, "a", ["random", {"name": "isa", "params": {"dim": 4}}], [0, 3])
    for spec in expand_grid(g):
        (one,) = expand_grid(cell_grid(g, spec))
        assert one.key == spec.key


def test_two_workers_train_every_cell_once_then_a_deadline_starts_nothing(tmp_path, capsys):
    work = [("tiny", grid(tmp_path, "tiny", ["random"], [0, 1]))]
    store = tmp_path / "store"
    lines: list[str] = []
    report = run_schedule(lambda: work, store, workers=2, threads=1, log_dir=tmp_path / "logs", poll_s=0.2,
                          say=lines.append)
    assert report.failed == {} and report.left == 0 and len(report.stored) == 4, lines
    records = [json.loads(x) for x in (store / "tiny.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in records) == sorted(s.key for s in expand_grid(work[0][1]))  # each once
    assert sum("expected" in x for x in lines) == 4 and sum("stored" in x for x in lines) == 4
    held: set[str] = set()  # a launch takes a free place (1/2 or 2/2) and a stored run frees its own
    for line in lines:
        slot = re.search(r"worker (\d)/2", line).group(1)
        if "expected" in line:
            assert slot not in held, lines
            held.add(slot)
        else:
            held.remove(slot)
    assert all((tmp_path / "logs" / f"{r['key']}.log").exists() for r in records)
    more = [("tiny", grid(tmp_path, "tiny", ["random"], [0, 1, 2]))]
    report = run_schedule(lambda: more, store, workers=2, within_s=0.0, log_dir=tmp_path / "logs", say=lines.append)
    assert report.stored == [] and report.left == 2


def test_experiments_command_plans_a_profile_and_exits_75_while_runs_are_left(tmp_path):
    out = subprocess.run([sys.executable, "-m", "effalign", "experiments", "--profile", "smoke", "--store",
                          str(tmp_path / "store"), "--within", "0s", "--logs", str(tmp_path / "logs")],
                         capture_output=True, text=True)
    assert out.returncode == 75, out.stderr
    assert f"profile smoke: missing runs into {tmp_path / 'store'}" in out.stdout
    assert "0 run(s) stored now" in out.stdout and "run(s) left for a later call" in out.stdout


def test_experiments_command_refuses_bad_options():
    for args, message in ((["--workers", "0"], "--workers: must be at least 1"),
                          (["--within", "soon"], "--within: not a duration")):
        out = subprocess.run([sys.executable, "-m", "effalign", "experiments", *args], capture_output=True, text=True)
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_a_cell_claimed_in_the_launch_window_is_left_to_its_holder_not_failed(tmp_path, monkeypatch):
    work = [("tiny", grid(tmp_path, "tiny", ["random"], [0]))]
    spec = next(s for s in expand_grid(work[0][1]) if s.budget is None)
    store = ResultStore(tmp_path / "store")
    for s in expand_grid(work[0][1]):
        if s.key != spec.key:
            store_run(store, s, 1.0)
    claim = store.claim(spec.key)  # held by this (live) process, but unseen when the cell is chosen
    monkeypatch.setattr(ResultStore, "in_flight", lambda self, stale_after=0: {})
    lines: list[str] = []
    report = run_schedule(lambda: work, store.path, log_dir=tmp_path / "logs", poll_s=0.2, say=lines.append)
    claim.release()
    assert report.failed == {} and report.stored == [] and report.left == 1, lines
    assert "is being computed by another process" in lines[-1]
