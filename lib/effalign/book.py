"""Build the book: execute every notebook with a parameter profile (papermill), then render it.

Profiles live in ``params/<profile>.yaml``::

    common:            # parameters offered to every notebook
      model: smollm2-135m-instruct
      train: {epochs: 1, lora: true}
      tracks: {hh: {metric: pref_accuracy, data: {source: hh-harmless, eval_size: 300}, eval: {}}}
    notebooks:         # per-notebook parameters (override ``common``)
      01_data_and_information: {isa_fraction: 0.1}

Executed notebooks are written to ``book/executed/`` (git-ignored), which the table of contents
(``_toc.yml``) points at; Jupyter Book 1 then renders the repository root to ``_build/html``
with execution switched off, offline.

Each notebook receives only the names its ``parameters`` cell declares (so ``common`` may hold
values for several notebooks); ``overrides`` replace profile values for one build (the tests
point ``store`` at a throwaway directory). In the executed copies the original parameters cell
is tagged ``remove-cell``; the cell papermill injects, with the values actually used, stays,
folded, with one readable assignment per parameter.
:func:`stage_book` copies the book's sources next to a set of executed notebooks so that a
throwaway copy can be rendered (tests). The grids a profile's notebooks run are built by
:mod:`effalign.grids` (``notebook_grids``, ``export_grids``).
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


OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
KERNEL_ENV = {**OFFLINE_ENV, "TQDM_DISABLE": "1"}


def notebook_parameters(profile: dict[str, Any], name: str, declared: set[str] | None = None,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``common`` updated by ``notebooks.<name>`` and ``overrides``, plus ``profile``; restricted to
    ``declared`` (the names of the notebook's parameters cell) when given."""
    params = dict(profile.get("common") or {})
    params.update((profile.get("notebooks") or {}).get(name) or {})
    params.update(overrides or {})
    params["profile"] = profile["profile"]
    if declared is not None:
        params = {k: v for k, v in params.items() if k in declared}
    return params


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters`` (empty if it has none)."""
    import papermill as pm

    return set(pm.inspect_notebook(str(path)))


def format_parameters(params: dict[str, Any], header: str) -> str:
    """A parameters cell: ``header``, then one line-wrapped assignment per parameter."""
    import pprint

    lines = [header]
    for k, v in params.items():
        text = pprint.pformat(v, width=88 - len(k) - 3, sort_dicts=False)
        lines.append(f"{k} = " + text.replace("\n", "\n" + " " * (len(k) + 3)))
    return "\n".join(lines)


def _tidy_parameter_cells(path: Path, params: dict[str, Any]) -> None:
    """In an executed notebook: tag the original parameters cell ``remove-cell``; rewrite the
    injected one with one readable, line-wrapped assignment per parameter, folded (``hide-input``:
    the book shows a button that unfolds it)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            cell.setdefault("metadata", {})["tags"] = [*tags, "remove-cell"]
        if "injected-parameters" in tags:
            if "hide-input" not in tags:
                cell["metadata"]["tags"] = [*tags, "hide-input"]
            cell["source"] = format_parameters(params, "# Parameters of this build (papermill)")
    nbformat.write(nb, str(path))


def execute_notebooks(profile: str, root: Path | None = None, only: list[str] | None = None,
                      out_dir: Path | None = None, timeout: int | None = None,
                      overrides: dict[str, Any] | None = None) -> list[Path]:
    """Execute the notebooks in ``notebooks/`` with papermill; raises on any cell error.

    ``timeout`` limits each cell (seconds; None: no limit, since a cell may train a whole grid).
    Returns the executed notebooks' paths; ``execute_notebooks.timings`` holds the seconds per
    notebook of the last call.
    """
    root = root or repo_dir()
    prof = load_profile(profile, root)
    out_dir = out_dir or root / EXECUTED_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    # kernels inherit this process's environment: offline, no progress bars in the outputs (one
    # per embedding batch or model load would flood them; TQDM_DISABLE=0 brings them back), and the
    # inline figure backend (a non-interactive MPLBACKEND such as the tests' Agg loses the figures)
    kernel_env = {**{k: os.environ.get(k, v) for k, v in KERNEL_ENV.items()},
                  "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    try:
        return _execute(root, prof, out_dir, only, timeout, overrides)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _execute(root: Path, prof: dict[str, Any], out_dir: Path, only: list[str] | None, timeout: int | None,
             overrides: dict[str, Any] | None) -> list[Path]:
    import papermill as pm

    written = []
    timings: dict[str, float] = {}
    for nb in sorted((root / NOTEBOOK_DIR).glob("*.ipynb")):
        if only and nb.stem not in only:
            continue
        target = out_dir / nb.name
        t0 = time.perf_counter()
        print(f"[book] executing {nb.name} with profile {prof['profile']}", flush=True)
        params = notebook_parameters(prof, nb.stem, declared_parameters(nb), overrides)
        pm.execute_notebook(
            str(nb), str(target), parameters=params,
            cwd=str(root / NOTEBOOK_DIR), kernel_name="python3", progress_bar=False,
            execution_timeout=timeout,
        )
        _tidy_parameter_cells(target, params)
        timings[nb.stem] = time.perf_counter() - t0
        print(f"[book] {nb.name} done in {timings[nb.stem]:.0f} s", flush=True)
        written.append(target)
    execute_notebooks.timings = timings  # type: ignore[attr-defined]
    return written


BOOK_SOURCES = ("_config.yml", "_toc.yml")


def stage_book(dest: Path, executed: Path, root: Path | None = None) -> Path:
    """Copy the book's sources (config, table of contents, ``book/`` chapters and static files)
    into ``dest`` with the executed notebooks of ``executed`` as ``book/executed``."""
    import shutil

    root = root or repo_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for name in BOOK_SOURCES:
        shutil.copy2(root / name, dest / name)
    shutil.copytree(root / "book", dest / "book", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("executed", "_build", ".ipynb_checkpoints"))
    target = dest / EXECUTED_DIR
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(executed, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dest


def render(root: Path | None = None) -> Path:
    """Render the book with Jupyter Book 1 (offline, no execution) into ``<root>/_build/html``."""
    root = root or repo_dir()
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(root), "--builder", "html"]
    subprocess.run(cmd, check=True, cwd=root, env={**os.environ, **OFFLINE_ENV})
    html = root / "_build" / "html"
    if not (html / "index.html").exists():
        raise RuntimeError(f"Jupyter Book ran but {html / 'index.html'} is missing")
    return html


def build_book(profile: str = "default", execute: bool = True) -> Path:
    root = repo_dir()
    t0 = time.perf_counter()
    if execute:
        execute_notebooks(profile, root)
    t1 = time.perf_counter()
    html = render(root)
    print(f"[book] notebooks {t1 - t0:.0f} s, rendering {time.perf_counter() - t1:.0f} s; HTML in {html}")
    return html
