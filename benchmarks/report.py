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
    cells = notebook.missing_cells(grids.notebook_grids(prof, "cpu"), ROOT / "results")
    lines = [f"From the {len(every)} stored runs of the `{profile}` profile's design ({seconds / 3600:.1f} hours of "
             "run time in all: selection, training and evaluation). Each claim is judged by the rule the design fixed "
             "before the grids ran (`book/methods.md`): the contrast with its 95% t interval over seeds (per item and "
             "prompt when the records hold per-item outcomes), p (two one-sided tests against the margin for rules P "
             f"and E, the paired t-test for rule S), the margin, the minimum detectable effect (MDE) at {plan.power:.0%} "
             "power, the seeds and the verdict.", "", _markdown(claims), "",
             "Means over seeds:", "", _markdown(tables.format_frame(findings.means_frame(result))), ""]
    for name, f in result.items():
        fits = [o.verdict() for o in f.scaling.values()]
        gains = [s["sentence"] for s in f.saturation.values()]
        lines += [f"**{name}**: " + " ".join(findings.claim_statements(f) + fits + gains), ""]
    lines += ["**Closing note**: " + " ".join(findings.closing_statements(result, runs)), "",
              "**Still missing**: " + " ".join(notebook.missing_statements(cells, notes=False)), ""]
    return "\n".join(lines)


def rules_section(profile: str = "default") -> str:
    from effalign.findings import rules_markdown

    prof, plan = _plan(profile)
    source = "`common.design`" if prof["common"].get("design") else "`common.analysis`"
    return rules_markdown(plan, list(prof["common"]["tracks"]), source=source)


def design_section(profile: str = "default") -> str:
    """The design's grids and arms, the pilot rule, the variance components and the MDE (book/methods.md)."""
    from effalign import design, notebook, tables

    prof, plan = _plan(profile)
    c = prof["common"]
    built = design.design_grids(prof)
    rows = ["| grid | track | arm | samplers | shares of the pool | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for name, g in built.items():
        samplers = ", ".join(s if isinstance(s, str) else f"{s['name']} {s.get('params', {})}" for s in g["samplers"])
        rows.append(f"| {name} | {g['track']} | {g['arm']} | {samplers} | "
                    f"{', '.join(f'{f:.0%}' for f in g['fractions'])} | {len(g['seeds'])} |")
    arms = ["| track | arm | training budget |", "| --- | --- | --- |"]
    for track, t in c["tracks"].items():
        for arm, o in (t.get("arms") or {}).items():
            arms.append(f"| {track} | {arm} | " + ", ".join(f"{k} {v}" for k, v in o.items()) + " |")
    runs = notebook.profile_runs(prof, ROOT / "results", root=ROOT)
    rules = [design.pilot_rule(c, name, r.primary_records()).sentence() for name, r in runs.items()]
    var = design.variance_frame(c, {name: r.primary_records() for name, r in runs.items()})
    return "\n".join([f"The grids of the `{profile}` profile's design (`effalign.design.design_grids`, in the order they "
                      "run):", "", *rows, "", "Its training arms:", "", *arms, "",
                      "The internal pilot rule (`effalign.design.seeds_needed`), from the stored records:", "",
                      *[f"- {s}" for s in rules], "",
                      "Variance components of each track's primary metric in the primary arm's stored runs "
                      "(`effalign.design.variance_frame`: run-to-run SD across seeds, the SD of one evaluation item "
                      "and the item-sampling SE of one run, the SD of the paired difference and its item SE) and the "
                      f"design's minimum detectable effect at {plan.power:.0%} power:", "",
                      _markdown(tables.format_frame(var)), ""])


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
