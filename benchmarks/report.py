"""Write the README's generated sections from stored measurements (never typed by hand).

- ``<!-- BEGIN perf -->`` … ``<!-- END perf -->``: tables from ``benchmarks/results/*.json``;
- ``<!-- BEGIN runs -->`` … ``<!-- END runs -->``: the reference runs from ``results/*.jsonl``;
- ``<!-- BEGIN gpu -->`` … ``<!-- END gpu -->``: the GPU benchmark and the paper profile's GPU time;
- ``<!-- BEGIN headline -->`` … ``<!-- END headline -->``: the default profile's grids (the
  findings chapter's claims table and verdicts, from the same functions: effalign.notebook.profile_runs,
  effalign.notebook.profile_findings, effalign.findings.headline_frame / means_frame / claim_statements /
  closing_statements, effalign.notebook.missing_statements);
- in ``book/methods.md``, ``<!-- BEGIN rules -->`` … ``<!-- END rules -->``: the verdict rules
  (effalign.verdicts.rules_markdown) with the default profile's values, and ``<!-- BEGIN design -->`` …
  ``<!-- END design -->``: the design's grids and arms, the pilot rule, the variance components and the
  MDE, computed from the stored records (effalign.design).

Usage: python benchmarks/report.py [--check]   (--check: exit 1 if a generated section is out of date)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _device(d: dict) -> str:
    dev = d.get("device", {})
    return dev.get("gpu") or f"{dev.get('cpu', 'CPU')}, {dev.get('torch_threads', '?')} threads"


def perf_section() -> str:
    parts = []
    f = _load("foundation")
    if f:
        parts.append(
            "**Foundation** (`benchmarks/bench_foundation.py`; " + _device(f) + ")\n\n"
            "| measurement | value |\n| --- | --- |\n"
            f"| HH harmless load + parse ({f['hh_rows']} rows) | {f['hh_load_parse_s']} s ({f['hh_rows_per_s']} rows/s) |\n"
            f"| MiniLM embedding, {f['embed_texts']} texts of {f['embed_mean_chars']} chars on average | {f['embed_texts_per_s']} texts/s |\n"
            f"| embedding cache hits | {f['embed_cached_texts_per_s']} texts/s |\n"
            f"| SmolLM2 GGUF → safetensors materialisation | {f['materialise_s']} s |\n"
        )
    s = _load("samplers")
    if s:
        lines = ["| sampler | budget | seconds | goal |", "| --- | --- | --- | --- |"]
        for r in s["results"]:
            goal = r.get("goal_s")
            met = "" if goal is None else f"≤ {goal:g} s: {'met' if r['seconds'] <= goal else 'missed'}"
            lines.append(f"| {r['sampler']} | {r['budget']} | {r['seconds']:.2f} | {met} |")
        machine = s.get("machine", {})
        parts.append(
            f"**Samplers** (`benchmarks/bench_samplers.py`: {s['n_pairs']} synthetic pairs of {s['embedding_dim']}-d "
            f"embeddings, {s['threads']} threads; isa, kcenter and cluster build their features (standardise + PCA to {s['feature_dim']}) inside `select`, which took "
            f"{s['features_seconds']} s on its own; peak RSS {s['peak_rss_mib']:.0f} MiB; "
            f"1-minute load average {machine.get('load_avg_1m', float('nan')):.1f} during the run)\n\n"
            + "\n".join(lines) + "\n")
    t = _load("train")
    if t:
        lines = ["| setting | batch | effalign pairs/s | effalign tokens/s | plain loop pairs/s | ratio | process peak RSS so far (MB) |"
                 + (" TRL stock pairs/s |" if any("trl_stock" in r for r in t["rows"]) else ""),
                 "| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if any("trl_stock" in r for r in t["rows"]) else "")]
        for r in t["rows"]:
            line = (f"| {r['setting']} | {r['batch_size']} | {r['effalign']['pairs_per_s']:.2f} | "
                    f"{r['effalign']['tokens_per_s']:.0f} | {r['plain']['pairs_per_s']:.2f} | {r['ratio']:.2f} | "
                    f"{r['effalign']['peak_memory_mb']:.0f} |")
            if "trl_stock" in r:
                line += f" {r['trl_stock']['pairs_per_s']:.2f} |"
            lines.append(line)
        parts.append(f"**DPO training throughput** (`benchmarks/bench_train.py`, SmolLM2-135M-Instruct, "
                     f"{t['rows'][0]['pairs']} HH pairs, max_length {t['max_length']}, {t['note']}; "
                     + _device(t) + ")\n\n" + "\n".join(lines) + "\n")
    parts += [x for x in (roofline_part(), model_part(), attention_part(), embed_part(), cost_part()) if x]
    return "\n".join(parts) or "_No benchmark results stored yet: run `make bench`._\n"


def _load_note(d: dict) -> str:
    a, b = d.get("machine_before", {}), d.get("machine_after", {})
    return (f"1-minute load average {a.get('load_avg_1m', float('nan')):.1f} before, {b.get('load_avg_1m', float('nan')):.1f} "
            f"after, on {a.get('cpu_count', '?')} cores")


def roofline_part() -> str | None:
    r = _load("roofline")
    if not r:
        return None
    lines = ["| threads | rows (batch × positions) | bf16 best shape GFLOP/s | bf16 one layer GFLOP/s | fp32 best shape | "
             "fp32 one layer | bf16 / fp32 (layer) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for x in r["runs"]:
        lines.append(f"| {x['threads']} | {x['rows']:,} | {x['bf16_peak_gflops']:,.0f} | {x['bf16_layer_gflops']:,.0f} | "
                     f"{x['fp32_peak_gflops']:,.0f} | {x['fp32_layer_gflops']:,.0f} | {x['bf16_over_fp32']:.1f} |")
    return ("**Roofline** (`benchmarks/bench_roofline.py`: matmuls at SmolLM2-135M's shapes, hidden 576, MLP 1,536, "
            f"key/value 192, LM head 49,152; best of three rounds; {_load_note(r)}; read bandwidth of a 256 MiB sum "
            f"{r['bandwidth_gbs_1t']} GB/s on 1 thread, {r['bandwidth_gbs_2t']} GB/s on 2). \"One layer\" is the "
            "FLOP-weighted rate of a decoder layer's matmuls, the ceiling of a whole forward or backward pass; every share "
            "below divides by the 1-thread one-layer bf16 rate measured again inside that benchmark's own run. "
            "1-thread rows are per CPU second (what one core does whatever the neighbours do); 2-thread rows per wall "
            "second, and with the other engineers' processes on both cores they measure contention, not the hardware.\n\n"
            + "\n".join(lines) + "\n")


def model_part() -> str | None:
    m = _load("model")
    if not m:
        return None
    peak = m["roofline_1t"]["bf16_layer_gflops"]
    lines = ["| work | throughput per CPU second | model GFLOP/s | share of the bf16 roofline | target | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in m["training"]:
        name = {"lora_qv": "DPO training, LoRA q/v", "full": "DPO training, full fine-tuning"}[r["setting"]]
        lines.append(f"| {name} ({r['pairs']} HH pairs, 64 + 48 tokens, batch 8) | {r['effalign_tokens_per_s']:,.0f} tokens/s "
                     f"({r['effalign_pairs_per_s']:.2f} pairs/s; {r['effalign_wall_pairs_per_s']:.2f} per wall second; plain loop ratio "
                     f"{r['plain_ratio']:.2f}) | {r['model_gflops']:,.0f} | "
                     f"{r['roofline_share']:.0%} (plain loop {r['plain_roofline_share']:.0%}) | ≥ 50%, plain ratio ≥ 0.9 | "
                     f"{'yes' if r['roofline_share'] >= 0.5 and r['plain_ratio'] >= 0.9 else 'no'} |")
    lp = m["logps"]
    lines.append(f"| reference log-probs, {lp['pairs']} long pairs (192 + 64 tokens, length-sorted batches of 8, bf16) | "
                 f"{lp['pairs_per_s']:.2f} pairs/s, {lp['tokens_per_s']:,.0f} tokens/s | {lp['body_gflops']:,.0f} | "
                 f"{lp['roofline_share']:.0%} | — | — |")
    g = m["generation"]
    for mode in ("greedy", "sampled"):
        x = g[mode]
        lines.append(f"| {mode} decoding, {x['batch']} testbed prompts × up to 32 new tokens | {x['tokens_per_s']:,.1f} tokens/s | — | "
                     f"{x['bound_share']:.0%} of the bandwidth bound ({x['bandwidth_bound_tokens_per_s']:,.0f} tokens/s: "
                     f"{g['bandwidth_gbs']} GB/s ÷ {g['weight_mb']:,.0f} MB of weights × batch) | — | — |")
    prof = ["| operator (self time) | seconds | share |", "| --- | --- | --- |"]
    for e in m["profile_lora_top"][:8]:
        prof.append(f"| `{e['op']}` | {e['self_s']:.2f} | {e['share']:.1%} |")
    return (f"**Model throughput, 1 thread** (`benchmarks/bench_model.py`; bf16 roofline of this run: {peak:,.0f} GFLOP/s one "
            f"layer; {_load_note(m)}). Rates are per CPU second of the benchmark process (the roofline's too): with "
            "several times more runnable processes than cores, wall-clock rates measure the neighbours. Model FLOPs: 4 per weight per token for LoRA (forward + activation gradients), 6 "
            "for full fine-tuning, the LM head on completion positions only; log-probs forward only (2).\n\n"
            + "\n".join(lines) + "\n\n**Where LoRA training time goes** (torch.profiler over 2 steps of 8 pairs, "
            "same benchmark run, the whole train_dpo call with its policy load and LoRA merge; the profiler clocks wall time, "
            "so on the loaded machine the shares count, not the seconds; the eight largest operators by "
            "self time):\n\n" + "\n".join(prof) + "\n")


def attention_part() -> str | None:
    a = _load("attention")
    if not a:
        return None
    return (f"**Opt-in training attention** (`benchmarks/bench_attention.py`, LoRA q/v, {a['pairs']} HH pairs, 64 + 48 "
            f"tokens, 1 thread; {_load_note(a)}): `train: {{train_attention: eager}}` trains in {a['eager_cpu_s']:.1f} CPU s "
            f"against {a['sdpa_cpu_s']:.1f} CPU s with the default `sdpa` ({a['speedup']:.2f}×), because PyTorch's CPU "
            "flash-attention backward is slow in bf16 (the profile above). It rounds differently, and the training "
            "reference log-probs still come from `sdpa`, which adds a kernel mismatch to the step-one noise (LoRA dropout, "
            f"bf16 batch rounding): the first-step loss is {a['eager_losses'][0]:.4f} against {a['sdpa_losses'][0]:.4f} "
            "(log 2 = 0.6931 when policy and reference agree exactly), losses differ by up to "
            f"{a['max_abs_loss_diff']:.4f} per step, and the trained policies' held-out chosen − rejected log-prob "
            f"differences by {a['held_logp_margin_mean_abs_diff']:.2f} nats per pair on average over {a['held_out']} pairs "
            f"({0.1 * a['held_logp_margin_mean_abs_diff']:.3f} implicit-reward units at β = 0.1, the size of the HH effect "
            "of interest, although partly the divergence of two training trajectories). So it stays off by default; "
            "before a grid uses it, the training reference should be computed with the same kernel. Evaluation always "
            "runs `sdpa`, like its reference; the field is part of "
            "the run key, so a grid switches it on deliberately.\n")


def embed_part() -> str | None:
    e = _load("embed")
    if not e:
        return None
    if "fp32_texts_per_cpu_s" in e:
        rates = (f"float32 (default) {e['fp32_texts_per_cpu_s']:.1f} texts per CPU second ({e['fp32_texts_per_s']:.1f} per wall "
                 f"second), bf16 autocast (opt-in, `embedder: all-minilm-l6-v2@bf16`) {e['bf16_texts_per_cpu_s']:.1f} per CPU "
                 f"second ({e['bf16_texts_per_s']:.1f} per wall second)")
    else:  # results written before the CPU-second clock
        rates = (f"float32 (default) {e['fp32_texts_per_s']:.1f} texts per wall second, bf16 autocast (opt-in, "
                 f"`embedder: all-minilm-l6-v2@bf16`) {e['bf16_texts_per_s']:.1f}")
    return (f"**Embeddings** (`benchmarks/bench_embed.py`, MiniLM, 1 thread, {e['texts']} HH texts of {e['mean_chars']:,.0f} "
            f"characters on average; {_load_note(e)}): {rates}: {e['speedup']:.2f}× "
            f"(target ≥ 3×: {'met' if e['speedup'] >= 3 else 'not met'}). Cosine similarity to the float32 vectors: "
            f"min {e['cosine_min']:.4f}, mean {e['cosine_mean']:.5f} on those texts; min {e['pool_cosine_min']:.4f} over the "
            f"{e['pool_pairs']}-pair v2 HH pool of seed 0 (target ≥ 0.999: "
            f"{'met' if min(e['cosine_min'], e['pool_cosine_min']) >= 0.999 else 'not met'}). ISA's 10% selection "
            f"({e['isa_budget']} pairs) on that pool: {e['isa_overlap']} of {e['isa_budget']} pairs shared"
            f"{' (identical)' if e['isa_identical'] else ''}, so bf16 stays opt-in (the embedder name enters the run key "
            "and the cache key).\n")


def cost_part() -> str | None:
    path = RESULTS / "cost_run.jsonl"
    if not path.exists():
        return None
    from effalign.tables import cost_breakdown_table

    rec = json.loads(path.read_text().splitlines()[0])
    m = rec["metrics"]
    proj = rec.get("extra", {}).get("cost_projection") or {}
    table = cost_breakdown_table(rec)
    full, ran = proj.get("full_steps"), proj.get("run_steps") or m.get("steps")
    train_full = m["cost_training_s"] * full / ran if full else math.nan
    run_full = m["cost_run_s"] - m["cost_training_s"] + train_full
    lines = ["| part | seconds | share of the run | tokens | tokens/s | projected seconds at " + f"{full} steps | projected share |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in table.itertuples(index=False):
        sec_full = train_full if row.part == "training" else (run_full if row.part == "whole run" else row.seconds)
        tok = "—" if math.isnan(row.tokens) else f"{row.tokens:,.0f}"
        tps = "—" if math.isnan(row.tokens_per_s) else f"{row.tokens_per_s:,.0f}"
        lines.append(f"| {row.part} | {row.seconds:,.1f} | {row.share:.1%} | {tok} | {tps} | {sec_full:,.1f} | {sec_full / run_full:.1%} |")
    eval_share = (m["cost_evaluation_s"] + m["cost_generation_s"]) / run_full
    return (f"**Cost of one v2 run** (`benchmarks/bench_cost_run.py`: the v2 primary grid's random 10% cell, seed 0, "
            f"run `{rec['key']}` with max_steps {ran} instead of {full}, 1 thread, stored in `benchmarks/results/cost_run.jsonl`; "
            "record fields `cost_<part>_s` / `cost_<part>_tokens`, read by `effalign.tables.cost_breakdown_table`). "
            f"The projection scales the measured training seconds per step to the grid's {full} steps. Evaluation (held-out "
            f"pairs, plus generation where the track has it) takes {eval_share:.0%} of the projected run "
            f"(target ≤ 25%: {'met' if eval_share <= 0.25 else 'not met'}; {m['cost_evaluation_s'] / m['cost_run_s']:.0%} of the cut "
            f"{ran}-step run itself). The evaluation set's reference log-probs count under reference; a grid process computes "
            "them once and every later run reads them from memory (its reference share is then about zero). Seconds are "
            "wall seconds on the shared machine (several times more runnable processes than cores during the run), so the "
            "shares count more than the seconds. The testbed track adds generation (greedy "
            "answers to 400 prompts and KL samples), not measured in this run.\n\n" + "\n".join(lines) + "\n")


def runs_section() -> str:
    from effalign.runs import ResultStore

    store = ResultStore(ROOT / "results")
    recs = store.records("readme_hh_200") if (ROOT / "results" / "readme_hh_200.jsonl").exists() else []
    if not recs:
        return "_No reference run stored yet: `python -m effalign run --grid params/grids/hh_200_readme.yaml`._\n"
    lines = ["| run key | pairs | epochs | held-out pairs | preference accuracy (95% CI) | mean margin (95% CI) "
             "| training wall time | training pairs/s | device |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in recs:
        m, spec = r["metrics"], r["spec"]
        lo, hi = m["pref_accuracy_ci"]
        mlo, mhi = m["pref_margin_ci"]
        dev = r["provenance"]["device"]
        lines.append(
            f"| `{r['key']}` | {m['n_train']} | {spec['train'].get('epochs', 1)} | {m['pref_n']} | "
            f"{m['pref_accuracy']:.3f} ({lo:.3f}–{hi:.3f}) | {m['pref_margin']:.4f} ({mlo:.4f}–{mhi:.4f}) | "
            f"{m['wall_s']:.0f} s | {m['pairs_per_s']:.2f} | {dev.get('gpu') or dev.get('cpu')} |")
    return "\n".join(lines) + "\n"


def testbed_section() -> str:
    from effalign.runs import ResultStore

    path = ROOT / "results" / "readme_testbed_200.jsonl"
    recs = ResultStore(ROOT / "results").records("readme_testbed_200") if path.exists() else []
    if not recs:
        return "_No testbed reference run stored yet: `python -m effalign run --grid params/grids/testbed_200_readme.yaml`._\n"
    lines = ["| run key | pairs | held-out prompts | gold reward before (reference, greedy) | gold reward after | "
             "win rate vs reference | KL to reference (nats) | preference accuracy | training wall time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in recs:
        m = r["metrics"]

        def ci(name: str, fmt: str = "{:.3f}") -> str:
            lo, hi = m[name + "_ci"]
            return f"{fmt.format(m[name])} ({fmt.format(lo)}–{fmt.format(hi)})"

        lines.append(f"| `{r['key']}` | {m['n_train']} | {m['gen_n']} | {ci('gen_ref_reward')} | {ci('gen_reward')} | "
                     f"{ci('gen_win_rate')} | {ci('gen_kl', '{:.2f}')} | {ci('pref_accuracy')} | {m['wall_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def _markdown(frame) -> str:
    """A Markdown table of a frame already formatted for readers (effalign.tables.format_frame)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _plan(profile: str):
    from effalign.book import load_profile
    from effalign.design import analysis_plan

    prof = load_profile(profile, ROOT)
    return prof, analysis_plan(prof["common"])


def headline_section(profile: str = "default") -> str:
    from effalign import findings, grids, notebook, tables

    prof, _ = _plan(profile)
    runs = notebook.profile_runs(prof, ROOT / "results", root=ROOT)
    every = {r["key"]: r for tr in runs.values() for r in tr.records}
    if not every:
        return f"_No runs of the `{profile}` profile's design are stored yet: `make experiments`._\n"
    plan, result = notebook.profile_findings(prof, ROOT / "results", n_boot=200, root=ROOT, runs=runs)
    seconds = sum(float((r.get("timings") or {}).get("seconds", 0.0)) for r in every.values())
    claims = findings.headline_frame(result).rename(columns={"estimate": "contrast estimate", "lo": "95% lo",
                                                             "hi": "95% hi", "mde": "MDE"})
    claims = tables.format_frame(claims.drop(columns=["smallest margin shown"]), {"contrast estimate": "signed",
                                 "95% lo": "signed", "95% hi": "signed", "seeds": "int"})
    cells = notebook.missing_cells(grids.notebook_grids(prof, "cpu", store=ROOT / "results"), ROOT / "results")
    lines = [f"From the {len(every)} stored runs of the `{profile}` profile's design ({seconds / 3600:.1f} hours of "
             "run time in all: selection, training and evaluation). Each claim is judged by the rule the design fixed "
             "before the grids ran (`book/methods.md`): the contrast with its 95% t interval over seeds (per item and "
             "prompt when the records hold per-item outcomes), p (two one-sided tests against the margin for rules P "
             f"and E, the paired t-test for rule S), the margin, the minimum detectable effect (MDE) at {plan.power:.0%} "
             "power, the seeds and the verdict.", "", _markdown(claims), "",
             "Means over seeds:", "", _markdown(tables.format_frame(findings.means_frame(result))), ""]
    for name, f in result.items():
        fits = [o.verdict() for o in f.scaling.values()]
        gains = [f"{arm} arm: {s['sentence']}" for arm, s in f.saturation.items()]
        lines += [f"**{name}**:", ""] + [f"- {s}" for s in findings.claim_statements(f) + fits + gains] + [""]
    lines += ["**Closing note**:", ""] + [f"- {s}" for s in findings.closing_statements(result, runs)] + [""]
    lines += ["**Still missing**:", ""] + [f"- {s}" for s in notebook.missing_statements(cells, notes=False)] + [""]
    return "\n".join(lines)


def rules_section(profile: str = "default") -> str:
    from effalign.findings import rules_markdown

    prof, plan = _plan(profile)
    source = "`common.design`" if prof["common"].get("design") else "`common.analysis`"
    return rules_markdown(plan, list(prof["common"]["tracks"]), source=source)


def design_section(profile: str = "default") -> str:
    """The design's grids and arms, the pilot rule, the variance components and the MDE (book/methods.md)."""
    from effalign import design, notebook, views
    from effalign.tables import sampler_label

    prof, plan = _plan(profile)
    c = prof["common"]
    built = design.design_grids(prof)
    rows = ["| grid | tracks | arm | samplers | shares of the pool | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    by_grid: dict[str, list[dict]] = {}
    for name, g in built.items():  # <track>_<grid>, grid by grid in the design's order
        by_grid.setdefault(name[len(g["track"]) + 1:], []).append(g)
    for name, gs in by_grid.items():
        g = gs[0]
        samplers = ", ".join(s if isinstance(s, str) else sampler_label(s["name"], s.get("params")) for s in g["samplers"])
        rows.append(f"| {name} | {', '.join(x['track'] for x in gs)} | {g['arm']} | {samplers} | "
                    f"{', '.join(f'{f:.0%}' for f in g['fractions'])} | {len(g['seeds'])} |")
    arms = ["| track | arm | training budget |", "| --- | --- | --- |"]
    for track, t in c["tracks"].items():
        for arm, o in (t.get("arms") or {}).items():
            arms.append(f"| {track} | {arm} | " + ", ".join(f"{k} {v}" for k, v in o.items()) + " |")
    runs = notebook.profile_runs(prof, ROOT / "results", root=ROOT)
    rules = [design.pilot_rule(c, name, r.primary_records()).sentence() for name, r in runs.items()]
    var = design.variance_frame(c, {name: r.primary_records() for name, r in runs.items()})
    tracks = " and ".join(f"`{t}`" for t in c["tracks"])
    return "\n".join([f"The grids of the `{profile}` profile's design (`effalign.design.design_grids`, in the order they "
                      f"run); each grid runs on the tracks named ({tracks} in all), with run keys of its own "
                      "(`<track>_<grid>`):", "",
                      *rows, "", "Its training arms:", "", *arms, "",
                      "The internal pilot rule (`effalign.design.seeds_needed`), from the stored records:", "",
                      *[f"- {s}" for s in rules], "",
                      "Variance components of each track's primary metric in the primary arm's stored runs "
                      "(`effalign.design.variance_frame`: run-to-run SD across seeds, the SD of one evaluation item "
                      "and the item-sampling SE of one run, the SD of the paired difference and its item SE) and the "
                      f"design's minimum detectable effect at {plan.power:.0%} power:", "",
                      _markdown(views.variance_table(var)), ""])


def gpu_section(profile: str = "paper") -> str:
    """The GPU benchmark (benchmarks/bench_gpu.py) and the GPU time of the profile's design computed from it."""
    g = _load("gpu")
    if not g or g.get("smoke"):
        return ("_No GPU benchmark stored yet: on a GPU machine run `python benchmarks/bench_gpu.py` "
                "(writes `benchmarks/results/gpu.json`), then `python benchmarks/report.py`; the GPU time of the "
                f"`{profile}` profile is then computed from it here._\n")
    from effalign.compute import estimate_profile

    lines = [f"**GPU DPO** (`benchmarks/bench_gpu.py`; {g['gpu']}, dense bf16 peak {g['peak_tflops']} TFLOP/s; "
             f"SmolLM2-135M-Instruct, {g['rows'][0]['pairs']} {g['track']} pairs, at most "
             f"{g['lengths']['max_prompt_tokens']} prompt + {g['lengths']['max_completion_tokens']} completion tokens)", "",
             "| setting | batch | tokens/s | model TFLOP/s | MFU | peak memory (MB) |", "| --- | --- | --- | --- | --- | --- |"]
    for r in g["rows"]:
        mfu = "–" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(f"| {r['setting']} | {r['batch_size']} | {r['tokens_per_s']:,.0f} | {r['achieved_tflops_per_s']:.1f} | "
                     f"{mfu} | {r['peak_memory_mb']:,.0f} |")
    f, gen = g["forward"], g["generation"]
    best = max((r for r in g["rows"] if r["setting"] == "full"), key=lambda r: r["tokens_per_s"], default=None)
    goal = "" if not best or best["mfu"] is None else (
        f" Full fine-tuning reaches {best['mfu']:.1%} MFU against the goal of {g['mfu_goal']:.0%}: "
        + ("met." if best["mfu"] >= g["mfu_goal"] else "not met."))
    lines += ["", f"Forward (reference and evaluation log-probs): {f['tokens_per_s']:,.0f} tokens/s; greedy generation "
              f"({gen['prompts']} prompts at once): {gen['tokens_per_s']:,.0f} new tokens/s.{goal}", ""]
    est = estimate_profile(profile, g)
    parts = ", ".join(f"{k} {v / 3600:.2f} h" for k, v in est["by_part_s"].items())
    lines.append(f"GPU time of the `{profile}` profile's design on this GPU, from these rates "
                 f"(`effalign.compute.estimate_profile`, formula in `params/{profile}.yaml`): "
                 f"**{est['gpu_hours']:.1f} GPU-hours** for {est['cells']} runs over {est['pools']} pools ({parts}).")
    return "\n".join(lines) + "\n"


def replace_section(text: str, name: str, body: str, file: str = "README.md") -> str:
    pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{file} has no '<!-- BEGIN {name} -->' … '<!-- END {name} -->' section")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme, methods = ROOT / "README.md", ROOT / "book" / "methods.md"
    old = {readme: readme.read_text(), methods: methods.read_text()}
    new_readme = replace_section(replace_section(old[readme], "perf", perf_section()), "runs", runs_section())
    new_readme = replace_section(new_readme, "testbed", testbed_section())
    new_readme = replace_section(new_readme, "gpu", gpu_section())
    new_methods = replace_section(old[methods], "rules", rules_section(), "book/methods.md")
    new = {readme: replace_section(new_readme, "headline", headline_section()),
           methods: replace_section(new_methods, "design", design_section(), "book/methods.md")}
    stale = [path.relative_to(ROOT).as_posix() for path in new if new[path] != old[path]]
    if args.check:
        if stale:
            print(f"generated sections are out of date in {', '.join(stale)}: run python benchmarks/report.py")
            return 1
        return 0
    for path, text in new.items():
        path.write_text(text)
    print("generated sections updated" + (f" ({', '.join(stale)})" if stale else " (no change)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
