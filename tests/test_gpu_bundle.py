"""scripts/gpu_bundle.py: what the GPU machine lacks goes over in parts, each checked, and comes back
together whatever order the parts arrive in; a damaged part or a part of another bundle is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_bundle  # noqa: E402


@pytest.fixture
def bundle(tmp_path):
    """A staged bundle of a fake wheel, a fake model package and a shared file, cut into 3 parts."""
    src = tmp_path / "src"
    wheel = src / "demo-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"wheel" * 300)
    pkg = src / "demo_model"
    (pkg / "model").mkdir(parents=True)
    (pkg / "model" / "weights.bin").write_bytes(bytes(range(256)) * 20)
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "x.pyc").write_bytes(b"skip me")
    shared = tmp_path / "shared"
    (shared / "data").mkdir(parents=True)
    (shared / "data" / "pairs.jsonl.gz").write_bytes(b"pairs" * 100)
    staging = tmp_path / "staging"
    gpu_bundle.stage(staging, [wheel], [pkg], shared, shared_files=["data/pairs.jsonl.gz"])
    out = tmp_path / "carry"
    manifest = gpu_bundle.make_parts(staging, out, part_bytes=4096)
    return out, manifest


def test_parts_arrive_in_any_order_and_unpack_to_the_staged_files(bundle, tmp_path):
    out, manifest = bundle
    names = [p["name"] for p in manifest["parts"]]
    assert len(names) >= 3 and all(p["bytes"] <= 4096 for p in manifest["parts"])
    assert json.loads((out / "bundle.json").read_text()) == manifest
    home = tmp_path / "home"
    left = None
    for name in reversed(names):  # the last part first: order does not matter
        left = gpu_bundle.add_part(out / name, home)
    assert left == []
    gpu_bundle.unpack(home)
    assert (home / "wheels" / "demo-1.0-py3-none-any.whl").read_bytes() == b"wheel" * 300
    assert (home / "packages" / "demo_model" / "model" / "weights.bin").read_bytes() == bytes(range(256)) * 20
    assert (home / "shared" / "data" / "pairs.jsonl.gz").read_bytes() == b"pairs" * 100
    assert not (home / "packages" / "demo_model" / "__pycache__").exists()  # no byte code travels


def test_a_damaged_or_foreign_part_is_refused_and_the_missing_parts_are_named(bundle, tmp_path):
    out, manifest = bundle
    first, second = (out / p["name"] for p in manifest["parts"][:2])
    home = tmp_path / "home"
    left = gpu_bundle.add_part(first, home)
    assert first.name not in left and second.name in left
    data = bytearray(second.read_bytes())
    data[10] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged in transit"):
        gpu_bundle.add_part(second, home)
    stray = out / "bundle.part99"
    stray.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a part of this bundle"):
        gpu_bundle.add_part(stray, home)
    assert gpu_bundle.add_part(first, home) == left  # the same part again changes nothing
