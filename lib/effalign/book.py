"""Build the book: execute every notebook with a parameter profile (papermill), then render it.

Profiles live in ``params/<profile>.yaml``::

    common:            # parameters given to every notebook
      seed: 0
    notebooks:         # per-notebook parameters (override ``common``)
      02_scaling: {fractions: [0.02, 0.1, 1.0]}

Executed notebooks are written to ``book/executed/`` (git-ignored), which the table of contents
(``_toc.yml``) points at; Jupyter Book 1 then renders the repository root to ``_build/html``
with execution switched off, offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .data import repo_dir

NOTEBOOK_DIR = "notebooks"
EXECUTED_DIR = "book/executed"


def load_profile(profile: str, root: Path | None = None) -> dict[str, Any]:
    """Read ``params/<profile>.yaml`` (a path to a .yaml file also works)."""
    root = root or repo_dir()
    path = Path(profile) if profile.endswith((".yaml", ".yml")) else root / "params" / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (root / "params").glob("*.yaml"))
        raise FileNotFoundError(f"profile {profile!r} not found at {path}; known profiles: {known}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profile must be a mapping with 'common' and 'notebooks'")
    data.setdefault("common", {})
    data.setdefault("notebooks", {})
    data["profile"] = path.stem
    return data


def notebook_parameters(profile: dict[str, Any], name: str) -> dict[str, Any]:
    params = dict(profile.get("common") or {})
    params.update((profile.get("notebooks") or {}).get(name) or {})
    params["profile"] = profile["profile"]
    return params


def execute_notebooks(profile: str, root: Path | None = None, only: list[str] | None = None,
                      out_dir: Path | None = None, timeout: int = 3600) -> list[Path]:
    """Execute the notebooks in ``notebooks/`` with papermill; raises on any cell error."""
    import papermill as pm

    root = root or repo_dir()
    prof = load_profile(profile, root)
    out_dir = out_dir or root / EXECUTED_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for nb in sorted((root / NOTEBOOK_DIR).glob("*.ipynb")):
        if only and nb.stem not in only:
            continue
        target = out_dir / nb.name
        t0 = time.perf_counter()
        print(f"[book] executing {nb.name} with profile {prof['profile']}", flush=True)
        pm.execute_notebook(
            str(nb), str(target), parameters=notebook_parameters(prof, nb.stem),
            cwd=str(root / NOTEBOOK_DIR), kernel_name="python3", progress_bar=False,
            execution_timeout=timeout,
        )
        print(f"[book] {nb.name} done in {time.perf_counter() - t0:.0f} s", flush=True)
        written.append(target)
    return written


def render(root: Path | None = None) -> Path:
    """Render the book with Jupyter Book 1 (offline, no execution) into ``_build/html``."""
    root = root or repo_dir()
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(root), "--builder", "html"]
    subprocess.run(cmd, check=True, cwd=root, env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    html = root / "_build" / "html"
    if not (html / "index.html").exists():
        raise RuntimeError(f"Jupyter Book ran but {html / 'index.html'} is missing")
    return html


def build_book(profile: str = "default", execute: bool = True) -> Path:
    root = repo_dir()
    if execute:
        execute_notebooks(profile, root)
    html = render(root)
    print(f"[book] HTML in {html}")
    return html
