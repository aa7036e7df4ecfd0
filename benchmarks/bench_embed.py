"""Embeddings: MiniLM texts/s in float32 (default) and bf16 autocast (opt-in ``all-minilm-l6-v2@bf16``),
1 thread, on HH texts (prompts and long answers); cosine similarity of the bf16 vectors to the float32
ones; ISA's 10% selection on the v2 HH pool of seed 0 with each precision (overlap of the two subsets).

The pool vectors come from the shared embedding cache when present (ISA runs put the float32 ones there;
bf16 ones are cached under their own keys). Usage: python benchmarks/bench_embed.py
Writes benchmarks/results/embed.json (about 2 minutes on a loaded machine).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _perf import RESULTS, machine, roofline, set_threads  # noqa: E402

from effalign.embed import MINILM_ALIAS, embed_texts, load_embedder, pair_embeddings  # noqa: E402
from effalign.experiment import load_splits  # noqa: E402
from effalign.samplers import get_sampler  # noqa: E402

HH_V2 = {"source": "hh-harmless", "eval_size": 1000, "split_seed": 0, "pool_size": 600, "val_size": 200,
         "pool_per_seed": True}


def main() -> None:
    set_threads(1)
    out = {"machine_before": machine(1), "roofline_1t": roofline(1)}
    pool = load_splits(HH_V2, seed=0).pool
    texts = [t for p in list(pool)[:80] for t in (p.prompt_text, p.chosen_text, p.rejected_text)]
    load_embedder(MINILM_ALIAS)
    speed = {}
    if True:
        for name in (MINILM_ALIAS, MINILM_ALIAS + "@bf16"):
            embed_texts(texts[:16], model=name, cache=False, progress=False)  # warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            vecs = embed_texts(texts, model=name, cache=False, progress=False)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            speed[name] = {"texts_per_s": round(len(texts) / sec, 2), "texts_per_cpu_s": round(len(texts) / cpu, 2),
                           "seconds": round(sec, 2), "cpu_seconds": round(cpu, 2), "vecs": vecs}
        cos = np.sum(speed[MINILM_ALIAS]["vecs"] * speed[MINILM_ALIAS + "@bf16"]["vecs"], axis=1)
        budget = len(pool) // 10
        chosen = {}
        for name in (MINILM_ALIAS, MINILM_ALIAS + "@bf16"):  # bf16 vectors are cached under their own keys
            t0 = time.process_time()
            emb = pair_embeddings(list(pool), model=name, progress=False)
            emb_s = time.process_time() - t0  # CPU seconds (0 when the cache held them)
            idx = get_sampler("isa", embedder=name).select(pool, budget, 0)
            chosen[name] = set(np.asarray(idx).tolist())
            speed[name]["pool_embed_s"] = round(emb_s, 2)
            speed[name]["pool_vectors"] = emb
        pool_cos = np.concatenate([np.sum(speed[MINILM_ALIAS]["pool_vectors"][k] *
                                          speed[MINILM_ALIAS + "@bf16"]["pool_vectors"][k], axis=1)
                                   for k in ("prompt", "chosen", "rejected")])
    a, b = chosen[MINILM_ALIAS], chosen[MINILM_ALIAS + "@bf16"]
    out.update({
        "texts": len(texts), "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
        "fp32_texts_per_s": speed[MINILM_ALIAS]["texts_per_s"],
        "bf16_texts_per_s": speed[MINILM_ALIAS + "@bf16"]["texts_per_s"],
        "fp32_texts_per_cpu_s": speed[MINILM_ALIAS]["texts_per_cpu_s"],
        "bf16_texts_per_cpu_s": speed[MINILM_ALIAS + "@bf16"]["texts_per_cpu_s"],
        "speedup_wall": round(speed[MINILM_ALIAS + "@bf16"]["texts_per_s"] / speed[MINILM_ALIAS]["texts_per_s"], 2),
        "speedup": round(speed[MINILM_ALIAS + "@bf16"]["texts_per_cpu_s"] / speed[MINILM_ALIAS]["texts_per_cpu_s"], 2),
        "cosine_min": round(float(cos.min()), 5), "cosine_mean": round(float(cos.mean()), 6),
        "pool_cosine_min": round(float(pool_cos.min()), 5), "pool_cosine_mean": round(float(pool_cos.mean()), 6),
        "pool_pairs": len(pool), "isa_budget": budget, "isa_overlap": len(a & b), "isa_identical": a == b,
        "pool_embed_cpu_s": {k: v["pool_embed_s"] for k, v in speed.items()},
        "machine_after": machine(1),
    })
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "embed.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "roofline_1t"}, indent=1))


if __name__ == "__main__":
    main()
