"""Reader-facing views for chapters 01 and 04: readable example pairs, computed notes on what a
chapter's runs are, a note on negative KL estimates, and the cost table in readable units.

- :func:`example_pairs`: preference pairs of several selections as stacked, wrapped text blocks
  (prompt, chosen, rejected), optionally folded behind a content note (an HTML display object
  with a plain-text fallback);
- :func:`larger_run_statements`: what the larger-run chapter shows on this device, and what a GPU
  run of the profile would add (computed from the profile's ``gpu_dpo`` block and the records);
- :func:`loss_statements`: how far each run's smoothed training loss fell, against the step-to-step noise;
- :func:`kl_statements`: why a KL estimate below zero appears, and which runs it concerns;
- :func:`cost_view`: the cost table (:func:`effalign.tables.cost_table`) with units in the
  column names and numbers without scientific notation.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Examples", "cost_view", "example_pairs", "kl_statements", "larger_run_statements", "loss_statements",
           "significant"]


def significant(x: Any, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits, thousands separators and no scientific notation
    ("—" when undefined)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    x = float(x)
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
    return f"{round(x, decimals):,.{decimals}f}"


def _clip(text: str, limit: int) -> str:
    text = str(text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class Examples:
    """Stacked text blocks of example pairs; shown as HTML in notebooks and the book."""

    def __init__(self, title: str, blocks: list[dict[str, Any]], *, folded: str | None = None) -> None:
        self.title = title
        self.blocks = blocks
        self.folded = folded

    def __repr__(self) -> str:
        lines = [self.title]
        for b in self.blocks:
            lines.append(f"\n== {b['heading']}" + (f" ({b['detail']})" if b["detail"] else ""))
            for part, text in b["parts"]:
                lines.append(f"-- {part}:\n{text}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colours = ["#0072B2", "#E69F00", "#009E73", "#CC79A7"]
        body = [f'<p style="margin:0.4em 0"><strong>{html.escape(self.title)}</strong></p>']
        for b in self.blocks:
            colour = colours[b["group"] % len(colours)]
            parts = "".join(
                f'<div style="margin:0.25em 0 0.5em 0"><span style="font-size:0.85em;color:#555">{html.escape(part)}'
                f'</span><div style="white-space:pre-wrap;overflow-wrap:anywhere">{html.escape(text)}</div></div>'
                for part, text in b["parts"])
            detail = f' <span style="color:#555">({html.escape(b["detail"])})</span>' if b["detail"] else ""
            body.append(f'<div style="border-left:4px solid {colour};padding:0.2em 0 0.1em 0.8em;margin:0.6em 0">'
                        f'<p style="margin:0 0 0.3em 0"><strong>{html.escape(b["heading"])}</strong>{detail}</p>'
                        f'{parts}</div>')
        inner = "".join(body)
        if self.folded:
            return (f'<details><summary style="cursor:pointer">{html.escape(self.folded)}</summary>'
                    f'{inner}</details>')
        return f"<div>{inner}</div>"


def example_pairs(pool: Sequence[Any], selections: Mapping[str, Sequence[int]], *, k: int = 3,
                  title: str = "Examples", limit: int = 500, sampler: Any = None,
                  folded: str | None = None) -> Examples:
    """The first ``k`` pairs of each selection (name -> pool indices), one block per pair with its
    prompt, chosen and rejected text stacked and clipped at ``limit`` characters; with a fitted
    ISA ``sampler``, each block names the pair's mixture component and score. ``folded``: the
    line a reader clicks to unfold the examples (a content note), or None to show them."""
    blocks = []
    for group, (name, idx) in enumerate(selections.items()):
        for j, i in enumerate(list(idx)[:k]):
            pair = pool[int(i)]
            detail = ""
            if sampler is not None and getattr(sampler, "scores_", None) is not None:
                detail = (f"mixture component {int(sampler.labels_[int(i)])}, "
                          f"{getattr(sampler, 'score', 'score')} {significant(sampler.scores_[int(i)])}")
            blocks.append({"group": group, "heading": f"{name}, pair {j + 1} of {min(k, len(idx))}", "detail": detail,
                           "parts": [("prompt", _clip(pair.prompt_text, limit)),
                                     ("chosen response", _clip(pair.chosen_text, limit)),
                                     ("rejected response", _clip(pair.rejected_text, limit))]})
    return Examples(title, blocks, folded=folded)


def _n_train(records: Sequence[Mapping[str, Any]], sampler: str) -> int | None:
    for rec in records:
        if rec["spec"]["sampler"] == sampler:
            n = (rec.get("metrics") or {}).get("n_train")
            return None if n is None else int(n)
    return None


def _training(train: Mapping[str, Any]) -> str:
    kind = "LoRA adapters" if train.get("lora") else "full fine-tuning"
    lr = train.get("learning_rate")
    parts = [kind, f"{train.get('epochs', 1)} epoch(s)"]
    if lr is not None:
        import numpy as np

        parts.append(f"learning rate {np.format_float_positional(float(lr), trim='-')}")
    if train.get("batch_size"):
        parts.append(f"batch {train['batch_size']}")
    return ", ".join(parts)


def larger_run_statements(gpu_dpo: Mapping[str, Any], train: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                          device: Any, *, gpu_pool: int | None = None) -> list[str]:
    """What the chapter's runs are, honestly: on a GPU the profile's larger comparison
    (``gpu_dpo.cuda``); on a CPU the ``gpu_dpo.cpu`` runs, which with a track's own experiment are
    that track's grid runs and not a larger run. Also says what the GPU run adds (``gpu_pool``: the
    number of pairs in the whole pool, when known)."""
    kind = getattr(device, "type", str(device))
    track, fraction = gpu_dpo["track"], gpu_dpo["fraction"]
    cpu, cuda = gpu_dpo.get("cpu") or {}, gpu_dpo.get("cuda") or {}
    gpu_records = [r for r in records if ((r.get("provenance") or {}).get("device") or {}).get("device") == "cuda"]
    n_full, n_isa = _n_train(records, "full"), _n_train(records, "isa")
    sizes = (f"the whole pool ({n_full:,} pairs) and ISA's {fraction:.0%} ({n_isa:,} pairs)"
             if n_full and n_isa else f"the whole pool and ISA's {fraction:.0%}")
    out = []
    if kind == "cuda" or gpu_records:
        out.append(f"These are the larger runs: {sizes} of the {track} track, trained on a GPU with "
                   f"{_training({**train, **(cuda.get('train') or {})})} (`gpu_dpo.cuda`).")
    else:
        same = bool(cpu.get("design")) or (cpu.get("experiment") == f"{track}_subsets"
                                             and not (cpu.get("data") or cpu.get("train")))
        what = (f"the {track} track's own runs from the design's grids (the same runs as in the "
                "previous chapters, at the profile's pool size), not a larger run" if same else
                f"reduced runs sized for a CPU (`gpu_dpo.cpu`)")
        out.append(f"This build ran on a CPU, so the chapter shows {what}: {sizes}, trained with "
                   f"{_training({**train, **(cpu.get('train') or {})})}. The curves, throughput and cost below "
                   "are those of these runs.")
        pool = "the whole pool" + (f" ({gpu_pool:,} pairs)" if gpu_pool else "")
        out.append(f"A GPU run (`gpu_dpo.cuda`) trains {cuda.get('model', 'the model')} on {pool} against ISA's "
                   f"{fraction:.0%} of it with {_training({**train, **(cuda.get('train') or {})})}: a comparison "
                   "at a size where the saving in device-hours matters, and a check that the subset's result "
                   "holds beyond the small CPU pool. No GPU record is stored yet.")
    return out


def loss_statements(curves: Any, span: int = 10) -> list[str]:
    """Per run: the exponential moving average (``span`` steps, as in
    :func:`effalign.plots.plot_loss_smoothed`) of the training loss at the first and last step,
    and the standard deviation of the single steps around it."""
    import numpy as np

    from .plots import ema

    if curves is None or len(curves) == 0:
        return ["No training curves are stored for these runs."]
    out = []
    for (label, seed), run in curves.groupby(["label", "seed"], sort=False):
        loss = run.sort_values("step")["loss"].to_numpy(dtype=float)
        smooth = ema(loss, span)
        noise = float(np.std(loss - smooth, ddof=1)) if loss.size > 1 else float("nan")
        change = smooth[-1] - smooth[0]
        verb = "fell" if change < 0 else "rose"
        name = label if curves["seed"].nunique() == 1 else f"{label}, seed {seed}"
        out.append(f"{name}: over {loss.size} steps the moving average {verb} from {significant(smooth[0])} to "
                   f"{significant(smooth[-1])} nats ({significant(abs(change))}), while single steps scatter "
                   f"around it with a standard deviation of {significant(noise)} nats.")
    return out


def kl_statements(records: Sequence[Mapping[str, Any]], metric: str = "gen_kl") -> list[str]:
    """A note on KL estimates below zero (empty when there are none). Records with
    ``gen_kl_samples`` use the exact per-token KL along sampled responses, which cannot be
    negative; older records hold the mean log-ratio of the sampled tokens, which can."""
    from .tables import sampler_label

    negative = [r for r in records if ((r.get("metrics") or {}).get(metric) or 0.0) < 0]
    if not negative:
        return []
    labels = ", ".join(f"{sampler_label(r['spec']['sampler'], r['spec'].get('sampler_params'))} "
                       f"({significant(r['metrics'][metric])} nats)" for r in negative)
    exact = [r for r in negative if "gen_kl_samples" in (r.get("metrics") or {})]
    out = [f"A KL divergence is never negative, yet the estimate is below zero for {labels}. These records "
           "estimate KL(policy ‖ reference) by the mean of log π(y|x) − log π_ref(y|x) over responses y "
           "sampled from the policy: unbiased, but a noisy difference of two log-probabilities that falls "
           "below zero when the policy has barely moved from the reference. Read such a value as "
           "\"indistinguishable from zero\". Runs recorded with the exact per-token KL along the sampled "
           "responses (records with `gen_kl_samples`) cannot be negative."]
    if exact:
        out.append(f"{len(exact)} of these records claim the exact estimator: that is a defect to report.")
    return out


#: cost_table columns shown to readers: (column, header with unit, formatter)
_COST_COLUMNS = (
    ("label", "run", str),
    ("n_train", "pairs", lambda v: significant(v, 1)),
    ("device_name", "device", str),
    ("run_s", "whole run (s)", significant),
    ("train_s", "training (s)", significant),
    ("device_hours", "device-hours (h)", significant),
    ("tokens", "training tokens", lambda v: significant(v, 1)),
    ("tokens_per_s", "tokens/s", significant),
    ("peak_gib", "peak memory (GiB)", significant),
)


def cost_view(cost: Any) -> Any:
    """The cost table with units in the headers and readable numbers (no row index; the device
    column only when the runs come from more than one device)."""
    import pandas as pd

    if cost is None or len(cost) == 0:
        return pd.DataFrame(columns=[h for _, h, _ in _COST_COLUMNS])
    skip = {"device_name"} if cost["device_name"].nunique() <= 1 else set()
    data = {header: [fmt(v) for v in cost[col]] for col, header, fmt in _COST_COLUMNS if col in cost and col not in skip}
    return pd.DataFrame(data).style.hide(axis="index")
