"""Compute accounting, the paper profile's design, and the GPU benchmark's CPU modes."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from effalign import compute
from effalign.book import load_profile
from effalign.design import design_grids, seed_list

ROOT = Path(__file__).resolve().parents[1]


def test_model_flops_match_torch_flop_counter(tiny):
    """The matmul part of the FLOP formula equals what torch counts for the fast log-prob pass
    (one pair of equal lengths, so no padding); attention is added by the formula on top."""
    from torch.utils.flop_counter import FlopCounterMode

    from effalign.logps import TokenizedPair, completion_logps, pair_batch

    model, tok = tiny
    shape = compute.ModelShape.from_model(model)
    cfg = model.config
    per_layer = 2 * cfg.hidden_size ** 2 + 2 * cfg.hidden_size * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) \
        + 3 * cfg.hidden_size * cfg.intermediate_size
    assert shape.n_linear == cfg.num_hidden_layers * per_layer
    pair = TokenizedPair(list(range(5, 25)), list(range(30, 40)), list(range(40, 50)))
    with FlopCounterMode(display=False) as counter:
        completion_logps(model, pair_batch([pair], tok.pad_token_id), autocast=False)
    attention = 2 * (2.0 * shape.layers * shape.d_attn * 30 * 31)
    assert counter.get_total_flops() == 2 * compute.forward_flops(shape, 30, 10) - attention
    full = compute.training_flops(shape, [pair], lora=False)
    assert full == 3 * 2 * compute.forward_flops(shape, 30, 10)
    assert compute.training_flops(shape, [pair], lora=True, epochs=2) == pytest.approx(full * 2 / 3 * 2)
    assert compute.mfu(1e12, 2.0, 1e12) == 0.5 and compute.mfu(1.0, 1.0, None) is None


def test_device_peaks_by_name():
    assert compute.device_peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4e12)
    assert compute.device_peak_flops("NVIDIA H100 PCIe") == pytest.approx(756e12)
    assert compute.device_peak_flops("NVIDIA H200") == pytest.approx(989.4e12)
    assert compute.device_peak_flops("NVIDIA A100-SXM4-80GB") == pytest.approx(312e12)
    assert compute.device_peak_flops("Some Future Accelerator") is None


def test_pairs_seen_by_budget_mode():
    assert compute.pairs_seen({"budget": "epochs", "epochs": 2}, 130) == 260
    assert compute.pairs_seen({"epochs": 1.5}, 11) == 17
    assert compute.pairs_seen({"budget": "steps", "max_steps": 82, "batch_size": 32}, 13) == 82 * 32
    with pytest.raises(ValueError, match="max_steps"):
        compute.pairs_seen({"budget": "steps"}, 10)
    with pytest.raises(ValueError, match="unknown budget"):
        compute.pairs_seen({"budget": "forever"}, 10)


def test_converge_runs_pay_for_their_validation_losses():
    """An early-stopping run evaluates the validation split every val_every steps up to its cap; the
    other budgets once at the end, and nothing without a validation split."""
    size = compute.TrackSize(pool_pairs=1000, eval_pairs=500, tokens_per_pair=100.0)
    rate = compute.Throughput(device="test", train_tokens_per_s=1e4, forward_tokens_per_s=1e5,
                              generate_tokens_per_s=1e3, setup_s=0.0)
    converge = {"budget": "converge", "max_steps": 69, "val_every": 7, "batch_size": 32}
    steps = {"budget": "steps", "max_steps": 69, "batch_size": 32}
    data = {"val_size": 200}
    assert compute.validations(converge) == 10 and compute.validations(steps) == 1
    with_val = compute.cell_seconds(converge, {}, data, 100, size, rate)
    assert with_val["validate"] == pytest.approx(10 * 200 * 100 / 1e5)
    assert with_val["train"] == compute.cell_seconds(steps, {}, data, 100, size, rate)["train"]  # the same cap
    assert compute.cell_seconds(steps, {}, {}, 100, size, rate)["validate"] == 0
    assert compute.val_pairs({"val_size": 0.25, "pool_size": 600}, 1000) == 150  # a share of the pool
    assert compute.val_pairs({"val_size": 0.1}, 1000) == 100


def test_paper_profile_design():
    """One GPU, full fine-tuning, arms as train overrides, pools drawn per seed, ≥ 8 primary seeds,
    each track's equal-steps arm giving every subset the whole pool's steps, and the claims' grids in the
    converge arm (that cap with early stopping: equal steps over-fits small subsets, the CPU design found)."""
    from effalign.experiment import load_split

    prof = load_profile("paper")
    common = prof["common"]
    grids = design_grids(prof)
    assert {g["track"] for g in grids.values()} == set(common["tracks"])
    assert set(grids) >= {f"{t}_{n}" for t in common["tracks"] for n in ("primary", "samplers", "scaling_steps",
                                                                           "scaling_epochs", "full_pool")}
    primary = common["design"]["primary"]
    assert len(seed_list(primary["seeds"])) >= 8
    for name, g in grids.items():
        arm = common["tracks"][g["track"]]["arms"][g["arm"]]
        assert g["train"]["lora"] is False and g["data"]["pool_per_seed"] is True
        assert {k: g["train"][k] for k in arm} == arm and g["train"]["budget"] in ("epochs", "steps", "converge")
        assert not g["data"].get("pool_size")  # the whole pool
    p = grids["hh_primary"]
    assert p["samplers"] == [primary["baseline"], primary["sampler"]] and p["fractions"] == [primary["fraction"]]
    for t in common["tracks"]:
        assert {grids[f"{t}_{n}"]["arm"] for n in ("primary", "full_pool", "samplers")} == {"converge"}
        arms = common["tracks"][t]["arms"]
        assert arms["converge"]["max_steps"] == arms["equal_steps"]["max_steps"] and common["tracks"][t]["data"]["val_size"]
    for track, spec in common["tracks"].items():
        data = {k: v for k, v in spec["data"].items() if k != "pool_per_seed"}
        try:
            pool, _ = load_split(data)
        except FileNotFoundError:
            continue  # the shared HH file is not on this machine
        steps, epochs = spec["arms"]["equal_steps"], spec["arms"]["fixed_epochs"]["epochs"]
        assert steps["max_steps"] == math.ceil(epochs * len(pool) / common["train"]["batch_size"]), track
    with pytest.raises(ValueError, match="does not define"):
        design_grids({"common": {**common, "design": {**common["design"], "grids": {"x": {
            "samplers": ["random"], "fractions": [0.1], "arm": "forever", "seeds": 1}}}}})


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    return bench_gpu


def test_gpu_benchmark_refuses_a_machine_without_cuda(bench, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_gpu_benchmark_smoke_and_the_estimate_from_it(bench, tmp_path, tiny):
    """The benchmark end to end on the tiny model (CPU), then the paper profile's GPU time from its
    rates: the parts add up and scale with the measured rates."""
    out = tmp_path / "gpu.json"
    assert bench.main(["--smoke", "--settings", "full,lora_qv", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["smoke"] and [r["setting"] for r in result["rows"]] == ["full", "lora_qv"]
    for r in result["rows"]:
        assert r["pairs"] == 16 and r["tokens"] > 0 and r["tokens_per_s"] > 0 and r["model_tflops"] > 0
        assert r["first_loss"] == pytest.approx(math.log(2), abs=1e-3) and r["peak_memory_mb"] > 0
    t = result["throughput"]
    assert t["train_tokens_per_s"] == result["rows"][0]["tokens_per_s"] and t["forward_tokens_per_s"] > 0

    prof = load_profile("paper")
    if not (ROOT / "data" / "testbed").exists():
        pytest.skip("testbed data missing")
    prof["common"]["tracks"] = {"testbed": prof["common"]["tracks"]["testbed"]}  # no shared HH needed
    _, tok = tiny
    est = compute.estimate_profile(prof, result, tokenizer=tok)
    grids = design_grids(prof)
    specs = {s.key for g in grids.values() for s in compute.grid_cells(g, est["tracks"]["testbed"]["pool_pairs"])}
    assert est["cells"] == len(specs) and est["pools"] == len({s for g in grids.values() for s in g["seeds"]})
    assert est["seconds"] == pytest.approx(sum(est["by_part_s"].values()), abs=1)
    assert est["seconds"] == pytest.approx(sum(est["by_grid_s"].values()) + est["by_part_s"]["reference"], abs=1)
    sizes = {name: compute.TrackSize(**size) for name, size in est["tracks"].items()}
    rate = compute.Throughput.from_benchmark({"throughput": {**t, "train_tokens_per_s": 2 * t["train_tokens_per_s"]}})
    faster = compute.estimate_design_seconds(grids, sizes, rate)
    assert faster["by_part_s"]["train"] == pytest.approx(est["by_part_s"]["train"] / 2, rel=1e-3)
    assert faster["by_part_s"]["evaluate"] == est["by_part_s"]["evaluate"]
