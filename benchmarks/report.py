"""Write the README's generated sections from stored measurements (never typed by hand).

- ``<!-- BEGIN perf -->`` … ``<!-- END perf -->``: tables from ``benchmarks/results/*.json``;
- ``<!-- BEGIN runs -->`` … ``<!-- END runs -->``: the reference runs from ``results/*.jsonl``;
- ``<!-- BEGIN gpu -->`` … ``<!-- END gpu -->``: the GPU benchmark and the paper profile's GPU time;
- ``<!-- BEGIN headline -->`` … ``<!-- END headline -->``: the default profile's grids (the
  findings chapter's headline table and the paper's claims, from the same library functions).

Usage: python benchmarks/report.py [--check]   (--check: exit 1 if the README is out of date)
"""

from __future__ import annotations

import argparse
import json
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
    return "\n".join(parts) or "_No benchmark results stored yet: run `make bench`._\n"


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


def headline_section(profile: str = "default") -> str:
    import math

    from effalign import report
    from effalign.book import load_profile

    prof = load_profile(profile, ROOT)
    tracks = prof["common"]["tracks"]
    frames = report.profile_frames(prof, ROOT / "results")
    findings = {name: report.track_findings(sc, sa, tracks[name]["metric"], n_boot=200) for name, (sc, sa) in frames.items()}
    if not any(len(fr) for pair in frames.values() for fr in pair):
        return f"_No runs of the `{profile}` profile are stored yet: `make experiments`._\n"

    def num(x: float, fmt: str = "{:.3f}") -> str:
        return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)

    seconds = {k: s for pair in frames.values() for fr in pair if len(fr) for k, s in zip(fr["key"], fr["seconds"])}
    run_s = sum(seconds.values())  # each run once: the scaling and sampler grids share random subsets
    lines = [f"From the {len(seconds)} stored runs of the `{profile}` profile ({run_s / 3600:.1f} hours of run time "
             "in all, selection, training and evaluation; means over seeds; interval: 95% paired t interval of "
             "ISA − random over seeds).", "",
             "| track (metric) | budget | pairs | untrained | full pool | random | ISA | ISA − random (interval) | p | "
             "ISA rank | best selector | ISA share of full-data gain |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    table = report.headline_frame(findings)
    for _, r in table.iterrows():
        lines.append(
            f"| {r['track']} ({r['metric']}) | {r['budget']:.0%} | {r['pairs']:.0f} | {num(r['untrained'])} | "
            f"{num(r['full data'])} | {num(r['random'])} | {num(r['isa'])} | "
            f"{num(r['isa − random'], '{:+.3f}')} ({num(r['interval lo'], '{:+.3f}')} to {num(r['interval hi'], '{:+.3f}')}) | "
            f"{num(r['paired t p'])} | {r['isa rank'] or '–'} of {r['selectors']} | {r['best selector']} | "
            f"{num(r['isa share of full gain'], '{:.0%}')} |")
    lines.append("")
    for name, f in findings.items():
        lines.append(f"**{name}**: " + " ".join(report.claim_statements(f)))
        lines.append("")
    return "\n".join(lines)


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


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no '<!-- BEGIN {name} -->' … '<!-- END {name} -->' section")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    old = readme.read_text()
    new = replace_section(replace_section(old, "perf", perf_section()), "runs", runs_section())
    new = replace_section(new, "testbed", testbed_section())
    new = replace_section(new, "headline", headline_section())
    new = replace_section(new, "gpu", gpu_section())
    if args.check:
        if new != old:
            print("README.md generated sections are out of date: run python benchmarks/report.py")
            return 1
        return 0
    readme.write_text(new)
    print("README.md sections updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
