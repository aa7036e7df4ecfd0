"""Deterministic prompt generator: topic x task x 1-3 compatible constraints.

:func:`generate_prompts` draws prompts one after another from a numpy ``Generator`` seeded with
``seed`` and skips duplicates, so the first ``n`` prompts for a seed do not depend on how many
are asked for (a larger build extends a smaller one). The first ``n_eval`` prompts form the
held-out evaluation set, the rest the training pool: the split is disjoint by prompt text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constraints import REGISTRY, TOPICS, Constraint, all_compatible, as_constraints, gold_reward

GENERATOR_VERSION = 2
"""Bump when the prompt distribution changes (it is recorded in the data set's metadata)."""

TASKS: tuple[str, ...] = (
    "Write a short paragraph about {t}.",
    "Describe {t}.",
    "Explain {t} to a ten-year-old.",
    "Give some advice related to {t}.",
    "Write a short blog post about {t}.",
    "Share some interesting facts about {t}.",
    "Write a short note to a friend about {t}.",
    "Tell me why {t} is worth learning about.",
    "Write a short story involving {t}.",
    "Summarize what people should know about {t}.",
)
"""Task templates; ``{t}`` is replaced by the topic."""

KIND_WEIGHTS: dict[str, float] = {
    "max_words": 1.0,
    "min_words": 0.8,
    "max_chars": 0.8,
    "max_sentences": 1.0,
    "exact_sentences": 0.8,
    "paragraphs": 0.6,
    "bullets": 0.7,
    "numbered_list": 0.9,
    "json_object": 0.3,
    "include_word": 1.2,
    "word_frequency": 1.0,
    "avoid_word": 0.9,
    "include_number": 1.1,
    "lowercase": 0.35,
    "capital_words": 0.35,
    "start_with": 0.9,
    "end_with": 0.6,
    "end_question": 0.4,
    "postscript": 0.9,
    "quotation": 0.3,
    "title_brackets": 0.9,
    "title_markdown": 0.8,
    "bold": 0.6,
    "placeholder": 0.9,
    "no_commas": 0.8,
    "exclamation": 0.7,
}
"""Relative sampling weight of each constraint kind, tuned with a probe of the reference policy
(128 prompts): kinds it almost never satisfies (lowercase, ALL-CAPS words, quotation, JSON, ending
with a question) are kept rarer, kinds satisfied by some samples and not others more frequent,
which lowers the share of prompts whose samples all tie while leaving headroom."""

N_CONSTRAINTS_PROBS: dict[int, float] = {1: 0.15, 2: 0.45, 3: 0.40}
"""Distribution of the number of constraints per prompt."""


@dataclass(frozen=True)
class PromptSpec:
    """One testbed prompt: the instruction and the constraints that define its gold reward."""

    id: str
    topic: str
    task: str
    constraints: tuple[Constraint, ...]
    split: str = "train"

    @property
    def instruction(self) -> str:
        """The user message: task sentence followed by one sentence per constraint."""
        return " ".join([self.task.format(t=self.topic)] + [c.instruction() for c in self.constraints])

    def messages(self) -> list[dict[str, str]]:
        """The prompt in TRL conversational format (a single user turn, no system prompt)."""
        return [{"role": "user", "content": self.instruction}]

    def reward(self, response: str) -> float:
        """Gold reward of ``response``: share of constraints satisfied, behind the content gate
        on this prompt's topic (see :func:`~effalign.testbed.constraints.gold_reward`)."""
        return gold_reward(self.constraints, response, self.topic)

    def to_metadata(self) -> dict[str, Any]:
        """JSON-able description from which :meth:`from_metadata` rebuilds the spec."""
        return {
            "id": self.id,
            "split": self.split,
            "topic": self.topic,
            "task": self.task,
            "instruction": self.instruction,
            "constraints": [c.to_dict() for c in self.constraints],
            "generator_version": GENERATOR_VERSION,
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> PromptSpec:
        """Inverse of :meth:`to_metadata`."""
        return cls(
            id=meta["id"],
            topic=meta["topic"],
            task=meta["task"],
            constraints=tuple(as_constraints(meta["constraints"])),
            split=meta.get("split", "train"),
        )


def prompt_id(instruction: str) -> str:
    """Stable id of a prompt: ``tb-`` and 12 hex digits of the sha1 of its instruction."""
    return "tb-" + hashlib.sha1(instruction.encode("utf-8")).hexdigest()[:12]


def _sample_constraints(rng: np.random.Generator, topic_index: int, n: int) -> list[Constraint] | None:
    names = sorted(KIND_WEIGHTS)
    weights = np.array([KIND_WEIGHTS[k] for k in names], dtype=float)
    chosen: list[Constraint] = []
    for _ in range(20 * n):
        if len(chosen) == n:
            break
        kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        cand = Constraint(kind, REGISTRY[kind].sample(rng, TOPICS[topic_index]))
        if all_compatible([*chosen, cand]):
            chosen.append(cand)
    return chosen if len(chosen) == n else None


def generate_prompts(n: int, *, seed: int = 0, n_eval: int = 0) -> list[PromptSpec]:
    """``n`` distinct prompts for ``seed``; the first ``n_eval`` are marked ``split="eval"``.

    Prompts are drawn sequentially (topic, task, number of constraints, constraints) and
    duplicates of an earlier instruction are skipped, so the result is prefix-stable in ``n``.
    Constraints are kept in the order drawn. Raises if ``n`` distinct prompts cannot be drawn.
    """
    if n_eval > n:
        raise ValueError(f"n_eval={n_eval} exceeds n={n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E57BED]))
    counts = sorted(N_CONSTRAINTS_PROBS)
    probs = np.array([N_CONSTRAINTS_PROBS[c] for c in counts], dtype=float)
    probs /= probs.sum()
    seen: set[str] = set()
    out: list[PromptSpec] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could only draw {len(out)} distinct prompts out of {n}")
        ti = int(rng.integers(len(TOPICS)))
        task = TASKS[int(rng.integers(len(TASKS)))]
        k = counts[int(rng.choice(len(counts), p=probs))]
        cons = _sample_constraints(rng, ti, k)
        if cons is None:
            continue
        spec = PromptSpec("", TOPICS[ti].name, task, tuple(cons))
        instruction = spec.instruction
        if instruction in seen:
            continue
        seen.add(instruction)
        split = "eval" if len(out) < n_eval else "train"
        out.append(PromptSpec(prompt_id(instruction), spec.topic, task, spec.constraints, split))
    return out


def kind_counts(prompts: Sequence[PromptSpec]) -> dict[str, int]:
    """How many prompts use each constraint kind."""
    counts = {k: 0 for k in REGISTRY}
    for p in prompts:
        for c in p.constraints:
            counts[c.kind] += 1
    return counts
