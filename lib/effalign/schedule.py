"""Train a profile's missing runs with several worker processes and a time limit (``python -m effalign experiments``).

The work is a list of grids in the order to run them, read again before every launch: for a profile
with a design, its stages (:func:`effalign.grids.stage_grids`: the primary contrast's internal-pilot
seeds, the seeds the pilot rule gives once those are stored, then the secondary grids in the design's
order). Each free worker gets the first cell of that list that is neither stored nor being computed,
as a one-cell grid for ``python -m effalign run``, so a worker never waits for a stage it cannot start
and the pilot rule changes the plan as soon as its seeds are stored.

With a time limit (``within_s``), a cell is started only when its typical run time (the median stored
run of the same size, else of the same grid or experiment: :func:`typical_seconds`) fits into the time
left, so a session that ends at a known time runs the cheaper cells last instead of starting a run it
cannot finish.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .experiment import expand_grid, missing_specs
from .runs import ResultStore, RunSpec

__all__ = ["Cell", "ScheduleReport", "cell_grid", "left_text", "next_cell", "profile_work", "run_schedule",
           "typical_seconds"]

Work = Sequence[tuple[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class Cell:
    """One run to start: the name and settings of the grid it belongs to, its spec and its expected
    seconds (None: unknown)."""

    grid: str
    settings: Mapping[str, Any]
    spec: RunSpec
    expected_s: float | None


@dataclass
class ScheduleReport:
    """What a schedule did: runs stored, runs that failed (key -> log file), and runs left undone."""

    stored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    left: int = 0


def profile_work(profile: str | Mapping[str, Any], *, device: str = "cpu", store: str | Path = "results"
                 ) -> list[tuple[str, dict[str, Any]]]:
    """A profile's grids in the order to run them: every stage's (pilot, primary, secondary) with a
    design, else its notebooks' grids; the primary stage follows the records now in ``store``."""
    from .design import STAGES
    from .grids import stage_grids

    work: list[tuple[str, dict[str, Any]]] = []
    for stage in STAGES:
        label = " (pilot seeds)" if stage == "pilot" else ""
        work += [(name + label, grid) for name, grid in stage_grids(profile, stage, device=device, store=store).items()]
    return work


def typical_seconds(grid: Mapping[str, Any], store: ResultStore, spec: RunSpec | None = None) -> float | None:
    """The median stored run time of the most similar runs: the grid's runs with ``spec``'s budget, the
    experiment's runs with that budget, the grid's runs, then every run of its experiment (a whole-pool
    cell is timed by whole-pool runs, not by the small subsets of its grid); None when none is stored."""
    return _typical({s.key for s in expand_grid(grid)}, _timed(grid, store), spec)


def _timed(grid: Mapping[str, Any], store: ResultStore) -> list[dict[str, Any]]:
    """The stored records of the grid's experiment that carry a run time."""
    return [r for r in store.records(grid["experiment"]) if "seconds" in r.get("timings", {})]


def _typical(keys: set[str], timed: Sequence[Mapping[str, Any]], spec: RunSpec | None) -> float | None:
    same = [r for r in timed if spec is not None and r["spec"].get("budget") == spec.budget]
    for group in ([r for r in same if r["key"] in keys], same, [r for r in timed if r["key"] in keys], timed):
        if group:
            return float(statistics.median(r["timings"]["seconds"] for r in group))
    return None


def next_cell(work: Work, store: ResultStore, *, busy: set[str] = frozenset(), remaining_s: float | None = None,
              skip: set[str] = frozenset()) -> Cell | None:
    """The first cell of ``work`` that is not stored, not claimed by a live process, not ``busy`` (just
    handed to a worker) nor ``skip`` (failed), and whose typical run (:func:`typical_seconds`) fits in
    ``remaining_s`` (a cell with no similar stored run fits); None when there is none."""
    claimed = set(store.in_flight())
    for name, grid in work:
        specs = expand_grid(grid)
        pending = sorted((s for s in missing_specs(specs, store)
                          if s.key not in claimed and s.key not in busy and s.key not in skip),
                         key=lambda s: s.seed)  # seed-major, as `effalign run`: whole seeds first
        keys, timed = {s.key for s in specs}, _timed(grid, store) if pending else []
        for spec in pending:
            expected = _typical(keys, timed, spec)
            if remaining_s is None or expected is None or expected <= remaining_s:
                return Cell(name, grid, spec, expected)
    return None


def cell_grid(grid: Mapping[str, Any], spec: RunSpec) -> dict[str, Any]:
    """The one-cell grid of ``grid`` that runs exactly ``spec`` (same run key)."""
    sampler: Any = "random" if spec.budget is None else (
        {"name": spec.sampler, "params": dict(spec.sampler_params)} if spec.sampler_params else spec.sampler)
    one = {k: v for k, v in grid.items() if k not in ("fractions", "budgets", "samplers", "seeds")}
    one.update(samplers=[sampler], budgets=["full" if spec.budget is None else spec.budget], seeds=[spec.seed])
    (made,) = expand_grid(one)
    if made.key != spec.key:
        raise ValueError(f"one-cell grid of {grid['experiment']} gives run key {made.key}, not {spec.key}")
    return one


@dataclass
class _Worker:
    cell: Cell
    process: subprocess.Popen
    log: Path
    started: float
    slot: int = 1  # which of the ``workers`` places it holds (1-based), for the log lines


def _minutes(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds / 60:.0f} min"


def run_schedule(work: Callable[[], Work], store: str | Path, *, workers: int = 1, threads: int | None = None,
                 within_s: float | None = None, log_dir: str | Path = "_build/experiment-logs",
                 poll_s: float = 5.0, say: Callable[[str], None] = print) -> ScheduleReport:
    """Keep ``workers`` processes busy with the cells of ``work()`` (read again before each launch),
    each a ``python -m effalign run`` of a one-cell grid with ``threads`` torch threads and its output in
    ``log_dir/<run key>.log``; with ``within_s``, start a cell only while its expected run time fits in
    the time left. Returns when no cell can be started and no worker runs."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    result_store = ResultStore(store)
    logs = Path(log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    deadline = None if within_s is None else time.monotonic() + within_s
    running: list[_Worker] = []
    report = ScheduleReport()
    looked = False  # the work was searched since the last change and had nothing to start
    others: set[str] = set()  # cells another process took between the choice and the launch
    try:
        while True:
            for w in [w for w in running if w.process.poll() is not None]:
                running.remove(w)
                looked = False
                took = time.monotonic() - w.started
                who, what = f"[{time.strftime('%H:%M:%S')}] worker {w.slot}/{workers}", \
                    f"{w.cell.grid} {_describe(w.cell.spec)}"
                if w.process.returncode == 0 and w.cell.spec.key in result_store.keys(w.cell.spec.experiment):
                    report.stored.append(w.cell.spec.key)
                    say(f"{who} stored {what} in {_minutes(took)}")
                elif w.process.returncode == 0:  # another process claimed the cell first: it is left to it
                    others.add(w.cell.spec.key)
                    say(f"{who}: {what} is being computed by another process")
                else:
                    report.failed[w.cell.spec.key] = str(w.log)
                    say(f"{who} FAILED {what} (exit {w.process.returncode}); its output: {w.log}")
            remaining = None if deadline is None else deadline - time.monotonic()
            cell = None
            if len(running) < workers and not looked and (remaining is None or remaining > 0):
                busy = {w.cell.spec.key for w in running}
                cell = next_cell(work(), result_store, busy=busy, remaining_s=remaining,
                                 skip=set(report.failed) | others)
                looked = cell is None and bool(running)  # search again when a worker ends (none runs: stop)
            if cell is not None:
                slot = min(set(range(1, workers + 1)) - {w.slot for w in running})
                running.append(replace(_launch(cell, store, threads, logs), slot=slot))
                say(f"[{time.strftime('%H:%M:%S')}] worker {slot}/{workers}: {cell.grid} "
                    f"{_describe(cell.spec)}, expected {_minutes(cell.expected_s)} (log {running[-1].log})")
                continue
            if not running:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for w in running:
            w.process.terminate()
        for w in running:
            w.process.wait()
        raise
    report.left = len({s.key for _, g in work() for s in missing_specs(expand_grid(g), result_store)})
    return report


def _describe(spec: RunSpec) -> str:
    share = "whole pool" if spec.budget is None else f"{spec.budget} pairs"
    return f"{spec.sampler} on {share}, seed {spec.seed} (run {spec.key})"


def _launch(cell: Cell, store: str | Path, threads: int | None, logs: Path) -> _Worker:
    path = logs / f"{cell.spec.key}.yaml"
    path.write_text(f"# one cell of grid {cell.grid!r} (effalign.schedule)\n"
                    + yaml.safe_dump(cell_grid(cell.settings, cell.spec), sort_keys=False))
    log = logs / f"{cell.spec.key}.log"
    command = [sys.executable, "-m", "effalign", "run", "--grid", str(path), "--store", str(store)]
    if threads:
        command += ["--threads", str(threads)]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return _Worker(cell, process, log, time.monotonic())


def left_text(report: ScheduleReport) -> str:
    """One line on what a schedule leaves: nothing, or how many runs and why."""
    if report.left == 0:
        return "every run of the work is stored"
    why = f"; {len(report.failed)} failed (see their logs)" if report.failed else ""
    return f"{report.left} run(s) left for a later call (the time limit, or runs that failed){why}"

