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


# --------------------------------------------------------------------------- 1. profiles of one's own


def test_profile_file_is_merged_over_its_base_with_its_own_store(tmp_path, monkeypatch):
    from effalign.book import load_profile, papermill_parameters

    monkeypatch.setenv("EFFALIGN_RUNS", str(tmp_path / "runs"))
    mine = tmp_path / "mine.yaml"
    mine.write_text("common:\n  seeds: [7]\n  tracks:\n    testbed: null\n    hh:\n      data: {pool_size: 100}\n")
    prof = load_profile(str(mine))
    default = load_profile("default")
    assert prof["profile"] == "mine" and prof["common"]["seeds"] == [7]
    assert list(prof["common"]["tracks"]) == ["hh"]  # a track set to null is left out
    hh = prof["common"]["tracks"]["hh"]
    assert hh["data"] == {**default["common"]["tracks"]["hh"]["data"], "pool_size": 100}  # merged key by key
    assert hh["train"] == default["common"]["tracks"]["hh"]["train"]
    assert prof["common"]["store"] == str(tmp_path / "runs" / "mine")  # never the committed results/
    assert "margin_low" not in prof["common"]["samplers"] and "ref_margin_low" in prof["common"]["samplers"]
    # a store of its own, relative to the file; another base
    other = tmp_path / "sub" / "other.yaml"
    other.parent.mkdir()
    other.write_text("base: smoke\ncommon:\n  store: ../my-results\n")
    prof = load_profile(str(other))
    assert prof["common"]["model"] == "tiny-random" and prof["common"]["store"] == str(tmp_path / "my-results")
    params = papermill_parameters(str(other), "03_samplers")
    assert params["store"] == str(tmp_path / "my-results") and params["model"] == "tiny-random"
    assert "isa_fraction" not in params  # only what the notebook declares


@pytest.mark.parametrize("text, message", [
    ("common:\n  seed: [1]\n", r"mine\.yaml: common: unknown key\(s\) 'seed'"),
    ("common:\n  tracks:\n    hh:\n      data: {pool_sise: 10}\n", r"common\.tracks\.hh\.data: unknown key\(s\) 'pool_sise'"),
    ("common:\n  train: {learning_rate: fast}\n", r"common\.train\.learning_rate must be a number"),
    ("common:\n  samplers: [isa, random, kcentre]\n", r"common\.samplers\[2\]: unknown sampler 'kcentre'"),
    ("common:\n  budgets: [10]\n", r"common\.budgets\[0\] must be a share of the pool"),
    ("common:\n  analysis: {alpha: 0.7}\n", r"common\.analysis: alpha must lie"),
    ("common:\n  tracks:\n    hh:\n      eval: {batchsize: 4}\n", r"common\.tracks\.hh\.eval: unknown key\(s\) 'batchsize'"),
    ("notebooks:\n  03_sampler: {seeds: [1]}\n", r"notebooks\.03_sampler: no such notebook"),
    ("basis: smoke\n", r"mine\.yaml: unknown key\(s\) 'basis'"),
])
def test_profile_errors_name_the_key(tmp_path, text, message):
    from effalign.cli import main

    path = tmp_path / "mine.yaml"
    path.write_text(text)
    from effalign.book import load_profile

    with pytest.raises(ValueError, match=message):
        load_profile(str(path))


def test_f_with_a_profile_is_refused_naming_the_command(tmp_path, capsys):
    from effalign.cli import main
    from effalign.notebook import refuse_profile_file

    profile = ROOT / "params" / "smoke.yaml"
    assert main(["book", "-f", str(profile), "--only", "03_samplers"]) == 2
    err = capsys.readouterr().err
    assert f"is a profile (it has common, notebooks), not a papermill parameters file: run python -m effalign book --profile {profile}" in err
    # papermill's own -f injects the profile's sections into the notebook, which stops at once
    namespace = yaml.safe_load(profile.read_text())
    with pytest.raises(ValueError, match=r"python -m effalign book --profile FILE --only 03_samplers.*"
                                         r"python -m effalign parameters --profile FILE 03_samplers"):
        refuse_profile_file(namespace, "03_samplers")
    refuse_profile_file({"seeds": [1], "store": "x"}, "03_samplers")  # flat parameters pass
    # a flat parameters file works as papermill's -f does
    flat = tmp_path / "p.yaml"
    assert main(["parameters", "--profile", "smoke", "03_samplers"]) == 0
    flat.write_text(capsys.readouterr().out)
    from effalign.cli import _read_parameters_file

    assert _read_parameters_file(str(flat))["model"] == "tiny-random"


def test_notebooks_never_train_into_the_committed_results(tmp_path):
    from effalign.experiment import collect, expand_grid

    grid = {"experiment": "x", "data": {"source": str(_write_jsonl(tmp_path / "d.jsonl", _pairs())), "eval_size": 6},
            "model": "tiny-random", "samplers": ["random"], "budgets": [4], "seeds": [0]}
    with pytest.raises(ValueError, match="refusing to train into the committed run store"):
        collect(expand_grid(grid), ROOT / "results", run=True)
    assert collect(expand_grid(grid), ROOT / "results", run=False) == []  # reading is fine


# --------------------------------------------------------------------------- 2. content fingerprints in run keys


def test_run_key_changes_with_the_data_files_content(tmp_path):
    from effalign.experiment import expand_grid

    data = _write_jsonl(tmp_path / "d.jsonl", _pairs())
    grid = {"experiment": "x", "data": {"source": str(data), "eval_size": 6}, "model": "tiny-random",
            "samplers": ["random"], "budgets": [4], "seeds": [0]}
    first = expand_grid(grid)[0]
    assert first.fingerprint["source"].startswith("sha256:") and expand_grid(grid)[0].key == first.key
    rows = _pairs()
    rows[3]["chosen"] = "An edited answer."
    _write_jsonl(data, rows)  # same path, other content
    second = expand_grid(grid)[0]
    assert second.key != first.key and second.legacy_key == first.legacy_key
    assert second.fingerprint["source"] != first.fingerprint["source"]
    # another model under the same folder name: a new key too
    assert expand_grid({**grid, "model": "smollm2-135m-instruct"})[0].fingerprint["model"].startswith("gguf-sha256:")


def test_records_from_before_fingerprints_are_used_only_for_the_same_data(tmp_path):
    from effalign.experiment import StaleRunWarning, availability, expand_grid, load_split, stored_records
    from effalign.runs import ResultStore, make_record

    data = _write_jsonl(tmp_path / "d.jsonl", _pairs())
    grid = {"experiment": "x", "data": {"source": str(data), "eval_size": 6}, "model": "tiny-random",
            "samplers": ["random"], "budgets": [4, 8], "seeds": [0]}
    specs = expand_grid(grid)
    pool, ev = load_split(grid["data"])
    store = ResultStore(tmp_path / "store")
    for spec in specs:  # records as made before run keys carried fingerprints
        legacy = spec.replace(fingerprint={})
        assert "fingerprint" not in legacy.to_dict() and legacy.key == spec.legacy_key
        store.append(make_record(legacy, {"pref_accuracy": 0.5}, "t0", "t1", 1.0,
                                 {"data_fingerprint": {"pool": pool.fingerprint(), "eval": ev.fingerprint()}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["key"] for r in stored_records(specs, store)] == [s.legacy_key for s in specs]
    rows = _pairs()
    rows[0]["rejected"] = "Something else entirely."
    _write_jsonl(data, rows)
    changed = expand_grid(grid)
    with pytest.warns(StaleRunWarning, match=r"2 stored run\(s\) of x .* were made from other data \(pool pairs"):
        assert stored_records(changed, store) == []
    with pytest.warns(StaleRunWarning):
        assert availability({"g": changed}, store).loc["all (distinct runs)", "stored"] == 0
