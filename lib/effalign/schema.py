"""The settings a user writes, documented in one place: grid files and parameter profiles.

Every key that :mod:`effalign.validate` checks has an entry here: a description with an example.
Types come from :mod:`effalign.validate` (:data:`~effalign.validate.GRID_KEYS`,
:data:`~effalign.validate.DATA_TYPES`, :data:`~effalign.validate.PROFILE_TYPES`,
:data:`~effalign.validate.TRACK_TYPES`), defaults from the code that uses them
(:class:`~effalign.train.DPOTrainConfig`, :data:`effalign.experiment.DEFAULT_EVAL`,
:class:`~effalign.verdicts.AnalysisPlan`, ``params/default.yaml``). :func:`reference_markdown`
renders the book's reference page, ``book/reference.md`` (``python -m effalign.schema`` writes it;
``tests/test_userpaths.py`` checks that it is current and that no key lacks a description).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ANALYSIS_DOCS", "DATA_DOCS", "DESIGN_DOCS", "DESIGN_GRID_DOCS", "DESIGN_PRIMARY_DOCS",
           "DESIGN_SECONDARY_DOCS", "EVAL_DOCS", "GRID_DOCS", "PROFILE_DOCS", "PROFILE_FILE_DOCS", "TRACK_DOCS",
           "TRAIN_DOCS", "missing_docs", "reference_markdown"]

#: top-level keys of a grid file (``python -m effalign run --grid FILE``)
GRID_DOCS: dict[str, str] = {
    "experiment": "name of the experiment: records go to `<store>/<experiment>.jsonl` (required); e.g. `hh_mine`",
    "data": "the data mapping (below; required), e.g. `{source: hh-harmless, eval_size: 300}`",
    "model": "the policy: an alias (`smollm2-135m-instruct`, `tiny-random`), a checkpoint folder or a hub id",
    "samplers": "sampler names or `{name, params}` mappings (required), e.g. `[random, {name: isa, params: {dim: 16}}]`",
    "budgets": "training pairs per run (`full` or null: the whole pool); give this or `fractions`, e.g. `[50, 100]`",
    "fractions": "shares of the pool in (0, 1] (1.0: the whole pool); give this or `budgets`, e.g. `[0.1, 0.5]`",
    "seeds": "seeds (required); each sampler, budget and seed is one run, e.g. `[0, 1, 2]`",
    "train": "DPOTrainConfig fields (below), e.g. `{epochs: 2, lora: false}`",
    "eval": "evaluation settings (below), e.g. `{batch_size: 16}`",
    "store": "run store folder (`--store` overrides), e.g. `my-results`",
    "description": "free text (not part of the run keys)",
    "track": "label: the track a design grid belongs to (not part of the run keys)",
    "arm": "label: the training arm of a design grid (not part of the run keys)",
    "save_model": "save each policy trained now to `<save_model>/<run key>` (merged LoRA or full weights, "
                  "tokenizer, model card); `--save-model` overrides; not part of the run keys",
    "report_to": "training-log integrations for TRL, e.g. `[tensorboard]` (offline; needs the tensorboard "
                 "package) or `[wandb]`; `--report-to` overrides; not part of the run keys",
    "logging_dir": "where `report_to` integrations write, one folder per run key; not part of the run keys",
}
GRID_DEFAULTS: dict[str, str] = {"model": "`smollm2-135m-instruct`", "train": "`{}`", "eval": "`{}`",
                                 "store": "`results`", "report_to": "`[]`", "logging_dir": "`logs`"}

#: keys of a ``data`` mapping (grids, and each track of a profile)
DATA_DOCS: dict[str, str] = {
    "source": "training data (required): an alias (`hh-harmless`, `testbed`), a `.jsonl`, `.jsonl.gz`, `.json`, "
              "`.parquet`, `.csv` or `.csv.gz` file, a folder written by `datasets`' `save_to_disk`, or a hub id "
              "`owner/name`; a name that is none of these is refused with the known aliases",
    "split": "split of a hub data set or a saved `DatasetDict`, e.g. `test`",
    "config": "configuration name of a hub data set",
    "data_dir": "folder inside a hub data set, e.g. `harmless-base` for `Anthropic/hh-rlhf`",
    "revision": "commit, tag or branch of a hub data set; pins its fingerprint in the run keys",
    "eval_source": "separate evaluation pairs (same kinds as `source`); without it `source` is split by prompt",
    "eval_split": "split of a hub `eval_source`",
    "eval_size": "evaluation pairs: with `eval_source` a seeded sample of that many; otherwise the prompt-disjoint "
                 "split keeps this many (a count) or this share (below 1) of `source`",
    "split_seed": "seed of the split, of the evaluation sample and of the pool sample",
    "pool_size": "keep this many pool pairs (a seeded sample of the pairs outside the evaluation and validation "
                 "sets); null: all of them",
    "pool_per_seed": "draw the pool (and the validation split) with the run's seed, so each seed has a fresh pool "
                     "shared by every sampler of that seed; the evaluation set stays fixed; false: one pool from "
                     "`split_seed` for every seed",
    "val_size": "validation pairs (whole prompts) outside the evaluation set and disjoint from the pool: a count, "
                "or a share (below 1) of `pool_size`; budget `converge` stops early on them, and every run reports "
                "its final validation loss",
    "gen_prompts": "`testbed`: also evaluate generations on the testbed's held-out prompts with the gold reward",
    "gen_n": "how many held-out testbed prompts to generate for (null: all 400)",
}
DATA_DEFAULTS: dict[str, str] = {"split": "`train`", "eval_size": "`300` (all of `eval_source`)", "split_seed": "`0`",
                                 "revision": "`main`", "pool_per_seed": "false", "val_size": "none", "gen_n": "all"}

#: keys of an ``eval`` mapping
EVAL_DOCS: dict[str, str] = {
    "pairs": "score the held-out preference pairs (false: skip them, e.g. a pilot that selects settings by "
             "validation loss and so never looks at the evaluation set)",
    "batch_size": "pairs per forward pass when scoring held-out pairs",
    "generation": "generate answers to held-out prompts (with `data.gen_prompts: testbed`)",
    "max_new_tokens": "longest generated answer, in tokens",
    "kl_samples": "answers sampled per prompt for the KL estimate to the reference",
    "n_boot": "bootstrap replicates of each metric's interval",
    "gen_batch_size": "prompts decoded at once (greedy bf16 output depends slightly on batching)",
}

#: fields of ``train`` (:class:`effalign.train.DPOTrainConfig`)
TRAIN_DOCS: dict[str, str] = {
    "beta": "DPO's β: strength of the pull towards the reference policy",
    "learning_rate": "peak learning rate (AdamW)",
    "epochs": "passes over the training pairs (budget `epochs` only)",
    "batch_size": "pairs per optimiser step (the global batch across processes)",
    "grad_accum": "micro-batches accumulated per step",
    "max_prompt_tokens": "the prompt keeps its last this-many tokens",
    "max_completion_tokens": "each answer keeps its first this-many tokens; a run that cuts more than a quarter "
                             "of the answer tokens warns",
    "lora": "train LoRA adapters on a frozen bf16 base (false: full fine-tuning, float32 weights, bf16 autocast)",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA scaling α",
    "lora_dropout": "LoRA dropout",
    "lora_targets": "modules that get adapters, e.g. `[q_proj, v_proj]`; null: every linear layer",
    "warmup_ratio": "share of the steps with a rising learning rate",
    "lr_scheduler": "learning-rate schedule (transformers' names: `linear`, `cosine`, `constant`…)",
    "weight_decay": "AdamW weight decay",
    "max_grad_norm": "gradient clipping norm",
    "group_by_length": "batches of pairs of similar length (less padding)",
    "gradient_checkpointing": "recompute activations (less memory, slower)",
    "fast_logps": "effalign's log-prob pass (LM head at answer positions only); false: TRL's own loss code",
    "seed": "training seed (a run's seed replaces it)",
    "logging_steps": "steps between loss-curve points",
    "budget": "training budget: `epochs` (passes over the pairs; steps grow with the subset), `steps` (exactly "
              "`max_steps` optimiser steps for every subset size: equal compute) or `converge` (at most "
              "`max_steps`, early stopping on the validation loss of `data.val_size` pairs)",
    "max_steps": "budget `steps`: the exact optimiser steps; `converge`: the cap; null with budget `epochs`",
    "val_every": "budget `converge`: steps between validation-loss evaluations (other budgets: once, at the end)",
    "patience": "budget `converge`: evaluations without improvement before stopping",
    "min_delta": "budget `converge`: smallest decrease of the validation loss that counts as improvement",
    "restore_best": "budget `converge`: keep the weights of the best validation loss",
    "train_attention": "attention kernel for training: `sdpa` (default) or `eager` (opt-in, about 1.5x faster on this CPU, numbers move: benchmarks/bench_attention.py); evaluation always uses sdpa",
}

#: keys of a profile's ``common`` block (and of ``notebooks.<name>``)
PROFILE_DOCS: dict[str, str] = {
    "threads": "torch CPU threads (null: all cores)",
    "store": "run store, relative to `notebooks/` in the project's profiles; a profile of your own gets "
             "`~/.cache/effalign/runs/<file name>` (`$EFFALIGN_RUNS/<file name>`) unless it names one, relative "
             "to the profile file",
    "run_missing": "train the grid cells the store lacks (false: show what is stored, and say what is missing)",
    "model": "the policy of every grid (alias, checkpoint folder or hub id)",
    "seeds": "chapter 01's example seeds (with a `design`, the grids' seeds are the design's); without a design: "
             "seeds of the sampler grids",
    "n_boot": "bootstrap replicates of the scaling fits",
    "train": "DPOTrainConfig fields for every run (a track's `train` overrides them)",
    "tracks": "data sets with their evaluation, by name (below); a track set to null in a profile of your own "
              "is left out",
    "scaling_fractions": "profiles without a `design`: pool shares of the scaling grids",
    "scaling_seeds": "profiles without a `design`: seeds of the scaling grids",
    "samplers": "profiles without a `design`: samplers of the sampler grids (names or `{name, params}`)",
    "budgets": "profiles without a `design`: pool shares of the sampler grids",
    "ablation": "profiles without a `design`: ISA variants (parameter mappings) of the ablation grid, e.g. "
                "`[{score: entropy}]`",
    "ablation_budget": "profiles without a `design`: pool share of the ablation grid",
    "scaling_arms": "profiles without a `design`: training arms of the scaling grids: name → train overrides, e.g. "
                    "`{equal_steps: {budget: steps, max_steps: 120}}` ({}: one arm, `default`)",
    "arms": "training arms outside the design: name → train overrides (the smoke profile lists one per budget "
            "mode, which the tests run); the design's grids use each track's `arms`",
    "analysis": "the verdict rules' values, fixed before the grids run (below; `book/methods.md`); with a "
                "`design`, only what the design does not fix (`level`, `n_sim`)",
    "gpu_dpo": "the larger comparison of chapter 04: `track`, `fraction`, `seed`, and `cuda`/`cpu` blocks with "
               "`model` and `data`/`train`/`eval` overrides (and optionally `experiment`)",
    "design": "the pre-registered design (below; `effalign.design`): the one source of the grids (`make "
              "experiments`, the chapters) and of the verdict rules' values",
    "isa_fraction": "share of the pool ISA picks in chapter 01",
    "n_examples": "example pairs shown in chapter 01",
}

#: keys of one track (``common.tracks.<name>``)
TRACK_DOCS: dict[str, str] = {
    "metric": "the track's primary metric, e.g. `pref_accuracy` or `gen_reward`",
    "secondary": "other metrics shown, e.g. `[pref_margin]`",
    "data": "the data mapping (as in a grid; required)",
    "eval": "the evaluation mapping (as in a grid)",
    "train": "DPOTrainConfig fields that override `common.train` for this track",
    "arms": "training budgets the design's grids name: arm → train overrides with run keys of their own, e.g. "
            "`{equal_steps: {budget: steps, max_steps: 75}, fixed_epochs: {budget: epochs, epochs: 1}}`",
}

#: keys of ``common.design`` (:mod:`effalign.design`)
DESIGN_DOCS: dict[str, str] = {
    "experiment": "experiment name of every grid, `{track}` replaced by the track's name, e.g. `{track}_v2`",
    "primary": "the primary contrast (below): its sampler against its baseline at one pool share, one arm, every seed",
    "secondary": "the rules of the secondary claims (below)",
    "grids": "the other grids by name (below), run after the primary one in this order, e.g. `full_pool`, "
             "`samplers`, `scaling_steps`, `scaling_epochs`, `ablation`",
}

#: keys of ``common.design.primary``
DESIGN_PRIMARY_DOCS: dict[str, str] = {
    "sampler": "the selector under test, e.g. `isa`",
    "baseline": "the comparison selector, e.g. `random`",
    "fraction": "share of each seed's pool both select",
    "arm": "the training arm (a track's `arms` entry); also the arm the plateau claim is judged in",
    "seeds": "a count `n` (seeds 0 … n−1) or a list; pool seeds paired across the two selectors",
    "pilot_seeds": "the first seeds form an internal pilot whose variance (never its contrast) sets the seeds needed",
    "min_seeds": "the fewest seeds the pilot rule may ask for",
    "effect": "effect of interest in metric units (a number or one per track); null: the equivalence margin",
    "test": "the primary test (`paired_t`)",
    "alpha": "two-sided level of every test",
    "power": "power of every minimum detectable effect and of the pilot rule",
}
DESIGN_PRIMARY_DEFAULTS: dict[str, str] = {"pilot_seeds": "`0` (no pilot)", "min_seeds": "`seeds`", "effect": "null",
                                           "test": "`paired_t`", "alpha": "`0.05`", "power": "`0.8`"}

#: keys of ``common.design.secondary``
DESIGN_SECONDARY_DOCS: dict[str, str] = {
    "multiplicity": "adjustment of the secondary comparisons (`holm`)",
    "equivalence_margin": "small-subset claim's margin in metric units (a number or one per track; required)",
    "plateau_delta": "plateau claim's δ in metric units (a number or one per track)",
}
DESIGN_SECONDARY_DEFAULTS: dict[str, str] = {"multiplicity": "`holm`", "plateau_delta": "`equivalence_margin`"}

#: keys of one grid of ``common.design.grids``
DESIGN_GRID_DOCS: dict[str, str] = {
    "samplers": "sampler names or `{name, params}` mappings",
    "fractions": "shares of each seed's pool (1.0: the whole pool)",
    "arm": "the training arm (a track's `arms` entry)",
    "seeds": "a count `n` (seeds 0 … n−1, shared with the other grids) or a list",
    "tracks": "the tracks that run this grid (default: every track), e.g. `[hh]`",
}

#: top-level keys of a profile file
PROFILE_FILE_DOCS: dict[str, str] = {
    "base": "a profile of your own only: the profile it is merged over (`default`, `smoke`, `paper` or a .yaml "
            "file, relative to this one; null: a complete profile); mappings merge key by key, other values replace",
    "common": "parameters offered to every notebook (each takes the names its parameters cell declares)",
    "notebooks": "per-notebook parameters by notebook name, overriding `common`",
}

#: keys of ``common.analysis`` (:class:`effalign.verdicts.AnalysisPlan`)
ANALYSIS_DOCS: dict[str, str] = {
    "primary_budget": "pool share of the sampler claim's primary contrast (and the small-subset claim)",
    "primary_metric": "the endpoint per track (default: the track's `metric`)",
    "alpha": "two-sided level of every test",
    "power": "power of every minimum detectable effect",
    "multiplicity": "adjustment of the secondary comparisons (`holm`)",
    "equivalence_margin": "small-subset claim's margin in metric units (a number or one per track)",
    "plateau_delta": "plateau claim's δ in metric units (a number or one per track)",
    "plateau_arm": "scaling arm the plateau is judged in (null: the default arm)",
    "effect": "the primary contrast's effect of interest in metric units (a number or one per track; null: the "
              "equivalence margin), for its MDE and the pilot rule",
    "sampler": "the primary contrast's sampler",
    "baseline": "the primary contrast's baseline",
    "level": "level of reported intervals",
    "n_sim": "Monte Carlo draws and bootstrap replicates of the rules",
}

GRID_EXAMPLE = """\
# my_grid.yaml: python -m effalign run --grid my_grid.yaml
experiment: hh_mine
data: {source: hh-harmless, eval_size: 300, pool_size: 600}
model: smollm2-135m-instruct
samplers: [random, isa]
fractions: [0.1, 0.5]
seeds: [0, 1, 2]
train: {epochs: 1, lora: true, max_prompt_tokens: 64, max_completion_tokens: 48}
eval: {batch_size: 16}
store: my-results
save_model: aligned          # optional: each trained policy in aligned/<run key>
report_to: [tensorboard]     # optional: TensorBoard event files in logs/<run key>
"""

PROFILE_EXAMPLE = """\
# my.yaml: python -m effalign book --profile my.yaml (merged over params/default.yaml)
common:
  run_missing: true                    # train what the store lacks
  model: HuggingFaceTB/SmolLM2-360M-Instruct
  design:                              # merged key by key over the default design
    primary: {fraction: 0.2, seeds: 4, pilot_seeds: 0, min_seeds: 4}
  tracks:
    testbed: null                      # leave the testbed track out
    hh:
      data: {pool_size: 1000}          # only what changes; the rest of the track is kept
      train: {max_completion_tokens: 128}
"""


def _type(hint: Any) -> str:
    from .validate import _describe

    return _describe(hint).replace("|", "or")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(docs: Mapping[str, str], types: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, meaning in docs.items():
        hint = types.get(key)
        default = defaults.get(key, "—")
        rows.append(f"| `{key}` | {_cell(_type(hint)) if hint is not None else '—'} | {_cell(default)} | "
                    f"{_cell(meaning)} |")
    return rows


def _yaml(value: Any) -> str:
    import json

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value if not isinstance(value, tuple) else list(value), ensure_ascii=False)
        return f"`{text}`" if len(text) <= 40 else "(see `params/default.yaml`)"
    return f"`{value}`"


def _train_defaults() -> tuple[dict[str, Any], dict[str, str]]:
    from .train import DPOTrainConfig
    from .validate import _hints

    hints = _hints(DPOTrainConfig)
    defaults = {k: _yaml(v) for k, v in DPOTrainConfig().to_dict().items()}
    defaults.setdefault("budget", "`epochs`")
    return hints, defaults


def missing_docs() -> list[str]:
    """Keys that the checks know but this module does not document (should be empty)."""
    from .experiment import DEFAULT_EVAL
    from .design import GRID_FIELDS
    from .validate import (DATA_TYPES, DESIGN_GRID_TYPES, DESIGN_PRIMARY_TYPES, DESIGN_SECONDARY_TYPES, DESIGN_TYPES,
                           GRID_KEYS, PROFILE_TYPES, TRACK_TYPES)
    from .verdicts import AnalysisPlan

    hints, _ = _train_defaults()
    known = {"grid": (GRID_KEYS, GRID_DOCS), "data": (DATA_TYPES, DATA_DOCS), "eval": (DEFAULT_EVAL, EVAL_DOCS),
             "train": (hints, TRAIN_DOCS), "common": (PROFILE_TYPES, PROFILE_DOCS), "track": (TRACK_TYPES, TRACK_DOCS),
             "analysis": ([f.name for f in dataclasses.fields(AnalysisPlan)], ANALYSIS_DOCS),
             "design": (DESIGN_TYPES, DESIGN_DOCS), "design.primary": (DESIGN_PRIMARY_TYPES, DESIGN_PRIMARY_DOCS),
             "design.secondary": (DESIGN_SECONDARY_TYPES, DESIGN_SECONDARY_DOCS),
             "design.grids.<name>": ({*DESIGN_GRID_TYPES, *GRID_FIELDS}, DESIGN_GRID_DOCS)}
    return [f"{where}.{key}" for where, (keys, docs) in known.items() for key in keys if key not in docs]


def reference_markdown(root: Path | None = None) -> str:
    """The book's reference page: every grid and profile key with its type, default and meaning."""
    import yaml

    from .data import ALIASES, repo_dir
    from .experiment import DEFAULT_EVAL
    from .validate import (DATA_TYPES, DESIGN_GRID_TYPES, DESIGN_PRIMARY_TYPES, DESIGN_SECONDARY_TYPES, DESIGN_TYPES,
                           PROFILE_TYPES, RUN_OPTION_TYPES, TRACK_TYPES)
    from .verdicts import AnalysisPlan

    root = root or repo_dir()
    default = yaml.safe_load((root / "params" / "default.yaml").read_text())
    train_hints, train_defaults = _train_defaults()
    analysis_hints = typing.get_type_hints(AnalysisPlan)
    analysis_defaults = {f.name: _yaml(f.default) if f.default is not dataclasses.MISSING else "per track"
                         for f in dataclasses.fields(AnalysisPlan)}
    grid_types = {"experiment": str, "data": dict, "model": str, "samplers": list, "budgets": list,
                  "fractions": list[float], "seeds": list[int], "train": dict, "eval": dict, "store": str,
                  "description": str, "track": str, "arm": str, **RUN_OPTION_TYPES}
    common_defaults = {k: _yaml(v) for k, v in (default.get("common") or {}).items()}
    common_defaults["store"] = "`../results` (yours: `~/.cache/effalign/runs/<name>`)"
    lines = [
        "# Reference: grid files and profiles",
        "",
        "<!-- generated by `python -m effalign.schema` from effalign.schema, effalign.validate and the code's "
        "defaults; do not edit by hand -->",
        "",
        "Every key a grid file or a parameter profile may hold, with its type, its default and what it does. "
        "The same checks run before any work starts (`effalign.validate`): an unknown key or a value of the wrong "
        "type stops with one line naming the file and the key, e.g. "
        "`effalign: error: my.yaml: common.tracks.hh.data.pool_sise: unknown key(s) …`. Numbers written as text "
        "(`5e-4`) are read as numbers.",
        "",
        "## Grid files",
        "",
        "`python -m effalign run --grid FILE` runs every sampler × budget × seed of a grid, storing one record per "
        "run under its run key, a hash of everything that determines the result, including content fingerprints "
        "of the data files (or hub id and revision) and of the model's weights; `save_model`, `report_to`, "
        "`logging_dir`, `store` and the labels are not part of it.",
        "",
        "```yaml",
        GRID_EXAMPLE.rstrip(),
        "```",
        "",
        *_table(GRID_DOCS, grid_types, GRID_DEFAULTS),
        "",
        "### `data`",
        "",
        f"Aliases: {', '.join(f'`{a}`' for a in sorted(ALIASES))}.",
        "",
        *_table(DATA_DOCS, DATA_TYPES, DATA_DEFAULTS),
        "",
        "### `train`",
        "",
        "The fields of `effalign.train.DPOTrainConfig`.",
        "",
        *_table(TRAIN_DOCS, train_hints, train_defaults),
        "",
        "### `eval`",
        "",
        *_table(EVAL_DOCS, {k: type(v) for k, v in DEFAULT_EVAL.items()}, {k: _yaml(v) for k, v in DEFAULT_EVAL.items()}),
        "",
        "## Profiles",
        "",
        "`python -m effalign book --profile NAME` executes every notebook with a profile: `default`, `smoke` and "
        "`paper` live in `params/`; any other `.yaml` file is a profile of your own, merged over `default` (or its "
        "`base`), which holds only what changes. Its runs go to its own store, never to the committed `results/`. "
        "`python -m effalign parameters --profile FILE NOTEBOOK` prints one notebook's flat parameters for "
        "papermill's `-f`, which cannot read a profile.",
        "",
        "```yaml",
        PROFILE_EXAMPLE.rstrip(),
        "```",
        "",
        *_table(PROFILE_FILE_DOCS, {"base": str, "common": dict, "notebooks": dict}, {"base": "`default`"}),
        "",
        "### `common`",
        "",
        "Defaults: `params/default.yaml`, which a profile of your own inherits.",
        "",
        *_table(PROFILE_DOCS, PROFILE_TYPES, common_defaults),
        "",
        "### A track (`common.tracks.<name>`)",
        "",
        *_table(TRACK_DOCS, TRACK_TYPES, {}),
        "",
        "### `common.design`",
        "",
        "The pre-registered design (`effalign.design`): every track runs every grid (unless the grid names its `tracks`), each with the training arm "
        "it names from the track's `arms`; `python -c \"from effalign.design import export_design; "
        "export_design('default', 'grids')\"` writes them as grid files, primary first. The verdict rules' values "
        "come from here (`effalign.design.analysis_plan`).",
        "",
        *_table(DESIGN_DOCS, DESIGN_TYPES, {}),
        "",
        "#### `common.design.primary`",
        "",
        *_table(DESIGN_PRIMARY_DOCS, DESIGN_PRIMARY_TYPES, DESIGN_PRIMARY_DEFAULTS),
        "",
        "#### `common.design.secondary`",
        "",
        *_table(DESIGN_SECONDARY_DOCS, DESIGN_SECONDARY_TYPES, DESIGN_SECONDARY_DEFAULTS),
        "",
        "#### A grid (`common.design.grids.<name>`)",
        "",
        *_table(DESIGN_GRID_DOCS, DESIGN_GRID_TYPES, {}),
        "",
        "### `common.analysis`",
        "",
        "The fields of `effalign.verdicts.AnalysisPlan` (the rules: `book/methods.md`). With a `design`, the design "
        "fixes every value but `level` and `n_sim`, and repeating one here is an error.",
        "",
        *_table(ANALYSIS_DOCS, analysis_hints, analysis_defaults),
        "",
    ]
    return "\n".join(lines)


def write_reference(root: Path | None = None) -> Path:
    """Write :func:`reference_markdown` to ``book/reference.md``."""
    from .data import repo_dir

    root = root or repo_dir()
    path = root / "book" / "reference.md"
    path.write_text(reference_markdown(root), encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover
    print(write_reference())
