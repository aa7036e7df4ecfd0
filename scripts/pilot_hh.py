"""The HH pilot of issue 13: choose learning rate, beta and LoRA targets by validation loss, then
train the whole pool with them and evaluate on the 1,000 held-out pairs.

Stage 1 (selection): short runs of ``SELECT_STEPS`` optimiser steps on random pool pairs (budget
``steps``), each scored by its DPO loss on a 200-pair validation split drawn from the pool; the
held-out pairs are not evaluated (``eval.pairs: false``), so the choice never sees the evaluation
set. The runs are chosen one after another from the stored results (learning rate and targets
first, then a higher rate if the higher one won, then beta), so a restarted pilot resumes exactly.
Stage 2: the whole pool with the chosen settings, budget ``converge`` (early stopping on the same
validation split, capped at one epoch), evaluated on the held-out pairs.

Records go to ``<store>/pilot_hh.jsonl``. Usage: ``python scripts/pilot_hh.py --threads 1``.
"""

from __future__ import annotations

import argparse
import json

import torch

from effalign.experiment import Context, run_specs
from effalign.runs import ResultStore, RunSpec

MODEL = "smollm2-135m-instruct"
DATA = {"source": "hh-harmless", "eval_size": 1000, "split_seed": 0, "pool_size": 800, "val_size": 200,
        "pool_per_seed": True}
BASE_TRAIN = {"batch_size": 8, "lora": True, "lora_r": 16, "lora_alpha": 32, "max_prompt_tokens": 64,
              "max_completion_tokens": 48, "warmup_ratio": 0.1, "learning_rate": 5e-4, "beta": 0.1,
              "lora_targets": ["q_proj", "v_proj"]}
SELECT_STEPS = 24
FINAL = {"budget": "converge", "max_steps": 100, "val_every": 25, "patience": 2}


def spec(train: dict, eval_: dict) -> RunSpec:
    return RunSpec(experiment="pilot_hh", data=DATA, model=MODEL, sampler="full", budget=None, seed=0,
                   train={**BASE_TRAIN, **train}, eval=eval_)


def run(store: ResultStore, ctx: Context, train: dict, eval_: dict | None = None) -> dict:
    (record,) = run_specs([spec(train, eval_ or {})], store, ctx=ctx)
    m = record["metrics"]
    print(json.dumps({"train": {k: v for k, v in record["spec"]["train"].items() if k not in BASE_TRAIN or
                                v != BASE_TRAIN[k]},
                      **{k: m.get(k) for k in ("val_loss", "val_margin", "tail_loss", "steps", "wall_s",
                                               "pref_accuracy", "pref_margin", "pref_loss")}}), flush=True)
    return record


def select(store: ResultStore, ctx: Context) -> dict:
    short = {"budget": "steps", "max_steps": SELECT_STEPS}
    no_eval = {"pairs": False}
    candidates = {}

    def trial(**changes):
        rec = run(store, ctx, {**short, **changes}, no_eval)
        candidates[json.dumps(changes, sort_keys=True)] = (rec["metrics"]["val_loss"], changes)
        return rec["metrics"]["val_loss"]

    base = trial(learning_rate=5e-4)
    high = trial(learning_rate=2e-3)
    trial(learning_rate=2e-3, lora_targets=None)  # all linear layers
    best = min(candidates.values(), key=lambda c: c[0])[1]
    if high < base:  # the higher rate won: try a higher one still, on the better targets
        trial(**{**best, "learning_rate": 5e-3})
        best = min(candidates.values(), key=lambda c: c[0])[1]
    trial(**{**best, "beta": 0.3})
    return min(candidates.values(), key=lambda c: c[0])[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", default="results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store, ctx = ResultStore(args.store), Context()
    chosen = select(store, ctx)
    print(f"chosen by validation loss: {chosen}", flush=True)
    run(store, ctx, {**chosen, **FINAL})


if __name__ == "__main__":
    main()
