"""Rewrite each notebook's parameters cell from params/default.yaml (run after editing the profile).

The parameters cell holds the default profile's values, so that a papermill re-run of one notebook
starts from the published configuration; tests/test_notebooks.py checks they agree.
Usage: python scripts/sync_parameters.py [--check]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import nbformat

from effalign.book import format_parameters, load_profile, notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
HEADER = "# Parameters (papermill replaces them; defaults: params/default.yaml)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    profile = load_profile("default")
    stale = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        order = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets]
        values = notebook_parameters(profile, path.stem, set(order))
        values["profile"] = "default"
        new = format_parameters({k: values[k] for k in order}, HEADER)
        if new != cell.source:
            stale.append(path.name)
            if not args.check:
                cell.source = new
                nbformat.write(nb, path)
    print(("stale: " if args.check else "rewritten: ") + (", ".join(stale) or "none"))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
