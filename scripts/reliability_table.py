"""Write the README's reliability table from ``benchmarks/results/reliability.json``.

The rows are written by ``tests/test_reliability.py``: each test records the input or fault it
tried and the outcome it observed (the error message or the counts), after its assertions pass.
This script only formats them, between ``<!-- BEGIN reliability -->`` and
``<!-- END reliability -->`` in README.md; nothing in the table is typed by hand.

Usage: python scripts/reliability_table.py [--check]   (--check: exit 1 if the README is out of date)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ROOT / "benchmarks" / "results" / "reliability.json"
README = ROOT / "README.md"
AREAS = ("bad input", "run store", "several runners", "caches", "models", "network")
BEGIN, END = "<!-- BEGIN reliability -->", "<!-- END reliability -->"


def table(outcomes: dict) -> str:
    rows = [row for test_rows in outcomes["tests"].values() for row in test_rows]
    rows.sort(key=lambda r: AREAS.index(r["area"]) if r["area"] in AREAS else len(AREAS))  # stable: test order within an area
    counts = ", ".join(f"{sum(r['area'] == a for r in rows)} {a}" for a in AREAS if any(r["area"] == a for r in rows))
    lines = [f"{len(rows)} inputs and faults tried by `{outcomes['generated_by']}` ({counts}); each outcome is what "
             "the test observed after its assertions passed.", "",
             "| area | input or fault tried | outcome |", "| --- | --- | --- |"]
    for r in rows:
        cells = [r["area"], r["tried"], r["outcome"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def render(readme: str, outcomes: dict) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"{README}: markers {BEGIN} … {END} not found")
    return pattern.sub(lambda m: f"{BEGIN}\n{table(outcomes)}\n{END}", readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README table is out of date")
    args = parser.parse_args()
    if not OUTCOMES.exists():
        print(f"{OUTCOMES} is missing: run pytest tests/test_reliability.py first", file=sys.stderr)
        return 1
    outcomes = json.loads(OUTCOMES.read_text())
    old = README.read_text()
    new = render(old, outcomes)
    if args.check:
        if new != old:
            print("README reliability table is out of date: run python scripts/reliability_table.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        README.write_text(new)
        print(f"wrote the reliability table ({sum(len(v) for v in outcomes['tests'].values())} rows) into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
