"""Worker of tests/test_distributed.py: DPO on a tiny model in each process of a launch (or alone).

``python tests/distributed_worker.py MODEL_DIR OUT_DIR [SETTING,…]`` trains three settings on the same eight pairs
and writes ``OUT_DIR/rank<RANK>.json`` with each setting's loss curve, metrics and per-tensor sums
of the trained weights. Run alone it is the single-process reference; under ``accelerate launch`` or
``torchrun`` every process writes its own file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from effalign import logps
from effalign.data import PreferencePair
from effalign.train import DPOTrainConfig, train_dpo

SHARED = dict(epochs=2, batch_size=4, learning_rate=1e-2, warmup_ratio=0.0, max_prompt_tokens=32,
              max_completion_tokens=16, group_by_length=True)
# name: (config, float32 numerics?) — float32 makes one process and two agree to rounding; the
# second setting keeps the default bf16 autocast path
SETTINGS: dict[str, tuple[DPOTrainConfig, bool]] = {
    "full_fast": (DPOTrainConfig(lora=False, **SHARED), True),
    "lora_fast_bf16": (DPOTrainConfig(lora=True, lora_targets=("q_proj", "v_proj"), **SHARED), False),
    "full_trl_loss": (DPOTrainConfig(lora=False, fast_logps=False, **SHARED), True),
}


def make_pairs(n: int = 8) -> list[PreferencePair]:
    topics = ["rivers", "bread", "chess", "owls", "tea", "maps", "glass", "bees"]
    return [
        PreferencePair(
            [{"role": "user", "content": f"Tell me about {topics[i % 8]} ({i})."}],
            [{"role": "assistant", "content": f"Here is a clear, kind answer about {topics[i % 8]}." + " More." * (i % 5)}],
            [{"role": "assistant", "content": f"No. Go away {i}."}],
        )
        for i in range(n)
    ]


def train_settings(model_dir: str, names: list[str] | None = None) -> dict[str, Any]:
    """Train every setting (or those in ``names``) from the same initial weights; what each produced."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pairs = make_pairs()
    out: dict[str, Any] = {}
    default_autocast = logps.autocast_default
    try:
        for name, (config, float32) in SETTINGS.items():
            if names and name not in names:
                continue
            logps.autocast_default = (lambda model: False) if float32 else default_autocast
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            ref = logps.reference_logps(pairs, (model, tokenizer), config=config.tokenize, cache=False, progress=False)
            result = train_dpo((model, tokenizer), pairs, config, ref=ref, progress=False)
            out[name] = {
                "losses": [c["loss"] for c in result.loss_curve],
                "margins": [c["margin"] for c in result.loss_curve],
                "metrics": {k: v for k, v in result.metrics.items() if k != "truncation"},
                "weights": {k: float(v.double().sum()) for k, v in result.model.state_dict().items()},
            }
    finally:
        logps.autocast_default = default_autocast
    return out


if __name__ == "__main__":
    model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
    result = train_settings(model_dir, sys.argv[3].split(",") if len(sys.argv) > 3 else None)
    (out_dir / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(result))
