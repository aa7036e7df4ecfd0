"""The paths a user takes to re-run with their own model, data, budget and tools (issue 18).

The README's commands marked ``<!-- tested -->`` run here exactly as printed, in a copy of the
repository, with one substitution: the store of a user's profile (``EFFALIGN_RUNS``) points at a
temporary folder. The other tests check each piece on its own: profiles of one's own, ``-f`` with
a profile, content fingerprints in run keys (and records stored before them), data sources,
saving the aligned policy and TensorBoard logs, the exported subset read by datasets and TRL, the
reference precision, warnings a user can act on, the reference page and the command line.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from effalign.data import DataError, load_preferences, repo_dir, resolve_source

ROOT = repo_dir()
PY = sys.executable
HAS_HH = Path(resolve_source("hh-harmless")).exists()
needs_hh = pytest.mark.skipif(not HAS_HH, reason="shared HH data not found (set EFFALIGN_SHARED)")


def _env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: the project's python first on PATH, offline, one thread."""
    env = {**os.environ, "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "EFFALIGN_SHARED": str(Path(resolve_source("hh-harmless")).parents[3])}
    env.update(extra)
    return env


def _pairs(n: int = 30) -> list[dict]:
    topics = ["cats", "tax law", "bread", "rust", "jazz", "sleep", "chess", "rain", "maps", "tea"]
    return [{"prompt": f"Tell me about {topics[i % 10]} (question {i}).",
             "chosen": f"A careful answer about {topics[i % 10]}: " + "detail " * (1 + i % 7),
             "rejected": "I won't." if i % 2 else f"{topics[i % 10]} is boring.",
             "preference": round(0.5 + i / 100, 2)} for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- the README, as printed


def readme_blocks(text: str) -> list[str]:
    """The bash blocks of the README that follow a ``<!-- tested -->`` line."""
    return re.findall(r"<!-- tested -->\s*\n```bash\n(.*?)```", text, flags=re.DOTALL)


def _repo_copy(dest: Path) -> Path:
    """The repository's files (tracked and untracked, not ignored) copied to ``dest``."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@needs_hh
def test_readme_commands_run_as_printed(tmp_path):
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 3, "the README's tested blocks: a profile of one's own, papermill -f, own data"
    repo = _repo_copy(tmp_path / "repo")
    runs = tmp_path / "runs"
    env = _env(PYTHONPATH=os.pathsep.join([str(repo / "lib"), os.environ.get("PYTHONPATH", "")]),
               EFFALIGN_RUNS=str(runs))
    for block in blocks:
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"README block failed:\n{block}\n--- stderr:\n{done.stderr[-4000:]}"
    # 1. the profile's chapter trained its missing runs into its own store, not results/
    store = runs / "my"
    records = [json.loads(line) for f in store.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert records and {r["spec"]["model"] for r in records} == {"tiny-random"}
    assert {r["spec"]["seed"] for r in records} >= {3}
    assert all(r["spec"]["fingerprint"]["model"].startswith("recipe:tiny_policy") for r in records)
    assert (repo / "book" / "executed" / "03_samplers.ipynb").exists()
    assert (repo / "results" / "hh_subsets.jsonl").read_bytes() == (ROOT / "results" / "hh_subsets.jsonl").read_bytes()
    # 2. papermill with the parameters file trained seed 4 of the scaling grid into the same store
    assert (repo / "my-02_scaling.ipynb").exists()
    seeds = {json.loads(line)["spec"]["seed"] for f in store.glob("*.jsonl") for line in f.read_text().splitlines()}
    assert 4 in seeds
    # 3. own data, a grid, the saved policy with its model card and TensorBoard event files
    mine = [json.loads(line) for line in (repo / "my-results" / "mine.jsonl").read_text().splitlines()]
    assert len(mine) == 1
    key = mine[0]["key"]
    card = (repo / "aligned" / key / "README.md").read_text()
    assert key in card and "pref_accuracy" in card
    assert (repo / "aligned" / key / "tokenizer.json").exists()
    assert list((repo / "logs" / key).glob("events.out.tfevents.*"))
    assert (repo / "my-subset" / ".longest.meta.json").exists()
