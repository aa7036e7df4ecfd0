"""Reader-facing views: readable example pairs, computed notes on what a chapter's runs are, a note on
negative KL estimates, and tables that fit a page with formatted numbers (:func:`effalign.tables.fmt`).

- :func:`example_pairs`: preference pairs of several selections as stacked, wrapped text blocks
  (prompt, chosen, rejected), optionally folded behind a content note (an HTML display object
  with a plain-text fallback);
- :func:`larger_run_statements`: what the larger-run chapter shows on this device, and what a GPU
  run of the profile would add (computed from the profile's ``gpu_dpo`` block and the records);
- :func:`loss_statements`: how far each run's smoothed training loss fell, against the step-to-step noise;
- :func:`kl_statements`: why a KL estimate below zero appears, and which runs it concerns;
- :func:`cost_view`: the cost table (:func:`effalign.tables.cost_table`) with units in the
  column names and numbers without scientific notation;
- :func:`reader_table` and the tables built on it: :func:`size_means_view`, :func:`fit_view`,
  :func:`gains_view` (scaling), :func:`metrics_view`, :func:`paired_view` (samplers),
  :func:`headline_view` (the claims), :func:`variance_view` (the design's variance components, one
  column per track), :func:`missing_view` (the cells a store lacks), :func:`rules_view` (the verdict
  rules): no row index, a group shown once, readers' column names, intervals on one line
  (:func:`interval_text`, :func:`mean_interval_text`), constant columns moved into the caption;
- :func:`sampler_statements`, :func:`ablation_statements`: the samplers and ISA variants a profile
  runs (:func:`profile_samplers`, :func:`profile_ablation`: from its design, or its legacy keys), in
  words, computed from its parameters; :func:`exercise_cost`: how long an exercise that
  trains new runs takes, from the stored runs like them;
- :func:`scaling_exercises`, :func:`sampler_exercises`, :func:`findings_exercises`: each chapter's
  "What to try", with exact commands (:func:`exercise_command`) whose values come from the build's
  parameters, so that the exercises meant to read stored runs find them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .tables import budget_label, fmt, format_frame

__all__ = ["Examples", "Exercises", "ablation_statements", "arm_labels", "cost_view", "example_pairs",
           "exercise_command", "exercise_cost", "findings_exercises", "fit_view", "gains_view",
           "headline_view", "interval_text", "isa_defaults", "kl_statements", "larger_run_statements",
           "loss_statements", "mean_interval_text", "metrics_view", "missing_view", "paired_view",
           "profile_ablation", "profile_samplers", "reader_frame", "reader_table", "rules_view",
           "sampler_exercises", "sampler_statements", "scaling_exercises", "selector_view",
           "size_means_view", "variance_table", "variance_view"]


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
                          f"{getattr(sampler, 'score', 'score')} {fmt(sampler.scores_[int(i)], 'sig')}")
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
    budget = train.get("budget", "epochs")
    if budget == "converge":
        every = f" (checked every {train['val_every']} steps)" if train.get("val_every") else ""
        length = f"up to {train.get('max_steps')} optimiser steps, stopped early on the validation loss{every}"
    elif budget == "steps":
        length = f"{train.get('max_steps')} optimiser steps"
    else:
        length = f"{train.get('epochs', 1)} epoch(s)"
    parts = [kind, length]
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
        # the stored runs' own settings (their spec), which include the design arm's budget
        ran = next((r["spec"].get("train") for r in records if r["spec"].get("train")), None)
        out.append(f"This build ran on a CPU, so the chapter shows {what}: {sizes}, trained with "
                   f"{_training(ran or {**train, **(cpu.get('train') or {})})}. The curves, throughput and cost below "
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
        out.append(f"{name}: over {loss.size} steps the moving average {verb} from {fmt(smooth[0], 'sig')} to "
                   f"{fmt(smooth[-1], 'sig')} nats ({'down' if change < 0 else 'up'} {fmt(abs(change), 'sig')}), while single steps scatter "
                   f"around it with a standard deviation of {fmt(noise, 'sig')} nats.")
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
                       f"({fmt(r['metrics'][metric], 'sig')} nats)" for r in negative)
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
    ("n_train", "pairs", lambda v: fmt(v, "sig", 1)),
    ("device_name", "device", str),
    ("run_s", "whole run (s)", lambda v: fmt(v, "sig")),
    ("train_s", "training (s)", lambda v: fmt(v, "sig")),
    ("device_hours", "device-hours (h)", lambda v: fmt(v, "sig")),
    ("tokens", "training tokens", lambda v: fmt(v, "sig", 1)),
    ("tokens_per_s", "tokens/s", lambda v: fmt(v, "sig")),
    ("peak_gib", "peak memory (GiB)", lambda v: fmt(v, "sig")),
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


# ----------------------------------------------------------------------------- reader tables (chapters 02, 03, 05)

NBSP = "\u00a0"


def interval_text(lo: Any, hi: Any, style: str = "num") -> str:
    """``[lo, hi]`` that never breaks across lines ("—" when either end is undefined)."""
    a, b = fmt(lo, style), fmt(hi, style)
    return "—" if "—" in (a, b) else f"[{a},{NBSP}{b}]"


def mean_interval_text(mean: Any, lo: Any, hi: Any) -> str:
    """``mean ± h`` when the interval is symmetric about the mean (t intervals), else ``mean [lo, hi]``;
    the mean alone without an interval. One line: the parts are joined by non-breaking spaces."""
    import numpy as np

    m = fmt(mean)
    if m == "—" or not (np.isfinite(lo) and np.isfinite(hi)):
        return m
    half = (float(hi) - float(lo)) / 2
    if abs(float(mean)) < 1e-3 <= half:  # no more digits than the interval carries
        m = fmt(round(float(mean), 3) + 0.0)
    if math.isclose(float(mean), float(lo) + half, rel_tol=1e-6, abs_tol=1e-9):
        return f"{m}{NBSP}±{NBSP}{fmt(half)}"
    return f"{m}{NBSP}{interval_text(lo, hi)}"


def reader_table(frame: Any, *, group: Sequence[str] = (), wrap: Sequence[str] = (), text: Sequence[str] = (),
                 caption: str | None = None) -> Any:
    """A table of already formatted cells for readers: no row index, the ``group`` columns shown only
    where their value changes, every column on one line except the ``wrap`` columns (text that may
    break: notes, names), numbers right-aligned and text (``group``, ``wrap``, ``text`` columns)
    left-aligned, and an optional caption above. Returns a pandas Styler (HTML in the book)."""
    import pandas as pd

    out = frame.reset_index(drop=True).copy()
    for col in group:
        if col in out:
            values = out[col].astype(str)
            out[col] = values.where(values != values.shift(), "")
    out = out.fillna("—")
    styles = [{"selector": "th", "props": "text-align: left; vertical-align: bottom;"},
              {"selector": "td", "props": "white-space: nowrap; text-align: right; vertical-align: top;"},
              {"selector": "td.text", "props": "text-align: left;"},
              {"selector": "td.wrap", "props": "white-space: normal; min-width: 8em;"},
              {"selector": "caption", "props": "caption-side: top; text-align: left; padding-bottom: 0.3em;"}]
    kinds = {c: ("text wrap" if c in wrap else "text" if c in group or c in text else "") for c in out.columns}
    classes = pd.DataFrame({c: [kinds[c]] * len(out) for c in out.columns}, index=out.index)
    styler = (out.style.hide(axis="index").set_table_styles(styles).set_td_classes(classes)
              .set_table_attributes('class="dataframe reader-table"'))
    return styler.set_caption(caption) if caption else styler


def reader_frame(frame: Any, *, index: Sequence[str] = (), styles: Mapping[str, str] | None = None,
                 caption: str | None = None) -> Any:
    """A frame of numbers for readers: its row labels become the leading text columns ``index`` (the
    first shown once per group when there are several), every number through :func:`effalign.tables.fmt`
    in the style its column name implies (:func:`effalign.tables.format_frame`; ``styles`` overrides),
    no row index."""
    out = frame.infer_objects()
    if index:
        out = out.rename_axis(list(index)).reset_index()
    out = format_frame(out, styles)
    return reader_table(out, group=list(index[:1]) if len(index) > 1 else [], text=list(index), caption=caption)


def _constant(frame: Any, column: str) -> Any:
    """The value of ``column`` when it is the same in every row, else None."""
    values = frame[column].dropna().unique() if column in frame else []
    return values[0] if len(values) == 1 else None


def size_means_view(summaries: Mapping[str, tuple[str, Any]], *, level: float = 0.95) -> Any:
    """Per track (or track and arm): the mean of its metric at each subset size with the t interval
    over seeds. ``summaries``: label -> (metric, :func:`effalign.tables.summarize` by ``n_train``)."""
    import pandas as pd

    from .plots import metric_name

    rows = [{"track": label, "metric": metric_name(metric), "pairs": fmt(r["n_train"], "int"),
             "share of pool": fmt(r["fraction"], "pct"), "seeds": fmt(r["n"], "int"), "mean": fmt(r["mean"]),
             f"{level:.0%} interval": interval_text(r["lo"], r["hi"])}
            for label, (metric, s) in summaries.items() for _, r in s.iterrows()]
    frame = pd.DataFrame(rows)
    seeds = _constant(frame, "seeds")
    caption = f"Mean over {seeds} seeds per size, with the {level:.0%} t interval." if seeds else None
    if seeds:
        frame = frame.drop(columns="seeds")
    return reader_table(frame, group=["track", "metric"], caption=caption)


#: The curve forms of :mod:`effalign.scaling` in words.
FORM_NAMES = {"exp_plateau": "exponential plateau", "power_law": "saturating power law", "log_law": "logarithmic law",
              "linear": "straight line", "constant": "constant"}


def fit_view(outcomes: Mapping[str, Any], *, level: float = 0.95) -> Any:
    """The descriptive fits (rule F) of several tracks or arms (label -> :class:`~effalign.findings.ScalingOutcome`):
    per form its standing (favoured, identified or not), Akaike weight, lack-of-fit p, plateau with
    its bootstrap interval, n95 (pairs) and the notes in full."""
    import pandas as pd

    rows = []
    for label, outcome in outcomes.items():
        table = outcome.table()
        if table.empty:
            rows.append({"track": label, "form": "—", "standing": "no fit", "Akaike weight": "—", "lack-of-fit p": "—",
                         "plateau": "—", "n95 (pairs)": "—", "note": outcome.reason})
            continue
        for form, r in table.iterrows():
            standing = "favoured" if r["favoured"] else ("identified" if r["identified"] else "not identified")
            plateau = fmt(r.get("plateau"))
            if plateau != "—" and interval_text(r.get("a_lo"), r.get("a_hi")) != "—":
                plateau += " " + interval_text(r.get("a_lo"), r.get("a_hi"))
            rows.append({"track": label, "form": FORM_NAMES.get(form, form), "standing": standing,
                         "Akaike weight": fmt(r["akaike_weight"], "p"), "lack-of-fit p": fmt(r.get("fit_p"), "p"),
                         "plateau": plateau, "n95 (pairs)": fmt(r.get("n95"), "int"), "note": r.get("note") or ""})
    caption = (f"Plateau: the fitted level with its {level:.0%} bootstrap interval; n95: the pairs at which the form "
               "reaches 95% of the whole pool's gain over the untrained policy.")
    return reader_table(pd.DataFrame(rows), group=["track"], wrap=["track", "form", "plateau", "note"],
                        text=["standing"], caption=caption)


def gains_view(saturations: Mapping[str, Mapping[str, Any]], *, level: float = 0.95) -> Any:
    """Rule G per track (label -> :func:`effalign.findings.saturation`): each size's gain over the
    untrained policy with its interval."""
    import pandas as pd

    rows = [{"track": label, "share of pool": fmt(r["fraction"], "pct"), "pairs": fmt(r["n_train"], "int"),
             "gain": fmt(r["gain"], "signed"), f"{level:.0%} interval": interval_text(r["lo"], r["hi"], "signed"),
             "seeds": fmt(r["seeds"], "int")}
            for label, sat in saturations.items() for _, r in sat["gains"].iterrows()]
    frame = pd.DataFrame(rows, columns=["track", "share of pool", "pairs", "gain", f"{level:.0%} interval", "seeds"])
    seeds = _constant(frame, "seeds")
    if seeds:
        frame = frame.drop(columns="seeds")
    caption = "Gain: the metric minus the untrained policy's, paired by seed" + (f", {seeds} seeds." if seeds else ".")
    return reader_table(frame, group=["track"], caption=caption)


def metrics_view(frame: Any, metrics: Sequence[str], *, level: float = 0.95, caption: str | None = None) -> Any:
    """Per sampler and budget of one track: each metric as ``mean ± half-width`` of its t interval
    over seeds (one column per metric, named for readers)."""
    import pandas as pd

    from .plots import metric_name
    from .tables import summarize

    cols: dict[str, list[str]] = {}
    keys = None
    for m in metrics:
        if frame is None or m not in frame:
            continue
        s = summarize(frame, m, level=level)
        s = s.assign(_isa=s["label"] != "isa").sort_values(["fraction", "_isa", "label"])
        if keys is None:
            keys = s[["label", "fraction", "n_train", "n"]].reset_index(drop=True)
        cols[metric_name(m)] = [mean_interval_text(r["mean"], r["lo"], r["hi"]) for _, r in s.iterrows()]
    if keys is None:
        return reader_table(pd.DataFrame(columns=["sampler", "budget"]), caption=caption)
    out = pd.DataFrame({"budget": [budget_label(f, n) for f, n in zip(keys["fraction"], keys["n_train"])],
                        "sampler": keys["label"], "seeds": [fmt(n, "int") for n in keys["n"]], **cols})
    seeds = _constant(out, "seeds")
    if seeds:
        out = out.drop(columns="seeds")
    note = (f"mean ± half-width of the {level:.0%} t interval over {seeds + ' ' if seeds else ''}seeds; "
            "budget: share of the pool (pairs)")
    if seeds == "1":
        note = "one run each, so no interval over seeds; budget: share of the pool (pairs)"
    return reader_table(out, group=["budget"], text=["sampler"],
                        caption=f"{caption}: {note}" if caption else note[0].upper() + note[1:])


def paired_view(diffs: Mapping[str, Any], *, level: float = 0.95, baseline: str = "random") -> Any:
    """Paired differences (track -> :func:`effalign.tables.paired_differences`): each sampler minus
    ``baseline`` per budget, with the interval, the p-value (the primary contrast marked and
    unadjusted; the others Holm-adjusted) and the minimum detectable effect."""
    import pandas as pd

    rows = []
    for track, d in diffs.items():
        d = d.assign(_isa=d["label"] != "isa").sort_values(["fraction", "_isa", "label"])
        for _, r in d.iterrows():
            primary = r.get("family") == "primary"
            rows.append({"track": track, "budget": budget_label(r["fraction"], r.get("n_train")),
                         "sampler": r["label"] + (" (primary)" if primary else ""), "seeds": fmt(r["n_seeds"], "int"),
                         f"minus {baseline}": fmt(r["mean_diff"], "signed"),
                         f"{level:.0%} interval": interval_text(r["lo"], r["hi"], "signed"),
                         "p (Holm)": fmt(r["p_adj"], "p"), "MDE": fmt(r["mde"]), "method": r.get("method", "")})
    cols = ["track", "budget", "sampler", "seeds", f"minus {baseline}", f"{level:.0%} interval", "p (Holm)", "MDE", "method"]
    frame = pd.DataFrame(rows, columns=cols)
    notes = [f"p (Holm): Holm-adjusted over the family; the primary contrast is tested alone, unadjusted. MDE: the "
             "smallest difference the design detects at the plan's power"]
    for col, what in (("seeds", "seeds"), ("method", "")):
        value = _constant(frame, col)
        if value:
            frame = frame.drop(columns=col)
            notes.append(f"{value} {what}".strip())
    if len(diffs) == 1:
        frame = frame.drop(columns="track")
    return reader_table(frame, group=["track", "budget"], wrap=["sampler"], caption="; ".join(notes) + ".")


#: The columns of :func:`selector_view` by part: (column of :func:`effalign.findings.selector_frame`, header, style).
_SELECTOR_PARTS: dict[str, list[tuple[str, str, str]]] = {
    "benefit": [("runs", "runs", "int"), ("mean", "mean", "num"), ("diff", "minus {baseline}", "signed"),
                ("lo", "{level} interval", "interval"), ("p", "p", "p")],
    "cost": [("select_s", "selection (s)", "num"), ("scoring_s", "of which scoring (s)", "num"),
             ("train_s", "training (s)", "num"), ("total_s", "in all (s)", "num"),
             ("total_tokens", "tokens", "int"), ("compute vs whole pool", "seconds vs whole pool", "num")],
    "lengths": [("mean", "mean", "num"), ("diff", "minus {baseline}", "signed"),
                ("chosen_chars", "chosen answer (characters)", "num"),
                ("chosen_minus_rejected", "chosen − rejected (characters)", "signed"),
                ("chosen vs pool", "chosen vs its pool", "num")],
}


def selector_view(frames: Mapping[str, Any], part: str, metrics: Mapping[str, str], *, baseline: str = "random",
                  level: float = 0.95) -> Any:
    """One part of the selectors' comparison (track -> :func:`effalign.findings.selector_frame`) for
    readers: ``benefit`` (runs, mean metric, difference to ``baseline`` with its interval and p),
    ``cost`` (mean seconds of selection, scoring, training and in all, tokens, seconds against the
    whole pool's) or ``lengths`` (the mean metric beside the subsets' chosen-answer lengths).
    ``metrics``: track -> metric, named in the caption."""
    import pandas as pd

    from .plots import metric_name

    if part not in _SELECTOR_PARTS:
        raise ValueError(f"part must be one of {', '.join(_SELECTOR_PARTS)}, got {part!r}")
    columns = [(col, header.format(baseline=baseline, level=f"{level:.0%}"), style)
               for col, header, style in _SELECTOR_PARTS[part]]
    rows = []
    for track, frame in frames.items():
        for _, r in frame.iterrows():
            row = {"track": track, "selector": "whole pool" if r["label"] == "full" else r["label"],
                   "budget": budget_label(r["fraction"])}
            for col, header, style in columns:
                row[header] = (interval_text(r["lo"], r["hi"], "signed") if style == "interval"
                               else fmt(r[col], style))
            rows.append(row)
    out = pd.DataFrame(rows, columns=["track", "selector", "budget"] + [h for _, h, _ in columns])
    notes = {"benefit": f"mean: {{metrics}}; minus {baseline}: paired by pool seed; p: the primary contrast "
                        "unadjusted, the others Holm-adjusted",
             "cost": "mean seconds per run (selection includes training a scoring model where the selector has "
                     "one; in all: selection and training, without the evaluation every run shares); tokens: "
                     "scoring and training",
             "lengths": "mean: {metrics}; answer lengths: the mean over each selector's subsets; chosen vs its pool: "
                        "the subset's mean chosen-answer length over its pool's"}[part]
    named = ", ".join(f"{metric_name(m)} ({track})" for track, m in metrics.items() if track in frames)
    if len(frames) == 1:
        out = out.drop(columns="track")
    return reader_table(out, group=["track"], text=["selector", "budget"], caption=notes.format(metrics=named) + ".")


def headline_view(headline: Any, *, level: float = 0.95) -> Any:
    """The claims' table (:func:`effalign.findings.headline_frame`) for readers: per track and claim
    the contrast, estimate, interval, p (TOST for rules P and E, the t-test for S), margin, MDE and
    the verdict."""
    import pandas as pd

    from .plots import metric_name

    rows = [{"track": f"{r['track']} ({metric_name(r['metric'])})", "claim": f"{r['claim']} (rule {r['rule']}): {r['contrast']}",
             "estimate": fmt(r["estimate"], "signed"), f"{level:.0%} interval": interval_text(r["lo"], r["hi"], "signed"),
             "p": fmt(r["p"], "p"), "margin": fmt(r["margin"]), "MDE": fmt(r["mde"]), "seeds": fmt(r["seeds"], "int"),
             "verdict": r["verdict"]}
            for _, r in headline.iterrows()] if headline is not None and len(headline) else []
    frame = pd.DataFrame(rows, columns=["track", "claim", "estimate", f"{level:.0%} interval", "p", "margin", "MDE",
                                        "seeds", "verdict"])
    seeds = _constant(frame, "seeds")
    notes = ["p: two one-sided tests against the margin for rules P and E, the paired t-test for rule S"]
    if seeds:
        frame = frame.drop(columns="seeds")
        notes.append(f"{seeds} seeds each")
    return reader_table(frame, group=["track"], wrap=["track", "claim", "verdict"], caption="; ".join(notes) + ".")


def rules_view(plan: Any, tracks: Sequence[str], source: str = "common.design") -> Any:
    """The verdict rules (:data:`effalign.verdicts.RULES`) as a reader's table, the plan's values
    (:func:`effalign.verdicts.rules_values`) as its caption."""
    from .verdicts import rules_frame, rules_values

    frame = rules_frame().reset_index().rename(columns={"id": "rule", "decision": "verdict"})
    return reader_table(frame[["rule", "claim", "contrast", "test", "verdict"]], text=["rule"],
                        wrap=["claim", "contrast", "test", "verdict"], caption=rules_values(plan, tracks, source))


def missing_view(cells: Any) -> Any:
    """Which cells of a profile's grids the store holds (:func:`effalign.notebook.missing_cells`) for
    readers: per grid and arm, each sampler and subset size with its seeds stored and missing."""
    import pandas as pd

    rows = [{"grid": r["grid"], "arm": r["arm"], "sampler": r["sampler"],
             "pairs": r["pairs"] if isinstance(r["pairs"], str) else fmt(r["pairs"], "int"),
             "seeds": fmt(r["runs"], "int"), "stored": fmt(r["stored"], "int"), "missing seeds": r["missing"] or "none"}
            for _, r in cells.iterrows()] if cells is not None else []
    frame = pd.DataFrame(rows, columns=["grid", "arm", "sampler", "pairs", "seeds", "stored", "missing seeds"])
    return reader_table(frame, group=["grid", "arm"], text=["sampler", "missing seeds"])


#: Rows of :func:`variance_table` counted in whole numbers.
_COUNT_ROWS = ("runs", "items per run", "paired seeds", "pilot seeds", "seeds (pilot rule)")


def variance_table(frame: Any) -> Any:
    """The design's variance components (:func:`effalign.design.variance_frame`) for readers: one row per
    quantity, one column per track (the frame has one row per track and many columns), numbers formatted."""
    import pandas as pd

    from .plots import metric_name

    if frame is None or not len(frame):
        return pd.DataFrame(columns=["quantity"])
    columns = [c for c in frame.columns if c != "track"]
    out = {"quantity": columns}
    for _, r in frame.iterrows():
        out[str(r["track"])] = [metric_name(r[c]) if c == "metric" else fmt(r[c], "int" if c in _COUNT_ROWS else "num")
                                for c in columns]
    return pd.DataFrame(out)


def variance_view(frame: Any, caption: str | None = None) -> Any:
    """:func:`variance_table` as a reader's table."""
    return reader_table(variance_table(frame), wrap=["quantity"], caption=caption)


# ----------------------------------------------------------------------------- what a chapter runs, in words

#: What each sampler picks, in a few words (earlier names of renamed samplers included).
SAMPLER_DESCRIPTIONS = {
    "random": "a uniform draw",
    "isa": "our reading of the paper's information-theoretic sampler (mixture surprisal per component)",
    "kcenter": "a greedy farthest-first coreset on ISA's features (diversity)",
    "cluster": "k-means with one cluster per pair of the budget, the pair nearest each centroid",
    "longest": "the longest chosen responses (Zhao et al. 2024)",
    "ref_margin_low": "the smallest log-probability margin of chosen over rejected under the untrained reference",
    "ref_margin_high": "the largest log-probability margin of chosen over rejected under the untrained reference",
    "margin_low": "the smallest log-probability margin of chosen over rejected under the untrained reference "
                  "(the earlier name of ref_margin_low)",
    "margin_high": "the largest log-probability margin of chosen over rejected under the untrained reference "
                   "(the earlier name of ref_margin_high)",
    "difficulty": "the smallest implicit-reward gap of a DPO model trained on a disjoint part of the pool "
                  "(Qi et al. 2025)",
}

#: ISA's settings in words (:class:`effalign.samplers.ISASampler`).
ISA_SETTINGS = {
    "score": "the score ISA ranks pairs by",
    "n_components": "the number of mixture components",
    "dim": "the PCA dimension of the features",
    "temperature": "the temperature of the Gumbel-top-k draw (standard deviations; 0: plain top-k)",
    "covariance_type": "the mixture's covariance type",
    "stratify": "whether the budget is split over the components",
    "standardize": "whether the features are standardised",
    "n_init": "the mixture's restarts",
}


def _sampler_name(entry: Any) -> str:
    if isinstance(entry, Mapping):
        from .tables import sampler_label

        return sampler_label(entry.get("name", "?"), entry.get("params"))
    return str(entry)


def sampler_statements(samplers: Sequence[Any]) -> list[str]:
    """One line per sampler of the profile (:func:`profile_samplers`): its name and what it picks."""
    out = []
    for entry in samplers:
        name = _sampler_name(entry)
        base = name.split(" (", 1)[0]
        out.append(f"`{name}`: {SAMPLER_DESCRIPTIONS.get(base, 'a sampler of effalign.samplers')}.")
    return out


def profile_samplers(common: Mapping[str, Any]) -> list[Any]:
    """The samplers a profile (its ``common``) compares at the primary budget: with a design, the
    primary grid's baseline and sampler, then the ``samplers`` grid's; otherwise the ``samplers`` list."""
    design = common.get("design")
    if not design:
        return list(common.get("samplers") or [])
    primary = design["primary"]
    entries = [primary["baseline"], primary["sampler"], *((design.get("grids") or {}).get("samplers") or {}).get("samplers", [])]
    out: list[Any] = []
    for entry in entries:
        if entry not in out:
            out.append(entry)
    return out


def profile_ablation(common: Mapping[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """The ISA variants a profile runs and their budget (share of the pool): with a design, the
    ``params`` of the ``ablation`` grid's sampler entries and its first fraction (none: no variants at
    the primary fraction); otherwise the ``ablation`` list and ``ablation_budget``."""
    design = common.get("design")
    if not design:
        return [dict(v) for v in common.get("ablation") or []], float(common.get("ablation_budget") or 0.1)
    grid = (design.get("grids") or {}).get("ablation")
    if not grid:
        return [], float(design["primary"]["fraction"])
    variants = [dict(e.get("params") or {}) for e in grid["samplers"] if isinstance(e, Mapping)]
    return variants, float(grid["fractions"][0])


def isa_defaults() -> dict[str, Any]:
    """The default ISA's constructor settings."""
    import inspect

    from .samplers import ISASampler

    return {k: p.default for k, p in inspect.signature(ISASampler.__init__).parameters.items()
            if k != "self" and p.default is not inspect.Parameter.empty}


def ablation_statements(variants: Sequence[Mapping[str, Any]], budget: float) -> list[str]:
    """What the profile's ISA ablation runs, computed from its variants (:func:`profile_ablation`): each
    variant with the setting it changes and the default it departs from."""
    if not variants:
        return ["This profile runs no ISA ablation (no `ablation` variants in its parameters)."]
    defaults = isa_defaults()
    changed = sorted({k for v in variants for k in v})
    out = [f"This profile runs {len(variants)} variant{'s' if len(variants) != 1 else ''} of ISA at "
           f"{fmt(budget, 'pct')} of the pool, changing "
           + ", ".join(f"{ISA_SETTINGS.get(k, k)} (`{k}`, default {defaults.get(k, '?')!r})" for k in changed)
           + "; random and the default ISA are shown for reference."]
    for v in variants:
        from .tables import sampler_label

        settings = ", ".join(f"`{k}` = {val!r} instead of {defaults.get(k, '?')!r}" for k, val in v.items())
        out.append(f"`{sampler_label('isa', v)}`: {settings}.")
    return out


def arm_labels(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Reader labels of (track, arm) keys: the track alone when it has one training arm, else
    ``"track, arm arm"``."""
    tracks = [t for t, _ in keys]
    return {(t, a): t if tracks.count(t) == 1 else f"{t}, {a} arm" for t, a in keys}


def exercise_cost(similar: Any, n_runs: int, what: str) -> str:
    """How long an exercise that trains ``n_runs`` new runs takes, from the stored runs most like them
    (``similar``: a :func:`effalign.tables.runs_frame`; their whole-run seconds and device)."""
    import numpy as np

    seconds = similar["seconds"].to_numpy(dtype=float) if similar is not None and "seconds" in similar else np.array([])
    seconds = seconds[np.isfinite(seconds)]
    if not n_runs:
        return f"{what} needs no new run: it reads the stored ones."
    if not seconds.size:
        return f"{what} trains {n_runs} new run{'s' if n_runs != 1 else ''}; no similar run is stored to say how long."
    devices = sorted(set(similar["device_name"])) if "device_name" in similar else []
    total = n_runs * float(seconds.mean()) / 60
    length = f"about {fmt(total, 'int')} minutes" if total >= 1.5 else "a minute or less"
    return (f"{what} trains {n_runs} new run{'s' if n_runs != 1 else ''}: the stored runs most like them took "
            f"{fmt(seconds.mean(), 'int')} s each (whole run: selection, training and evaluation"
            + (f", on {', '.join(devices)}" if devices else "") + f"), so {length} in all on the same machine.")


# ----------------------------------------------------------------------------- exercises ("What to try")


def exercise_command(notebook: str, params: Mapping[str, Any] | None = None,
                     yaml_params: Mapping[str, Any] | None = None) -> str:
    """The exact command of an exercise: ``python -m effalign book --only NOTEBOOK`` with ``-p NAME VALUE``
    (a dotted name changes one entry of a mapping; a value with spaces is quoted for the shell) and
    ``-y "NAME: VALUE"`` (YAML flow style)."""
    import shlex

    import yaml

    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()

    parts = [f"python -m effalign book --only {notebook}"]
    parts += [f"-p {k} {shlex.quote(flow(v))}" for k, v in (params or {}).items()]
    parts += [f'-y "{k}: {flow(v)}"' for k, v in (yaml_params or {}).items()]
    return " ".join(parts)


class Exercises:
    """A numbered list of exercises (title, command, question), shown as Markdown."""

    def __init__(self, items: Sequence[tuple[str, str, str]], notes: Sequence[str] = ()) -> None:
        self.items = list(items)
        self.notes = list(notes)

    def _repr_markdown_(self) -> str:
        lines = [f"{i}. **{title}** `{command}`. {question}" for i, (title, command, question) in
                 enumerate(self.items, 1)]
        return "\n".join(lines) + ("\n\n" + "\n".join(f"- {n}" for n in self.notes) if self.notes else "")

    def __repr__(self) -> str:
        return self._repr_markdown_()


def _reading(n: int) -> str:
    """Which of the first ``n`` exercises read stored runs only."""
    if n <= 0:
        return ""
    who = {1: "Exercise 1 reads the stored runs and trains", 2: "Exercises 1 and 2 read the stored runs and train"
           }.get(n, f"Exercises 1 to {n} read the stored runs and train")
    return f"{who} nothing (a minute). "


def _try_value(value: float, factor: float = 4.0) -> float:
    """``factor`` times a margin, to two significant digits."""
    return float(f"{value * factor:.2g}")


def _nearest(options: Sequence[float], primary: float) -> float | None:
    others = [b for b in options if not math.isclose(b, primary, abs_tol=1e-9)]
    return min(others, key=lambda b: abs(b - primary)) if others else None


# Where the parameters an exercise changes live: in ``common.design`` (a profile with a design) or in the
# legacy keys (``analysis``, ``budgets``, ``scaling_fractions``, ``scaling_seeds``, ``ablation``). Each helper
# returns ``(params, yaml_params)`` for :func:`exercise_command`.

Override = tuple[dict[str, Any], dict[str, Any]]


def _per_track(name: str, current: Any, track: str, value: float, others: Mapping[str, float]) -> Override:
    """A per-track value: one dotted ``-p`` entry when the profile holds a mapping, else a ``-y`` mapping with
    every track (``others``: their current values)."""
    if isinstance(current, Mapping):
        return {f"{name}.{track}": value}, {}
    return {}, {name: {t: (value if t == track else v) for t, v in others.items()}}


def _plateau_override(common: Mapping[str, Any], plan: Any, track: str, delta: float) -> Override:
    design = common.get("design")
    name = "design.secondary.plateau_delta" if design else "analysis.plateau_delta"
    current = ((design.get("secondary") or {}) if design else (common.get("analysis") or {})).get("plateau_delta")
    return _per_track(name, current, track, delta, {t: plan.delta(t) for t in common["tracks"]})


def _margin_override(common: Mapping[str, Any], plan: Any, track: str, margin: float) -> Override:
    design = common.get("design")
    name = "design.secondary.equivalence_margin" if design else "analysis.equivalence_margin"
    current = ((design.get("secondary") or {}) if design else (common.get("analysis") or {})).get("equivalence_margin")
    return _per_track(name, current, track, margin, {t: plan.margin(t) for t in common["tracks"]})


def _alpha_override(common: Mapping[str, Any], alpha: float) -> Override:
    return ({"design.primary.alpha": alpha} if common.get("design") else {"analysis.alpha": alpha}), {}


def _metric_override(common: Mapping[str, Any], track: str, metric: str) -> Override:
    name = f"tracks.{track}.metric" if common.get("design") else f"analysis.primary_metric.{track}"
    return {name: metric}, {}


def _design_cells(common: Mapping[str, Any], arm: str | None = None) -> dict[tuple[str, float], set[int]]:
    """The design's plain sampler cells (name, fraction) -> seeds of one track's grids (every track has the
    same grids), in ``arm`` when given."""
    from .design import design_grids

    grids = design_grids({"common": common})
    first = next(iter(common["tracks"]))
    cells: dict[tuple[str, float], set[int]] = {}
    for g in grids.values():
        if g["track"] != first or (arm is not None and g["arm"] != arm):
            continue
        for sampler in g["samplers"]:
            if isinstance(sampler, str):
                for f in g["fractions"]:
                    cells.setdefault((sampler, round(float(f), 9)), set()).update(g["seeds"])
    return cells


def _budget_override(common: Mapping[str, Any], plan: Any) -> tuple[float, Override] | None:
    """Another primary budget whose runs are stored with the profile's (the nearest to the primary one),
    with its override; None when the profile has none. With a design: a fraction of the primary arm where
    the design runs both the sampler and the baseline, and the primary seeds cut to the seeds both share."""
    design = common.get("design")
    if not design:
        other = _nearest([float(b) for b in common.get("budgets") or []], plan.primary_budget)
        return None if other is None else (other, ({"analysis.primary_budget": other}, {}))
    cells = _design_cells(common, design["primary"]["arm"])
    shared = {f: cells[(plan.sampler, f)] & cells[(plan.baseline, f)] for (name, f) in cells
              if name == plan.sampler and (plan.baseline, f) in cells and f < 1}
    other = _nearest([f for f, seeds in shared.items() if len(seeds) >= 2], plan.primary_budget)
    if other is None:
        return None
    from .design import seed_list

    params: dict[str, Any] = {"design.primary.fraction": other}
    seeds = sorted(shared[other])
    if set(seed_list(design["primary"]["seeds"])) - set(seeds):
        params["design.primary.seeds"] = len(seeds) if seeds == list(range(len(seeds))) else seeds
    return other, (params, {})


def _seed_count(seeds: Any) -> int:
    from .design import seed_list

    return len(seed_list(seeds))


def _more_seeds(seeds: Any) -> Any:
    """``seeds`` (a count or a list) with one more seed."""
    if isinstance(seeds, int):
        return seeds + 1
    return [*seeds, max(seeds) + 1 if seeds else 0]


def _fewer(sizes: Sequence[float]) -> list[float]:
    """Four of five or more subset sizes: the smallest, one a third of the way up, half the pool and the largest."""
    sizes = sorted(sizes)
    keep = sorted({sizes[0], sizes[len(sizes) // 3], *[f for f in sizes if math.isclose(f, 0.5)], sizes[-1]})
    return sorted((keep + [f for f in sizes if f not in keep])[:4]) if len(keep) < 4 else keep


_SCALING_QUESTION = ("the same stored runs: how do the Akaike weights and the identified forms change, and does the "
                     "plateau contrast (which uses only N and N/2) move at all?")
_SEEDS_QUESTION = "the same stored runs: how much wider are the intervals, and how much larger the MDE?"


def _scaling_design(common: Mapping[str, Any], notebook: str) -> tuple[list[tuple[str, str, str]], int, int]:
    """Design profiles: fewer sizes (or seeds) of one scaling grid, then one more seed in every scaling grid;
    returns the items, the runs one more seed trains and the first seed of the scaling grids."""
    design = common["design"]
    grids = {n: g for n, g in (design.get("grids") or {}).items() if n.startswith("scaling")}
    items = []
    for name, g in grids.items():
        if len(g["fractions"]) < 5:
            continue
        # the arm's curve: the random subsets (and whole pool) of every grid in that arm
        before = {f for (s, f) in _design_cells(common, g["arm"]) if s == "random"}
        keep = _fewer(g["fractions"])
        after = {round(float(f), 9) for f in keep} | (before - {round(float(f), 9) for f in g["fractions"]})
        if 4 <= len(after) < len(before):
            items.append(("Fewer sizes.", exercise_command(notebook, yaml_params={f"design.grids.{name}.fractions": keep}),
                          f"In the {g['arm']} arm {len(after)} sizes instead of {len(before)} (the fits need four), "
                          + _SCALING_QUESTION))
            break
    if not items:
        name = next((n for n, g in grids.items() if _seed_count(g["seeds"]) >= 3), None)
        if name is not None:
            items.append(("Fewer seeds.", exercise_command(notebook, {f"design.grids.{name}.seeds": 2}),
                          f"Two seeds instead of {_seed_count(grids[name]['seeds'])} in the {name} grid, " + _SEEDS_QUESTION))
    more = {n: _more_seeds(g["seeds"]) for n, g in grids.items()}
    from .design import seed_list

    new = ", ".join(f"seed {seed_list(v)[-1]} in {n}" for n, v in more.items())
    items.append(("One more seed.", exercise_command(notebook, {"run_missing": True,
                                                                **{f"design.grids.{n}.seeds": v for n, v in more.items()}}),
                  f"Trains one more seed at every size of the scaling grids ({new}) of every track. How much narrower "
                  "are the intervals, and how close does the MDE come to δ?"))
    n_new = len(common["tracks"]) * sum(len(g["samplers"]) * len(g["fractions"]) for g in grids.values())
    first = min((seed_list(g["seeds"])[0] for g in grids.values() if seed_list(g["seeds"])), default=0)
    return items, n_new, first


def _scaling_legacy(common: Mapping[str, Any], notebook: str) -> tuple[list[tuple[str, str, str]], int, int]:
    """Legacy profiles: fewer ``scaling_fractions`` (or ``scaling_seeds``), then one more scaling seed."""
    sizes, seeds = sorted(common["scaling_fractions"]), list(common["scaling_seeds"])
    items = []
    if len(sizes) >= 5:
        keep = _fewer(sizes)
        items.append(("Fewer sizes.", exercise_command(notebook, yaml_params={"scaling_fractions": keep}),
                      f"{len(keep)} sizes instead of {len(sizes)} (the fits need four), " + _SCALING_QUESTION))
    elif len(seeds) >= 3:
        items.append(("Fewer seeds.", exercise_command(notebook, yaml_params={"scaling_seeds": seeds[:2]}),
                      f"Two seeds instead of {len(seeds)}, " + _SEEDS_QUESTION))
    new_seed = max(seeds) + 1 if seeds else 0
    items.append(("One more seed.", exercise_command(notebook, {"run_missing": True}, {"scaling_seeds": [*seeds, new_seed]}),
                  f"Trains seed {new_seed} at every size of every track. How much narrower are the intervals, and "
                  "how close does the MDE come to δ?"))
    arms = len(common.get("scaling_arms") or {"default": {}})
    return items, len(common["tracks"]) * arms * len(sizes), seeds[0] if seeds else 0


def scaling_exercises(common: Mapping[str, Any], plan: Any, frames: Mapping[tuple[str, str], Any],
                      notebook: str = "02_scaling") -> Exercises:
    """The scaling chapter's exercises, computed from the build's parameters (``common``: the profile's,
    with or without a design; ``frames``: the scaling runs per track and arm): a wider plateau margin and
    fewer sizes (or seeds) read stored runs only; one more seed trains (its cost from the stored runs)."""
    import pandas as pd

    track = _designed_track(common, [0.5, 1.0])
    delta = _try_value(plan.delta(track))
    items = [("How wide must the margin be?", exercise_command(notebook, *_plateau_override(common, plan, track, delta)),
              f"The plateau verdict is an equivalence test: it holds when the (1 − 2α) interval of y(N) − y(N/2) lies "
              f"inside ±δ. At δ = {fmt(delta)}, four times the profile's, does the {track} verdict change? Set δ beside "
              "\"the smallest margin this design shows\" and beside the whole pool's gain (rule G): is a plateau "
              "within such a margin still a plateau?")]
    more, n_new, first = (_scaling_design if common.get("design") else _scaling_legacy)(common, notebook)
    items += more
    parts = [f[f["seed"] == first] for f in frames.values() if f is not None and len(f)]
    similar = pd.concat(parts) if parts else None
    return Exercises(items, [_reading(len(items) - 1)
                             + exercise_cost(similar, n_new, f"Exercise {len(items)} (one more seed)")])


def _ablation_override(common: Mapping[str, Any], variant: Mapping[str, Any]) -> tuple[Override, int]:
    """Training one more ISA variant: the override and the number of new runs."""
    design, n_tracks = common.get("design"), len(common["tracks"])
    entry = {"name": "isa", "params": dict(variant)}
    if not design:
        return ({"run_missing": True}, {"ablation": [dict(variant)]}), n_tracks * len(common.get("seeds") or [])
    grids = design.get("grids") or {}
    if grids.get("ablation"):
        g = grids["ablation"]
        return (({"run_missing": True}, {"design.grids.ablation.samplers": [*g["samplers"], entry]}),
                n_tracks * _seed_count(g["seeds"]) * len(g["fractions"]))
    primary = design["primary"]
    seeds = (grids.get("samplers") or primary)["seeds"]
    grid = {"samplers": [entry], "fractions": [float(primary["fraction"])], "arm": primary["arm"], "seeds": seeds}
    return ({"run_missing": True}, {"design.grids.ablation": grid}), n_tracks * _seed_count(seeds)


def sampler_exercises(common: Mapping[str, Any], plan: Any, frames: Mapping[str, Any],
                      notebook: str = "03_samplers") -> Exercises:
    """The sampler chapter's exercises, computed from the build's parameters (``common``, with or without a
    design; ``frames``: each track's sampler runs): another primary budget (when the profile stores one) and
    another endpoint read stored runs only; a new ISA variant trains (its cost from the stored ISA runs)."""
    import numpy as np
    import pandas as pd

    items = []
    budget = _budget_override(common, plan)
    if budget is not None:
        other, override = budget
        items.append(("Another primary budget.", exercise_command(notebook, *override),
                      f"The pre-registered contrast moves to {fmt(other, 'pct')} of the pool and is tested alone, while "
                      f"{fmt(plan.primary_budget, 'pct')} joins the Holm family. Does any comparison change its reading? "
                      "(Choosing the primary contrast after seeing the data is what the pre-registration forbids: this "
                      "is an exercise, not a re-analysis.)"))
    endpoint = next(((t, m) for t, spec in common["tracks"].items() for m in spec.get("secondary") or []
                     if m != plan.metric(t)), None)
    if endpoint is not None:
        track, metric = endpoint
        items.append(("Another endpoint.", exercise_command(notebook, *_metric_override(common, track, metric)),
                      f"The {track} track judged by {metric} instead of {plan.metric(track)}, the same stored runs. Do "
                      "the samplers keep their order, and do the MDEs shrink or grow?"))
    variants, at = profile_ablation(common)
    used = {k for v in variants for k in v}
    variant = next(({k: v} for k, v in (("n_components", 4), ("dim", 16), ("temperature", 0.5), ("score", "entropy"))
                    if k not in used), {"n_init": 1})
    override, n_new = _ablation_override(common, variant)
    items.append(("Another ISA variant.", exercise_command(notebook, *override),
                  f"Trains ISA with {', '.join(f'{k} = {v}' for k, v in variant.items())} at {fmt(at, 'pct')} of the pool, "
                  "every seed of the ablation and every track. Does ISA's result depend on that choice?"))
    parts = [f[(f["label"] == plan.sampler) & np.isclose(f["fraction"].astype(float), at)]
             for f in frames.values() if f is not None and len(f)]
    similar = pd.concat(parts) if parts else None
    return Exercises(items, [_reading(len(items) - 1)
                             + exercise_cost(similar, n_new, f"Exercise {len(items)} (one new ISA variant)")])


def _designed_track(common: Mapping[str, Any], fractions: Sequence[float]) -> str:
    """The first track whose design runs the primary arm at every one of ``fractions`` (the whole pool for
    the small-subset claim, half and all of it for the plateau); the first track when none does or the
    profile has no design."""
    first = next(iter(common["tracks"]))
    if not common.get("design"):
        return first
    from .design import design_grids, runs_cells, track_design_grids

    built, arm = design_grids({"common": common}), common["design"]["primary"]["arm"]
    return next((t for t in common["tracks"] if runs_cells(track_design_grids(built, t), arm, fractions)), first)


def findings_exercises(common: Mapping[str, Any], plan: Any, notebook: str = "05_findings") -> Exercises:
    """The findings chapter's exercises, computed from the build's parameters (this chapter never trains)."""
    track = _designed_track(common, [1.0])
    margin = _try_value(plan.margin(track))
    alpha = 0.1 if not math.isclose(plan.alpha, 0.1) else 0.05
    follows = (" (the plateau's δ follows the margin, since the design sets no `plateau_delta`)"
               if common.get("design") and "plateau_delta" not in (common["design"].get("secondary") or {}) else "")
    items = [("The margin decides.", exercise_command(notebook, *_margin_override(common, plan, track, margin)),
              f"At a margin of {fmt(margin)}, four times the profile's{follows}, does the {track} small-subset verdict "
              "change? Set the margin beside the whole pool's gain over the untrained policy (rule G): is a subset "
              "\"as good\" within it worth the name?"),
             ("Another test level.", exercise_command(notebook, *_alpha_override(common, alpha)),
              f"Every verdict and MDE recomputed at α = {alpha:g} (the equivalence tests use {1 - 2 * alpha:.0%} "
              "intervals). Which verdicts move, and how do the MDEs change?")]
    budget = _budget_override(common, plan)
    if budget is not None:
        other, override = budget
        items.append(("Another budget.", exercise_command(notebook, *override),
                      f"The sampler and small-subset claims at {fmt(other, 'pct')} of the pool. (The pre-registered "
                      "budget is the profile's; this shows how much the answer depends on it.)"))
    return Exercises(items, ["This chapter never trains: each exercise takes about a minute. New runs come from the "
                             "scaling and sampler chapters with `-p run_missing true`, or from `make experiments`."])
