"""Scale-out on CPU: two data-parallel processes (gloo) train like one; shards split a grid.

The launches go through the repository's accelerate config (configs/accelerate/cpu_2proc.yaml),
the command the book documents; each test takes a few seconds plus two process start-ups.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tiny_pairs
import torch
import yaml

from effalign import experiment, logps
from effalign.runs import ResultStore, RunSpec

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).with_name("accelerate")
CPU_2PROC = ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"
FSDP = ROOT / "configs" / "accelerate" / "fsdp.yaml"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(tmp_path: Path) -> dict[str, str]:
    """This library first on the path, one thread per process, no GPU, offline, caches in tmp."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "lib"), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            "EFFALIGN_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}


def start_two(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """`accelerate launch` with the two-CPU-process config (started, not awaited)."""
    cmd = [str(ACCELERATE), "launch", "--config_file", str(CPU_2PROC), "--main_process_port", str(free_port()), *args]
    return subprocess.Popen(cmd, env=child_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def finish(proc: subprocess.Popen, timeout: int = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:] + err[-6000:]
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny):
    model, tok = tiny
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_two_processes_train_like_one(model_dir, tmp_path):
    """DDP through `accelerate launch` (gloo): same losses and weights as one process with the same
    global batch, weights identical across ranks (gradients averaged), every pair counted once."""
    sys.path.insert(0, str(ROOT / "tests"))
    from distributed_worker import SETTINGS, train_settings

    out = tmp_path / "out"
    out.mkdir()
    launch = start_two([str(ROOT / "tests" / "distributed_worker.py"), str(model_dir), str(out)], tmp_path)
    single = train_settings(str(model_dir))  # meanwhile, the same in this one process
    finish(launch)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for name, (config, float32) in SETTINGS.items():
        one, two, other = single[name], ranks[0][name], ranks[1][name]
        assert two["weights"] == other["weights"], f"{name}: the two processes' weights differ (no gradient sync)"
        assert two["losses"] == other["losses"]  # the logged loss is averaged over both processes
        assert one["weights"].keys() == two["weights"].keys()
        changed = [k for k in one["weights"] if two["weights"][k] != one["weights"][k]]
        assert changed, "the comparison must involve trained weights"
        steps = math.ceil(8 / config.batch_size) * config.epochs
        assert len(one["losses"]) == len(two["losses"]) == steps
        assert two["losses"][0] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step one
        tol = 1e-4 if float32 else 5e-3  # bf16 sums depend on how the batch is split and padded
        assert two["losses"] == pytest.approx(one["losses"], abs=tol), name
        assert two["margins"] == pytest.approx(one["margins"], abs=10 * tol), name
        if float32:
            for k, v in one["weights"].items():
                assert two["weights"][k] == pytest.approx(v, rel=1e-3, abs=1e-3), (name, k)
        m1, m2 = one["metrics"], two["metrics"]
        assert m1["processes"] == 1 and m2["processes"] == 2
        assert m1["pairs_seen"] == m2["pairs_seen"] == 8 * config.epochs  # both processes' pairs counted
        assert m1["tokens"] == m2["tokens"] > 0
        assert m2["steps"] == m1["steps"] == steps and m2["peak_memory_mb"] > 0


def test_data_parallel_logps_run_inside_the_wrapper(tiny):
    """The fast path goes through a wrapper's forward (where DDP arms its all-reduce) and restores
    the unwrapped model's forward afterwards, even one accelerate patched."""
    from effalign.train import data_parallel_logps

    model, tok = tiny
    calls = []

    class Wrapper(__import__("torch").nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            calls.append(sorted(kwargs))
            return self.module(*args, **kwargs)

    pairs = [logps.TokenizedPair([1, 2, 3], [4, 5], [6]), logps.TokenizedPair([7, 8], [9], [10, 11, 12])]
    batch = logps.pair_batch(pairs, tok.pad_token_id)
    direct = logps.completion_logps(model, batch)
    assert "forward" not in model.__dict__
    wrapped = data_parallel_logps(Wrapper(model), batch, model)
    assert calls == [["attention_mask", "input_ids", "target_mask"]]
    assert wrapped.tolist() == direct.tolist() and "forward" not in model.__dict__
    # no wrapper, but hooks on the model itself (as FSDP2 installs them): they run too
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: calls.append("hook"), with_kwargs=True)
    try:
        assert data_parallel_logps(model, batch, model).tolist() == direct.tolist() and calls[-1] == "hook"
    finally:
        handle.remove()
    patched = model.forward
    model.forward = patched  # as accelerate's autocast patch leaves it: an instance attribute
    data_parallel_logps(Wrapper(model), batch, model)
    assert model.__dict__["forward"] is patched
    del model.forward


def test_global_batch_must_divide_among_processes():
    from effalign.train import per_device_batch_size

    assert per_device_batch_size(8, 1) == 8 and per_device_batch_size(8, 4) == 2
    with pytest.raises(ValueError, match="global batch.*3 processes"):
        per_device_batch_size(8, 3)


def test_accelerate_cpu_flag_is_refused_not_run_in_one_process(monkeypatch):
    from effalign.train import check_launch

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match="cpu_2proc.yaml"):
        check_launch(1)
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="launched as 2 processes"):
        check_launch(1)
    check_launch(2)


# --------------------------------------------------------------------------- grids: launch and shards


@pytest.fixture()
def grid_file(model_dir, tmp_path):
    data = write_tiny_pairs(tmp_path / "pairs.jsonl")
    grid = {
        "experiment": "tiny_grid",
        "data": {"source": str(data), "eval_size": 6, "split_seed": 0},
        "model": str(model_dir),
        "samplers": ["random", "longest"],
        "budgets": [4, "full"],
        "seeds": [0, 1],
        "train": {"epochs": 1, "batch_size": 4, "lora": False, "learning_rate": 1e-3,
                  "max_prompt_tokens": 32, "max_completion_tokens": 16},
        "eval": {"n_boot": 50},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path, grid


def test_accelerate_launch_runs_a_grid_with_one_writer(grid_file, tmp_path):
    """`accelerate launch … -m effalign run`: both processes train each cell together; one record each."""
    path, grid = grid_file
    small = {**grid, "samplers": ["random"], "budgets": [8, "full"], "seeds": [0]}
    path.write_text(yaml.safe_dump(small))
    store = tmp_path / "store"
    stdout = finish(start_two(["-m", "effalign", "run", "--grid", str(path), "--store", str(store), "--quiet"], tmp_path))
    assert stdout.count("2 records stored") == 1  # rank 0 reports, rank 1 stays quiet
    lines = (store / "tiny_grid.jsonl").read_text().splitlines()
    assert len(lines) == 2 and sorted(p.name for p in store.iterdir()) == ["tiny_grid.jsonl"]
    keys = {s.key for s in experiment.expand_grid(small)}
    for rec in map(json.loads, lines):
        m = rec["metrics"]
        assert rec["key"] in keys and m["processes"] == 2
        # each pair once per epoch; accelerate fills a last partial global batch (4) by repeating pairs
        assert m["pairs_seen"] == math.ceil(m["n_train"] / 4) * 4
        assert m["first_loss"] == pytest.approx(math.log(2), abs=1e-4) and 0 <= m["pref_accuracy"] <= 1


def test_shard_assignment_is_a_partition():
    specs = [RunSpec("e", {"source": "x"}, "m", "random", b, s) for b in (1, 2, 3, None) for s in range(5)]
    for count in (1, 2, 3, 7):
        shards = [experiment.shard_specs(specs, i, count) for i in range(count)]
        keys = [s.key for shard in shards for s in shard]
        assert sorted(keys) == sorted(s.key for s in specs)  # every cell in exactly one shard
        assert shards == [experiment.shard_specs(list(reversed(specs)), i, count)[::-1] for i in range(count)]
    assert experiment.parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            experiment.parse_shard(bad)


def test_writer_files_merge_on_reading(tmp_path):
    from effalign.runs import make_record

    spec = RunSpec("exp", {"source": "x"}, "m", "random", 4, 0)
    ResultStore(tmp_path).append(make_record(spec, {"acc": 1.0}, "t0", "t1", 1.0))
    ResultStore(tmp_path, writer="shard-1-of-2").append(make_record(spec.replace(seed=1), {"acc": 2.0}, "t0", "t1", 1.0))
    ResultStore(tmp_path, writer="host-b").append(make_record(spec, {"acc": 9.0}, "t0", "t1", 1.0))  # a duplicate
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.jsonl", "exp@host-b.jsonl", "exp@shard-1-of-2.jsonl"]
    store = ResultStore(tmp_path)
    assert store.experiments() == ["exp"]
    # the main file first, then writers' files by name; the first record of a key wins
    assert [(r["spec"]["seed"], r["metrics"]["acc"]) for r in store.records("exp")] == [(0, 1.0), (1, 2.0)]
    assert store.get(spec.key)["metrics"]["acc"] == 1.0
    with pytest.raises(ValueError, match="writer"):
        ResultStore(tmp_path, writer="../x")


def test_two_shards_run_concurrently_each_cell_once(grid_file, tmp_path):
    """Two runners (as on two machines) on one grid: every cell trained exactly once, each shard
    writing its own file, and reading the store merges them."""
    path, grid = grid_file
    store = tmp_path / "store"
    env = child_env(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "effalign", "run", "--grid", str(path), "--store", str(store),
                               "--shard", f"{i}/2", "--quiet"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out + err[-4000:]
    keys = {s.key for s in experiment.expand_grid(grid)}
    assert len(keys) == 6  # 2 samplers x 1 budget x 2 seeds + the full pool per seed
    written = []
    for i in range(2):
        file = store / f"tiny_grid@shard-{i}-of-2.jsonl"
        lines = [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []
        assert all(experiment.shard_of(r["key"], 2) == i for r in lines)
        written += [r["key"] for r in lines]
    assert sorted(written) == sorted(keys)  # each cell once, over both files
    assert not (store / "tiny_grid.jsonl").exists()
    assert {r["key"] for r in ResultStore(store).records("tiny_grid")} == keys


# --------------------------------------------------------------------------- on a GPU (skipped on CPU machines)


@cuda
def test_cuda_training_evaluation_and_generation(tiny):
    """The CUDA branch: chosen automatically, bf16 autocast training (full and LoRA) through the fast
    path, peak memory from torch.cuda, evaluation and generation on the GPU."""
    from effalign.evaluate import generate, preference_accuracy
    from effalign.models import tiny_policy
    from effalign.train import DPOTrainConfig, train_dpo

    sys.path.insert(0, str(ROOT / "tests"))
    from distributed_worker import make_pairs

    pairs = make_pairs()
    for lora in (False, True):
        model, tok = tiny_policy(seed=0)
        model.to("cuda")
        config = DPOTrainConfig(lora=lora, epochs=2, batch_size=4, learning_rate=1e-2, warmup_ratio=0.0,
                                max_prompt_tokens=32, max_completion_tokens=16)
        ref = logps.reference_logps(pairs, (model, tok), config=config.tokenize, cache=False, progress=False)
        result = train_dpo((model, tok), pairs, config, ref=ref, progress=False)
        m = result.metrics
        assert m["device"] == "cuda" and next(result.model.parameters()).is_cuda
        assert m["first_loss"] == pytest.approx(math.log(2), abs=1e-3) and m["last_loss"] < m["first_loss"]
        total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
        assert 0 < m["peak_memory_mb"] < total_mb and m["pairs_seen"] == 16 and m["processes"] == 1
        pref = preference_accuracy(result.model, tok, pairs, ref, config=config.tokenize, n_boot=50, progress=False)
        assert pref.accuracy > 0.5
        answers = generate(result.model, tok, [p.prompt for p in pairs[:4]], max_new_tokens=8, progress=False)
        assert len(answers) == 4


@cuda
def test_fsdp_config_trains_on_one_gpu(model_dir, tmp_path):
    """configs/accelerate/fsdp.yaml with one process: the fast path inside FSDP2's hooks."""
    out = tmp_path / "out"
    out.mkdir()
    cmd = [str(ACCELERATE), "launch", "--config_file", str(FSDP), "--num_processes", "1", "--main_process_port",
           str(free_port()), str(ROOT / "tests" / "distributed_worker.py"), str(model_dir), str(out), "full_fast"]
    env = {**child_env(tmp_path), "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    run = json.loads((out / "rank0.json").read_text())["full_fast"]
    assert run["metrics"]["device"] == "cuda" and run["metrics"]["pairs_seen"] == 16
    assert run["losses"][0] == pytest.approx(math.log(2), abs=5e-2)  # FSDP computes in bf16, the reference did not
    assert run["losses"][-1] < run["losses"][0]


def test_cli_shard_dry_run_and_bad_shard(grid_file, tmp_path, capsys):
    from effalign.cli import main

    path, grid = grid_file
    listed = []
    for i in range(2):
        assert main(["run", "--dry-run", "--grid", str(path), "--store", str(tmp_path / "s"), "--shard", f"{i}/2"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert f"shard {i}/2:" in lines[1] and f"@shard-{i}-of-2.jsonl" in lines[2]
        listed += [line.split()[0] for line in lines[3:-1]]
        assert lines[-1].endswith("to run")
    assert sorted(listed) == sorted(s.key for s in experiment.expand_grid(grid))
    assert main(["run", "--dry-run", "--grid", str(path), "--shard", "2/2"]) == 2
    assert "0 <= i < N" in capsys.readouterr().err
