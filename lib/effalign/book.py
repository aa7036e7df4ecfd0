"""Build the book: execute every notebook with a parameter profile (papermill), then render it.

The project's profiles live in ``params/<profile>.yaml``::

    common:            # parameters offered to every notebook
      model: smollm2-135m-instruct
      train: {epochs: 1, lora: true}
      tracks: {hh: {metric: pref_accuracy, data: {source: hh-harmless, eval_size: 300}, eval: {}}}
    notebooks:         # per-notebook parameters (override ``common``)
      01_data_and_information: {isa_fraction: 0.1}

A profile of the user's own is any other YAML file (``--profile my.yaml``): it holds only what
changes and is merged over ``params/default.yaml`` (or over the profile named by its ``base`` key;
``base: null`` marks a complete profile, merged over nothing):
mappings are merged key by key, any other value (a list, a number, text) replaces the base's, and
a track set to ``null`` is left out. Its runs go to a store of its own, :func:`user_store` (never
the committed ``results/``), unless it names a ``store`` (a relative path is relative to the
file). Every profile is checked by :func:`effalign.validate.validate_profile` (errors name the
key). :func:`papermill_parameters` gives one notebook's flat parameters for ``papermill -f``.

Executed notebooks are written to ``book/executed/`` (git-ignored), which the table of contents
(``_toc.yml``) points at; Jupyter Book 1 then renders the repository root to ``_build/html``
with execution switched off, offline.

A build never publishes a broken or stale chapter. Notebooks are executed into a temporary folder
beside ``book/executed/`` and moved in only when every one of them succeeded (a failed notebook is
kept in ``_build/failed/`` for inspection, and ``book/executed/`` stays as it was). Each executed
notebook carries a :class:`BuildStamp` in its metadata (``metadata.effalign``: the git commit it
was executed from, whether the working tree had uncommitted changes, the profile). Before
rendering, :func:`check_executed` refuses (:class:`BookError`, a non-zero exit of
``python -m effalign book``) a chapter that is missing, shows an error output or a traceback, or
was executed from another commit or profile than the build's.

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

import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .data import repo_dir

NOTEBOOK_DIR = "notebooks"
EXECUTED_DIR = "book/executed"
FAILED_DIR = "_build/failed"
#: key of the build stamp in an executed notebook's metadata
STAMP_KEY = "effalign"


class BookError(RuntimeError):
    """The book cannot be built: a notebook failed, or the executed chapters are broken or stale."""


@dataclass(frozen=True)
class BuildStamp:
    """What a notebook was executed from (stored in its metadata under ``effalign``)."""

    #: the repository's git commit (``git rev-parse HEAD``); None outside a git checkout
    commit: str | None
    #: True when tracked or untracked (not ignored) files differed from that commit
    dirty: bool
    #: the parameter profile's name (``params/<profile>.yaml``)
    profile: str


def git_state(root: Path) -> tuple[str | None, bool]:
    """``(commit, dirty)`` of the checkout at ``root``; ``(None, False)`` when it is not one."""
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)

    try:
        head = git("rev-parse", "HEAD")
    except FileNotFoundError:  # no git on this machine
        return None, False
    if head.returncode != 0:
        return None, False
    status = git("status", "--porcelain")
    return head.stdout.strip(), bool(status.stdout.strip())


def build_stamp(profile: str, root: Path | None = None) -> BuildStamp:
    """The stamp a build of ``profile`` from ``root``'s current commit gives its notebooks."""
    root = root or repo_dir()
    commit, dirty = git_state(root)
    return BuildStamp(commit=commit, dirty=dirty, profile=load_profile(profile, root)["profile"])


def runs_dir() -> Path:
    """Where the stores of users' profiles live: ``$EFFALIGN_RUNS``, else ``<cache>/runs``
    (``$EFFALIGN_CACHE/runs`` or ``~/.cache/effalign/runs``), outside the repository."""
    from .models import cache_dir

    env = os.environ.get("EFFALIGN_RUNS")
    return Path(env).expanduser() if env else cache_dir() / "runs"


def user_store(name: str) -> Path:
    """The default run store of a user's profile named ``name``: ``runs_dir()/<name>``."""
    return runs_dir() / name


def merge_profile(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings key by key (recursively), other values replace."""
    import copy

    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_profile(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}: not valid YAML{at} ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profile must be a mapping with 'common' and 'notebooks'")
    return data


def profile_path(profile: str, root: Path | None = None) -> Path:
    """The file of a profile: ``params/<name>.yaml`` for a name, the path itself for a .yaml file."""
    root = root or repo_dir()
    path = Path(profile).expanduser() if profile.endswith((".yaml", ".yml")) else root / "params" / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / "params").glob("*.yaml"))
        raise FileNotFoundError(f"profile {profile!r} not found at {path}; known profiles: {known} "
                                "(or a .yaml file of your own)")
    return path


def is_project_profile(path: Path, root: Path | None = None) -> bool:
    """Whether ``path`` is one of the project's profiles (``params/*.yaml``), not a user's."""
    root = root or repo_dir()
    return path.resolve().parent == (root / "params").resolve()


def _rename_samplers(common: dict[str, Any]) -> None:
    """A user's profile trains new runs: sampler names of earlier versions that a project profile
    keeps for its stored runs (``margin_low``) become today's (``ref_margin_low``)."""
    from .samplers import RENAMED

    if isinstance(common.get("samplers"), list):
        common["samplers"] = [RENAMED.get(s, s) if isinstance(s, str) else s for s in common["samplers"]]


def load_profile(profile: str, root: Path | None = None) -> dict[str, Any]:
    """Read a profile: ``params/<profile>.yaml`` by name, or a ``.yaml`` file. A file outside
    ``params/`` is a user's profile: merged over its ``base`` (default ``default``), its tracks
    set to ``null`` left out, its ``store`` resolved against its folder or, when it names none,
    :func:`user_store` (see the module docstring). The result is checked
    (:func:`effalign.validate.validate_profile`); its ``profile`` is the file's stem."""
    from .validate import validate_profile

    root = root or repo_dir()
    path = profile_path(profile, root)
    data = _read_yaml_mapping(path)
    if is_project_profile(path, root):
        if "base" in data:
            raise ValueError(f"{path}: 'base' is for a profile of your own; the project's profiles are complete")
    else:
        base_name = data.pop("base", "default")
        if base_name is not None and not isinstance(base_name, str):
            raise ValueError(f"{path}: 'base' must name a profile (default, smoke, paper or a .yaml file), "
                             "or be null for a complete profile")
        unknown = sorted(set(data) - {"common", "notebooks"})
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; known: base, common, notebooks")
        own = data.get("common") or {}
        if base_name is not None:
            if base_name.endswith((".yaml", ".yml")) and not Path(base_name).expanduser().is_absolute():
                base_name = str(path.parent / base_name)
            if profile_path(base_name, root).resolve() == path.resolve():
                raise ValueError(f"{path}: 'base' names the file itself")
            base = load_profile(base_name, root)
            base.pop("profile", None)
            data = merge_profile(base, {k: v for k, v in data.items() if k in ("common", "notebooks")})
        data.setdefault("common", {})
        _rename_samplers(data["common"])
        tracks = data["common"].get("tracks")
        if isinstance(tracks, dict):
            data["common"]["tracks"] = {k: v for k, v in tracks.items() if v is not None}
        store = own.get("store") if isinstance(own, dict) else None
        if isinstance(store, str):
            data["common"]["store"] = str((path.parent / Path(store).expanduser()).resolve())
        else:
            data["common"]["store"] = str(user_store(path.stem))
    data.setdefault("common", {})
    data.setdefault("notebooks", {})
    data["profile"] = path.stem
    from .experiment import DEFAULT_EVAL

    validate_profile(data, path, eval_defaults=DEFAULT_EVAL, extra_keys=notebook_parameter_names(root))
    known = {p.stem for p in (root / NOTEBOOK_DIR).glob("*.ipynb")}
    unknown = sorted(set(data["notebooks"] or {}) - known)
    if known and unknown:
        raise ValueError(f"{path}: notebooks.{unknown[0]}: no such notebook; known: {', '.join(sorted(known))}")
    return data


def notebook_parameter_names(root: Path | None = None) -> set[str]:
    """Every name the parameters cells of ``root``'s notebooks assign (read without papermill)."""
    import ast
    import json

    names: set[str] = set()
    for nb in sorted(((root or repo_dir()) / NOTEBOOK_DIR).glob("*.ipynb")):
        try:
            cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        for cell in cells:
            if "parameters" in (cell.get("metadata") or {}).get("tags", []):
                source = "".join(cell.get("source") or [])
                try:
                    tree = ast.parse(source)
                except SyntaxError:
                    continue
                names |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                          if isinstance(t, ast.Name)}
                break
    return names - {"profile"}


def papermill_parameters(profile: str, notebook: str, root: Path | None = None,
                         overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat parameters one notebook receives from a profile (as ``python -m effalign book``
    gives them), for ``papermill NOTEBOOK OUT -f FILE``: only the names its parameters cell
    declares, with ``store`` an absolute path."""
    root = root or repo_dir()
    path = root / NOTEBOOK_DIR / f"{notebook}.ipynb"
    if not path.exists():
        known = sorted(p.stem for p in (root / NOTEBOOK_DIR).glob("*.ipynb"))
        raise BookError(f"no notebook named {notebook!r} in {root / NOTEBOOK_DIR}; known: {known}")
    params = notebook_parameters(load_profile(profile, root), notebook, declared_parameters(path), overrides)
    if "store" in params:
        params["store"] = str(store_path(params["store"], root))
    return params


def store_path(store: str | Path, root: Path | None = None) -> Path:
    """A profile's ``store`` setting as an absolute path (relative settings are relative to notebooks/)."""
    return ((root or repo_dir()) / NOTEBOOK_DIR / Path(store).expanduser()).resolve()


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
    ``declared`` (the names of the notebook's parameters cell) when given. A dotted override
    (``gpu_dpo.fraction``) changes one entry inside a mapping parameter and keeps the rest."""
    import copy

    params = dict(profile.get("common") or {})
    params.update((profile.get("notebooks") or {}).get(name) or {})
    overrides = overrides or {}
    params.update({k: v for k, v in overrides.items() if "." not in k})
    for key, value in overrides.items():
        if "." not in key:
            continue
        head, *path = key.split(".")
        if head not in params:
            continue  # not this notebook's parameter (the caller checks that some notebook has it)
        params[head] = target = copy.deepcopy(params[head])
        for part in path[:-1]:
            if not isinstance(target, dict):
                raise BookError(f"parameter {key!r}: {head} has no mapping at {part!r}")
            target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise BookError(f"parameter {key!r}: the value at {'.'.join([head, *path[:-1]])} is not a mapping")
        target[path[-1]] = value
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
    """Execute the notebooks in ``notebooks/`` with papermill into ``out_dir`` (``book/executed/``).

    All or nothing: the notebooks are executed into a temporary folder beside ``out_dir`` and
    moved into it only when every one succeeded; on a failure :class:`BookError` names the
    notebook, the cell and the error, ``out_dir`` keeps its previous contents and the failed
    notebook is kept in ``_build/failed/``. Each executed notebook is stamped with the commit
    and profile (:class:`BuildStamp`). ``only`` restricts the build to some notebooks (stems).

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


def _failure(nb: Path, err: Exception) -> str:
    """One line on why papermill failed: the cell and the exception, without the traceback."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename is not None:
        cell = getattr(err, "exec_count", None) or getattr(err, "cell_index", "?")
        return f"{nb.name} failed in cell [{cell}]: {ename}: {evalue}"
    return f"{nb.name} failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _execute(root: Path, prof: dict[str, Any], out_dir: Path, only: list[str] | None, timeout: int | None,
             overrides: dict[str, Any] | None) -> list[Path]:
    import papermill as pm

    commit, dirty = git_state(root)
    stamp = BuildStamp(commit=commit, dirty=dirty, profile=prof["profile"])
    notebooks = [nb for nb in sorted((root / NOTEBOOK_DIR).glob("*.ipynb")) if not only or nb.stem in only]
    if only and len(notebooks) < len(set(only)):
        known = sorted(p.stem for p in (root / NOTEBOOK_DIR).glob("*.ipynb"))
        raise BookError(f"no notebook named {sorted(set(only) - {nb.stem for nb in notebooks})} in "
                        f"{root / NOTEBOOK_DIR}; known: {known}")
    declared = {nb.stem: declared_parameters(nb) for nb in notebooks}
    unknown = {k.split(".")[0] for k in overrides or {}} - set().union(*declared.values(), {"profile"})
    if unknown:
        raise BookError(f"no notebook to execute declares the parameter(s) {sorted(unknown)}; "
                        f"declared: {sorted(set().union(*declared.values()))}")
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.executing-", dir=out_dir.parent))
    timings: dict[str, float] = {}
    try:
        staged = []
        for nb in notebooks:
            target = staging / nb.name
            t0 = time.perf_counter()
            print(f"[book] executing {nb.name} with profile {prof['profile']}", flush=True)
            params = notebook_parameters(prof, nb.stem, declared[nb.stem], overrides)
            try:
                pm.execute_notebook(
                    str(nb), str(target), parameters=params,
                    cwd=str(root / NOTEBOOK_DIR), kernel_name="python3", progress_bar=False,
                    execution_timeout=timeout,
                )
            except Exception as err:  # papermill's error or a kernel that died: keep the evidence
                kept = root / FAILED_DIR / nb.name
                if target.exists():
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(target, kept)
                raise BookError(f"{_failure(nb, err)}\n{out_dir} was left as it was"
                                + (f"; the failed notebook is {kept}" if target.exists() else "")) from err
            _tidy_parameter_cells(target, params)
            _write_stamp(target, stamp, overrides)
            timings[nb.stem] = time.perf_counter() - t0
            print(f"[book] {nb.name} done in {timings[nb.stem]:.0f} s", flush=True)
            staged.append(target)
        written = []
        for path in staged:  # every notebook succeeded: move them in
            final = out_dir / path.name
            os.replace(path, final)
            written.append(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    execute_notebooks.timings = timings  # type: ignore[attr-defined]
    return written


def _write_stamp(path: Path, stamp: BuildStamp, overrides: dict[str, Any] | None = None) -> None:
    """Record ``stamp``, the time and the parameters that replaced the profile's in the metadata."""
    import json

    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata[STAMP_KEY] = {**asdict(stamp), "overrides": json.loads(json.dumps(overrides or {}, default=str)),
                              "executed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    nbformat.write(nb, str(path))


def read_stamp(path: Path) -> BuildStamp | None:
    """The build stamp of an executed notebook (None when it has none)."""
    import nbformat

    meta = nbformat.read(str(path), as_version=4).metadata.get(STAMP_KEY)
    if not meta:
        return None
    return BuildStamp(commit=meta.get("commit"), dirty=bool(meta.get("dirty")), profile=meta.get("profile", ""))


TRACEBACK = re.compile(r"Traceback \(most recent call last\)")


def notebook_problems(path: Path) -> list[str]:
    """Why an executed notebook must not be published: error outputs, tracebacks printed to a
    stream, or papermill's record of an exception (empty when it is sound)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    problems = []
    if (nb.metadata.get("papermill") or {}).get("exception"):
        problems.append(f"{path.name}: papermill recorded an exception during its execution")
    for i, cell in enumerate(nb.cells):
        where = f"{path.name}, cell {i} ([{cell.get('execution_count') or ' '}])"
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"{where} shows an error: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and TRACEBACK.search(out.get("text", "")):
                problems.append(f"{where} prints a traceback")
    return problems


def toc_notebooks(root: Path) -> list[str]:
    """The executed chapters the table of contents (``_toc.yml``) lists, as names."""
    toc = (root / "_toc.yml").read_text()
    return re.findall(rf"file:\s*{re.escape(EXECUTED_DIR)}/(\S+?)(?:\.ipynb)?\s*$", toc, flags=re.MULTILINE)


def check_executed(root: Path, stamp: BuildStamp) -> list[str]:
    """Problems that forbid rendering ``root``'s executed chapters with a build of ``stamp``: a
    chapter of the table of contents missing, broken (:func:`notebook_problems`), unstamped, or
    executed from another profile or commit. Empty when the book may be rendered."""
    problems = []
    short = (stamp.commit or "none")[:10]
    for name in toc_notebooks(root):
        path = root / EXECUTED_DIR / f"{name}.ipynb"
        if not path.exists():
            problems.append(f"{EXECUTED_DIR}/{name}.ipynb is missing")
            continue
        problems += notebook_problems(path)
        got = read_stamp(path)
        if got is None:
            problems.append(f"{path.name} has no build stamp (executed by an older build: commit and profile unknown)")
            continue
        if got.profile != stamp.profile:
            problems.append(f"{path.name} was executed with profile {got.profile!r}, not {stamp.profile!r}")
        if got.commit != stamp.commit:
            problems.append(f"{path.name} was executed at commit {(got.commit or 'none')[:10]}, "
                            f"the repository is at {short}")
    return problems


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


def render(root: Path | None = None, stamp: BuildStamp | None = None) -> Path:
    """Render the book with Jupyter Book 1 (offline, no execution) into ``<root>/_build/html``.

    With ``stamp``, first refuses (:class:`BookError`) executed chapters that
    :func:`check_executed` rejects for that build."""
    root = root or repo_dir()
    if stamp is not None:
        problems = check_executed(root, stamp)
        if problems:
            raise BookError(
                f"refusing to render the book (profile {stamp.profile!r}, commit {(stamp.commit or 'none')[:10]}):\n  "
                + "\n  ".join(problems)
                + f"\nExecute the notebooks again: python -m effalign book --profile {stamp.profile}")
        if stamp.dirty or any((read_stamp(root / EXECUTED_DIR / f"{n}.ipynb") or stamp).dirty
                              for n in toc_notebooks(root)):
            print("[book] note: the working tree has uncommitted changes; the chapters show the state of "
                  "the files, not only of the commit", flush=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(root), "--builder", "html"]
    done = subprocess.run(cmd, cwd=root, env={**os.environ, **OFFLINE_ENV})
    if done.returncode != 0:
        raise BookError(f"jupyter-book build failed (exit {done.returncode}); its messages are above")
    html = root / "_build" / "html"
    if not (html / "index.html").exists():
        raise BookError(f"Jupyter Book ran but {html / 'index.html'} is missing")
    return html


def build_book(profile: str = "default", execute: bool = True, only: list[str] | None = None,
               overrides: dict[str, Any] | None = None) -> Path:
    """Execute the notebooks with ``profile`` (unless ``execute`` is False; ``only`` some of them,
    ``overrides`` replacing profile values) and render the book, refusing chapters that are broken
    or come from another commit or profile (:class:`BookError`). With ``only``, when the other
    chapters are not from this build, the executed notebooks are kept and the book is not
    rendered (a message says so); returns the HTML folder, or then the executed notebooks' folder."""
    root = repo_dir()
    stamp = build_stamp(profile, root)
    t0 = time.perf_counter()
    if execute:
        written = execute_notebooks(profile, root, only=only, overrides=overrides)
        others = [p for p in check_executed(root, stamp) if not any(w.name in p for w in written)]
        if only and others:
            print(f"[book] executed {', '.join(str(w) for w in written)}; the book is not rendered, since other "
                  f"chapters are not from this build ({others[0]}{' …' if len(others) > 1 else ''}): "
                  f"python -m effalign book --profile {profile} executes them all and renders", flush=True)
            return written[0].parent
    t1 = time.perf_counter()
    html = render(root, stamp)
    print(f"[book] notebooks {t1 - t0:.0f} s, rendering {time.perf_counter() - t1:.0f} s; HTML in {html}")
    return html
