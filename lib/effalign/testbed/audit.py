"""Before/after figures of the content gate on the stored samples (no generation).

:func:`reward_gate_audit` re-scores every stored response with the version-1 reward (share of
constraints met, ``gold_reward(..., gate=False)``) and the gated version-2 reward, and reports
what the gate changes: constant "gaming" answers, the reference policy's greedy answers, the
sampled responses, the chosen/rejected pairs and how well the old ranking survives. The build
stores the result in ``datasheet.json`` (``reward_gate``) and renders it in ``DATASHEET.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .constraints import (
    GATE_REASONS,
    MIN_DISTINCT_WORDS,
    MIN_WORDS,
    REWARD_VERSION,
    gate_failure,
    gold_reward,
    satisfied,
)

GAMING_ANSWERS: tuple[str, ...] = ("OK.", "Sure! Here is a short answer.")
"""Constant answers that scored well under the version-1 reward (evidence review, issue 13)."""

FIRST_N_EVAL = 48
"""The evaluation prompts the default profile's runs used until v2 (the first 48)."""


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return round(float(spearmanr(a, b).statistic), 4)


def _pair(scores: Sequence[float], responses: Sequence[str]) -> tuple[int, int] | None:
    from .build import select_pair  # build imports this module

    return select_pair(scores, responses)


def reward_gate_audit(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Version-1 versus version-2 gold reward on assembled sample rows.

    ``rows``: the records of ``samples.jsonl.gz`` (``split``, ``topic``, ``constraints``,
    ``responses`` and, for evaluation prompts, ``greedy`` with its ``response``). Returns a
    JSON-ready dict: the gate rule; per gaming answer the share of evaluation-prompt constraints
    it meets and its mean reward (all evaluation prompts and the first :data:`FIRST_N_EVAL`)
    before and after; the same for the stored greedy answers of the reference policy; the
    sampled responses' gate pass rate, failure reasons and mean reward; pair counts and mean
    chosen/rejected rewards before and after; and how the old ranking survives: Spearman
    correlation of old and new rewards over all samples and over the old chosen answers, and
    for every old pair whether its chosen answer still ranks above its rejected one.
    """
    evals = [r for r in rows if r.get("split") == "eval"]
    out: dict[str, Any] = {
        "reward_version": REWARD_VERSION,
        "rule": {
            "min_words": MIN_WORDS,
            "min_distinct_words": MIN_DISTINCT_WORDS,
            "topic": "mentions a word of effalign.testbed.topic_terms(topic)",
        },
    }

    def rewards(answer_of: Any, prompts: Sequence[Mapping[str, Any]], gate: bool) -> list[float]:
        return [gold_reward(r["constraints"], answer_of(r), r["topic"], gate=gate) for r in prompts]

    gaming = {}
    for answer in GAMING_ANSWERS:
        met = [ok for r in evals for ok in satisfied(r["constraints"], answer)]
        entry: dict[str, Any] = {"constraints_met": _mean(met), "gate": gate_failure(answer, None) or "passes"}
        for label, gate in (("before", False), ("after", True)):
            values = rewards(lambda r, a=answer: a, evals, gate)
            entry[label] = {"eval_all": _mean(values), f"eval_first_{FIRST_N_EVAL}": _mean(values[:FIRST_N_EVAL])}
        gaming[answer] = entry
    out["gaming"] = gaming

    with_greedy = [r for r in evals if r.get("greedy")]
    greedy: dict[str, Any] = {"n": len(with_greedy)}
    for label, gate in (("before", False), ("after", True)):
        values = rewards(lambda r: r["greedy"]["response"], with_greedy, gate)
        greedy[label] = {"eval_all": _mean(values), f"eval_first_{FIRST_N_EVAL}": _mean(values[:FIRST_N_EVAL])}
    greedy["gate_pass"] = _mean([gate_failure(r["greedy"]["response"], r["topic"]) is None for r in with_greedy])
    out["greedy_reference"] = greedy

    old_all: list[float] = []
    new_all: list[float] = []
    reasons = {k: 0 for k in GATE_REASONS}
    pairs = {"before": {"n": 0, "chosen": [], "rejected": []}, "after": {"n": 0, "chosen": [], "rejected": []}}
    kept = {"chosen_above": 0, "tied": 0, "reversed": 0}
    old_chosen: list[float] = []
    new_of_old_chosen: list[float] = []
    same_chosen = both_paired = 0
    for r in rows:
        resp = r["responses"]
        old = [gold_reward(r["constraints"], x, r["topic"], gate=False) for x in resp]
        fails = [gate_failure(x, r["topic"]) for x in resp]
        new = [0.0 if f else o for o, f in zip(old, fails)]
        for f in fails:
            if f:
                reasons[f] += 1
        old_all += old
        new_all += new
        picks = {"before": _pair(old, resp), "after": _pair(new, resp)}
        for label, scores in (("before", old), ("after", new)):
            if picks[label] is not None:
                c, j = picks[label]
                pairs[label]["n"] += 1
                pairs[label]["chosen"].append(scores[c])
                pairs[label]["rejected"].append(scores[j])
        if picks["before"] is not None:
            c, j = picks["before"]
            old_chosen.append(old[c])
            new_of_old_chosen.append(new[c])
            d = new[c] - new[j]
            kept["chosen_above" if d > 0 else "tied" if d == 0 else "reversed"] += 1
            if picks["after"] is not None:
                both_paired += 1
                same_chosen += picks["after"][0] == c
    n_samples = len(old_all)
    out["samples"] = {
        "n": n_samples,
        "gate_pass": round(1 - sum(reasons.values()) / n_samples, 4) if n_samples else None,
        "gate_failures": reasons,
        "before": {"mean": _mean(old_all)},
        "after": {"mean": _mean(new_all)},
    }
    out["pairs"] = {
        label: {"n": v["n"], "chosen_mean": _mean(v["chosen"]), "rejected_mean": _mean(v["rejected"])}
        for label, v in pairs.items()
    }
    n_old = sum(kept.values())
    out["ranking"] = {
        "spearman_all_samples": _spearman(old_all, new_all),
        "spearman_old_chosen": _spearman(old_chosen, new_of_old_chosen),
        "old_pairs": n_old,
        "old_pairs_kept": {k: v for k, v in kept.items()},
        "old_pairs_kept_share": {k: round(v / n_old, 4) for k, v in kept.items()} if n_old else {},
        "old_chosen_still_chosen": round(same_chosen / both_paired, 4) if both_paired else None,
    }
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def render_audit(audit: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the datasheet's "Content gate" section."""
    rule, first = audit["rule"], f"eval_first_{FIRST_N_EVAL}"
    lines = [
        f"## Content gate (reward version {audit['reward_version']})",
        f"A response scores 0 unless it has at least {rule['min_words']} words, at least "
        f"{rule['min_distinct_words']} different words, and mentions its prompt's topic (a word of its name, "
        "its prompt keywords or a short list of related words, `effalign.testbed.topic_terms`); otherwise "
        "its reward is the share of constraints met, as before. Every task asks for a paragraph, "
        "description, story, note or list about the topic, and the tightest length cap a prompt can set is "
        "30 words or 150 characters, so the gate never conflicts with a constraint. Figures below: "
        "version 1 (before, no gate) against version 2 (after), recomputed from the stored responses.",
        "",
        f"| answer | constraints met (eval) | reward before: all eval / first {FIRST_N_EVAL} "
        f"| reward after: all eval / first {FIRST_N_EVAL} |",
        "| --- | --- | --- | --- |",
    ]
    for answer, g in audit["gaming"].items():
        lines.append(
            f"| constant \"{answer}\" | {g['constraints_met']} | {g['before']['eval_all']} / {g['before'][first]} "
            f"| {g['after']['eval_all']} / {g['after'][first]} |"
        )
    gr = audit["greedy_reference"]
    lines.append(
        f"| reference policy, greedy (stored, n={gr['n']}) | - | {gr['before']['eval_all']} / {gr['before'][first]} "
        f"| {gr['after']['eval_all']} / {gr['after'][first]} |"
    )
    s, p, k = audit["samples"], audit["pairs"], audit["ranking"]
    fails = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in s["gate_failures"].items())
    share = k["old_pairs_kept_share"]
    lines += [
        "",
        f"- Sampled responses: {s['n']}; {_pct(s['gate_pass'])} pass the gate (failures: {fails}); "
        f"mean reward {s['before']['mean']} before, {s['after']['mean']} after. Greedy reference answers "
        f"passing: {_pct(gr['gate_pass'])}.",
        f"- Pairs (train + eval): {p['before']['n']} before, {p['after']['n']} after; chosen mean "
        f"{p['before']['chosen_mean']} → {p['after']['chosen_mean']}, rejected mean "
        f"{p['before']['rejected_mean']} → {p['after']['rejected_mean']}.",
        f"- Ranking: Spearman correlation of old and new rewards {k['spearman_all_samples']} over all samples, "
        f"{k['spearman_old_chosen']} over the old chosen answers. Of the {k['old_pairs']} old pairs, the chosen "
        f"answer still ranks above the rejected one in {_pct(share.get('chosen_above'))}, ties with it in "
        f"{_pct(share.get('tied'))} (both gated to 0, mostly off-topic samples) and falls below it in "
        f"{_pct(share.get('reversed'))}; where a prompt has a pair before and after, the same sample is "
        f"chosen in {_pct(k['old_chosen_still_chosen'])}.",
        "",
    ]
    return lines
