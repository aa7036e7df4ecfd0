"""The embedded testbed: verifiable-instruction prompts with a programmatic gold reward.

Prompts are topic x task x 1-3 verifiable constraints (word limits, bullet counts, words to use
or avoid, case, start/end phrases, JSON, titles, ...; see :data:`REGISTRY`). The gold reward of
a response is the share of its prompt's constraints it satisfies. Pairs are built from ``k``
samples of SmolLM2-135M-Instruct per prompt (chosen = highest reward, rejected = lowest).

Reward API (for evaluation code):

- :func:`gold_reward(constraints, response, topic) <gold_reward>`: constraints as
  :class:`Constraint` objects or ``{"kind", "params"}`` dicts, ``topic`` the prompt's topic
  (without it the gate cannot check the topic);
- :func:`reward_from_metadata(metadata, response) <reward_from_metadata>`: ``metadata`` is a
  row's ``metadata`` (anything with a ``constraints`` list), e.g. from ``eval_prompts.jsonl.gz``;
- :func:`gold_reward_fn(prompts_metadata, responses) <gold_reward_fn>`: the batched form,
  ``list[float]``;
- :func:`trl_reward_func`: the same with TRL's reward-function signature
  ``(prompts, completions, metadata=..., **kwargs)``.

Data: :func:`load_eval_prompts` returns the evaluation :class:`PromptSpec` objects;
``effalign.data.load_preferences("testbed")`` / ``("testbed-eval")`` read the pairs.
Build: :func:`build_testbed` / ``python -m effalign testbed build``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .build import (
    AppendLog,
    TestbedConfig,
    TestbedReport,
    add_build_arguments,
    build_testbed,
    generate_responses,
    main,
    read_jsonl_gz,
    render_datasheet,
    render_prompt,
    select_pair,
)
from .constraints import (
    MIN_DISTINCT_WORDS,
    MIN_WORDS,
    REGISTRY,
    REWARD_VERSION,
    TOPICS,
    Constraint,
    ConstraintKind,
    Topic,
    addresses_topic,
    all_compatible,
    compatible,
    gate_failure,
    gold_reward,
    satisfied,
    topic_terms,
)
from .prompts import GENERATOR_VERSION, KIND_WEIGHTS, TASKS, PromptSpec, generate_prompts

__all__ = [
    "AppendLog",
    "Constraint",
    "ConstraintKind",
    "GENERATOR_VERSION",
    "KIND_WEIGHTS",
    "MIN_DISTINCT_WORDS",
    "MIN_WORDS",
    "REWARD_VERSION",
    "PromptSpec",
    "REGISTRY",
    "TASKS",
    "TOPICS",
    "TestbedConfig",
    "TestbedReport",
    "Topic",
    "add_build_arguments",
    "addresses_topic",
    "all_compatible",
    "build_testbed",
    "compatible",
    "default_dir",
    "gate_failure",
    "generate_prompts",
    "generate_responses",
    "gold_reward",
    "gold_reward_fn",
    "load_eval_prompts",
    "main",
    "read_jsonl_gz",
    "render_datasheet",
    "render_prompt",
    "reward_from_metadata",
    "satisfied",
    "select_pair",
    "topic_terms",
    "trl_reward_func",
]


def default_dir() -> Path:
    """``data/testbed`` in the repository."""
    return Path(__file__).resolve().parents[3] / "data" / "testbed"


def _prompt_fields(metadata: Mapping[str, Any] | str) -> tuple[list[Any], str]:
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    if "constraints" not in metadata and "metadata" in metadata:
        metadata = metadata["metadata"]
    missing = [k for k in ("constraints", "topic") if k not in metadata]
    if missing:
        raise KeyError(f"testbed metadata lacks {missing} (the gold reward needs the constraints and the topic)")
    return list(metadata["constraints"]), str(metadata["topic"])


def reward_from_metadata(metadata: Mapping[str, Any] | str, response: str) -> float:
    """Gold reward of ``response`` for the prompt described by a row's ``metadata``.

    ``metadata`` may be the dict (or its JSON string, as ``PreferenceData.to_dataset`` stores
    it) holding ``constraints`` and ``topic``, or a whole row with a ``metadata`` field.
    """
    constraints, topic = _prompt_fields(metadata)
    return gold_reward(constraints, response, topic)


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return str(completion.get("content", ""))
    return "\n".join(_text(m) for m in completion if not isinstance(m, Mapping) or m.get("role", "assistant") == "assistant")


def gold_reward_fn(prompts_metadata: Sequence[Mapping[str, Any] | str], responses: Sequence[Any]) -> list[float]:
    """Gold rewards for parallel lists of prompt metadata and responses.

    Responses may be strings or assistant message lists (``[{"role": "assistant", "content": ...}]``).
    """
    if len(prompts_metadata) != len(responses):
        raise ValueError(f"{len(prompts_metadata)} prompts but {len(responses)} responses")
    return [reward_from_metadata(m, _text(r)) for m, r in zip(prompts_metadata, responses)]


def trl_reward_func(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any) -> list[float]:
    """TRL-style reward function: needs the dataset's ``metadata`` column in ``kwargs``."""
    if "metadata" not in kwargs:
        raise KeyError("trl_reward_func needs the 'metadata' column (with the constraint specs)")
    return gold_reward_fn(kwargs["metadata"], completions)


def load_eval_prompts(path: str | Path | None = None) -> list[PromptSpec]:
    """The held-out evaluation prompts (default ``data/testbed/eval_prompts.jsonl.gz``)."""
    path = Path(path) if path is not None else default_dir() / "eval_prompts.jsonl.gz"
    return [PromptSpec.from_metadata(r["metadata"]) for r in read_jsonl_gz(path)]
