"""Reader-facing views of chapters 01 and 04 (effalign.views) and their figures: the ISA pipeline
and smoothed loss curves (effalign.plots)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from effalign import plots, tables, views  # noqa: E402
from effalign.bookcheck import text_problems  # noqa: E402
from effalign.data import PreferencePair  # noqa: E402
from effalign.samplers import ISASampler  # noqa: E402


@pytest.mark.parametrize("value, text", [
    (0.001169, "0.00117"), (2.75e-4, "0.000275"), (1234.5, "1,234"), (12345678, "12,345,678"), (3.14159, "3.14"),
    (0.0, "0"), (float("nan"), "—"), (None, "—"), (-0.0123456, "−0.0123"), (3.939e73, None), (9.0e-4, "0.000900"),
])
def test_significant_digits_never_write_scientific_notation(value, text):
    out = tables.fmt(value, "sig")
    if text is not None:
        assert out == text
    assert not text_problems(out, "x"), out


def _pair(i: int, prompt: str) -> PreferencePair:
    return PreferencePair(prompt=[{"role": "user", "content": prompt}],
                          chosen=[{"role": "assistant", "content": f"chosen answer {i}"}],
                          rejected=[{"role": "assistant", "content": f"rejected answer {i}"}])


def test_example_pairs_stacks_escaped_text_and_folds_behind_a_note():
    pool = [_pair(0, "How do I <script>alert(1)</script> & $x$?"), _pair(1, "word " * 300), _pair(2, "third")]
    shown = views.example_pairs(pool, {"ISA": [1, 0], "random": [2]}, k=2, limit=100, title="hh examples",
                                folded="Content note: harmful requests (click to show)")
    page = shown._repr_html_()
    assert page.startswith("<details><summary") and "Content note: harmful requests" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "&amp;" in page
    assert page.count("prompt</span>") == 3, "one block per pair: ISA's two, random's one"
    assert "ISA, pair 1 of 2" in page and "random, pair 1 of 1" in page
    assert "white-space:pre-wrap" in page, "text wraps inside a full-width block"
    long_prompt = repr(shown).split("-- prompt:\n")[1].split("\n")[0]
    assert len(long_prompt) == 100 and long_prompt.endswith("…")
    assert not views.example_pairs(pool, {"ISA": [0]}, k=1)._repr_html_().startswith("<details>")


def _record(sampler, kl=None, device="cpu", n_train=10, **metrics):
    m = {"n_train": n_train, **metrics}
    if kl is not None:
        m["gen_kl"] = kl
    return {"spec": {"sampler": sampler, "sampler_params": {}, "seed": 0}, "metrics": m,
            "provenance": {"device": {"device": device}}}


def test_kl_note_only_for_negative_estimates_and_names_the_runs():
    assert views.kl_statements([_record("random", 0.02), _record("isa")]) == []
    note = views.kl_statements([_record("random", 0.02), _record("isa", -0.0043)])
    assert len(note) == 1 and "isa (−0.00430 nats)" in note[0] and "never negative" in note[0]
    exact = views.kl_statements([_record("isa", -0.01, gen_kl_samples=2)])
    assert any("defect" in s for s in exact), "the exact estimator cannot be negative"


def test_larger_run_statements_are_honest_about_the_device():
    gpu_dpo = {"track": "testbed", "fraction": 0.1, "seed": 0,
               "cuda": {"model": "smollm2-135m-instruct", "train": {"lora": False, "epochs": 2, "learning_rate": 1e-6}},
               "cpu": {"model": "smollm2-135m-instruct", "experiment": "testbed_subsets", "data": {}, "train": {}}}
    train = {"lora": True, "epochs": 1, "learning_rate": 5e-4, "batch_size": 8}
    records = [_record("full", n_train=300), _record("isa", n_train=30)]
    cpu = views.larger_run_statements(gpu_dpo, train, records, "cpu", gpu_pool=2165)
    assert "not a larger run" in cpu[0] and "300 pairs" in cpu[0] and "30 pairs" in cpu[0]
    assert "LoRA adapters" in cpu[0] and "1 epoch(s)" in cpu[0]
    arm = {**train, "budget": "converge", "max_steps": 75, "val_every": 15}
    ran = [{**r, "spec": {**r["spec"], "train": arm}} for r in records]
    converge = views.larger_run_statements(gpu_dpo, train, ran, "cpu", gpu_pool=2165)
    assert "up to 75 optimiser steps, stopped early on the validation loss" in converge[0]
    assert "epoch" not in converge[0], "a converge-budget run is not described by its epochs"
    assert "2,165 pairs" in cpu[1] and "full fine-tuning" in cpu[1] and "learning rate 0.000001" in cpu[1]
    gpu = views.larger_run_statements(gpu_dpo, train, [_record("full", device="cuda", n_train=2165)], "cuda")
    assert len(gpu) == 1 and gpu[0].startswith("These are the larger runs")


def test_cost_view_has_units_and_no_scientific_notation():
    cost = pd.DataFrame({"label": ["full", "isa"], "n_train": [300, 30], "device_name": ["CPU: x", "CPU: x"],
                         "run_s": [4210.0, 420.5], "train_s": [3000.0, 301.2], "device_hours": [1.169, 0.0001222],
                         "tokens": [1234567, 123456], "tokens_per_s": [411.5, 409.9], "peak_gib": [3.2, 3.3]})
    page = views.cost_view(cost).to_html()
    assert "device-hours (h)" in page and "peak memory (GiB)" in page and "1,234,567" in page
    assert "0.000122" in page
    assert not [p for p in text_problems(page, "cost") if "scientific" in p]
    assert "device" not in views.cost_view(cost).data.columns, "one device: named in the text, not in every row"
    assert "device" in views.cost_view(cost.assign(device_name=["CPU: x", "GPU: y"])).data.columns


@pytest.fixture(scope="module")
def fitted_isa():
    rng = np.random.default_rng(0)
    n, d = 120, 16
    centre = np.where(np.arange(n)[:, None] < 70, 1.0, -1.0)
    emb = {part: rng.normal(size=(n, d)) * 0.3 + centre * (0.5 if part == "prompt" else 0.1)
           for part in ("prompt", "chosen", "rejected")}
    raw = np.concatenate([emb["prompt"], emb["chosen"] - emb["rejected"]], axis=1)
    isa = ISASampler(dim=8, n_init=1)
    isa.select(raw, 12, seed=0)
    return isa, emb


def test_isa_pipeline_figure_shows_the_five_steps(fitted_isa):
    isa, emb = fitted_isa
    fig = plots.plot_isa_pipeline(isa, emb, n_rows=30)
    axes = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in axes]
    assert [t.split(".")[0] for t in titles] == ["1", "2", "3", "4", "5"], titles
    for ax in axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), ax.get_title()
    assert "embeddings → features → mixture → scores → per-component budget" in fig._suptitle.get_text()
    image = axes[0].images[0].get_array()
    assert image.shape == (30, 32), "30 pairs by [prompt, chosen - rejected] dimensions"
    assert sum(isinstance(p, Ellipse) for p in axes[2].patches) == 2 * isa.n_components
    assert len(axes[3].lines) == isa.n_components, "one threshold line per component that got budget"
    budget_bars = axes[4].containers[2]
    shares = [bar.get_height() for bar in budget_bars]
    assert sum(shares) == pytest.approx(100.0)
    assert f"{int(np.sum(isa.component_budget_))} of 120 pairs" in titles[4]
    assert fig._suptitle.get_text().startswith("ISA step by step\n")
    plt.close(fig)


def test_ema_and_smoothed_loss_plot():
    values = np.array([1.0, 0.0, 0.0, 0.0])
    smoothed = plots.ema(values, span=3)  # alpha 0.5
    np.testing.assert_allclose(smoothed, [1.0, 0.5, 0.25, 0.125])
    steps = np.arange(1, 41)
    noise = np.random.default_rng(0).normal(0, 0.05, size=40)
    curves = pd.DataFrame({"label": ["full (40 pairs)"] * 40, "seed": 0, "step": steps, "epoch": steps / 40,
                           "loss": 0.69 - 0.004 * steps + noise, "seconds": steps * 1.5})
    ax = plots.plot_loss_smoothed(curves, span=8)
    assert len(ax.collections[0].get_offsets()) == 40, "every step as a point"
    line = next(l for l in ax.lines if l.get_label() == "full (40 pairs)")
    assert ax.get_legend().get_title().get_text() == "run (lines: moving average, 8 steps)"
    ys = line.get_ydata()
    assert ys[-1] < ys[0] and np.std(np.diff(ys)) < np.std(np.diff(curves["loss"])), "smoother than the raw loss"
    assert "moving average over 8 steps" in ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel()
    plt.close(ax.figure)
    said = views.loss_statements(curves, span=8)
    assert len(said) == 1 and said[0].startswith("full (40 pairs): over 40 steps the moving average fell from ")
    assert "standard deviation of" in said[0] and " nats (down " in said[0]
    rising = views.loss_statements(curves.assign(loss=curves["loss"][::-1].to_numpy(), seed=0), span=8)
    assert " rose from " in rising[0] and " nats (up " in rising[0]
    assert views.loss_statements(curves.iloc[:0]) == ["No training curves are stored for these runs."]
    empty = plots.plot_loss_smoothed(pd.DataFrame(columns=curves.columns))
    assert empty.texts and "no loss curves yet" in empty.texts[0].get_text()
    plt.close(empty.figure)


# ----------------------------------------------------------------------------- reader tables (chapters 02, 03, 05)


def _visible(styler) -> str:
    from effalign.bookcheck import _visible_text

    return _visible_text(styler.to_html())


def _assert_readable(styler):
    """What a reader must never see in a table: NaN, scientific notation, a row index."""
    text = _visible(styler)
    assert not text_problems(text, "table"), text_problems(text, "table")
    assert "nan" not in text.lower().split() and "NaN" not in text
    assert 'class="row_heading' not in styler.to_html(), "no row index"
    return text


def _sampler_frame():
    from effalign import tables
    from synthetic import record

    rng = np.random.default_rng(3)
    recs = [record(sampler, budget, seed, pool=300, pref_accuracy=float(0.5 + 0.01 * seed + rng.normal(0, 0.01)),
                   pref_margin=float(rng.normal(0.0004, 0.0002)))
            for sampler in ("random", "isa", "kcenter") for budget in (15, 30) for seed in range(3)]
    return tables.runs_frame(recs)


def test_metrics_view_one_line_cells_reader_names_and_no_empty_columns():
    frame = _sampler_frame()
    styler = views.metrics_view(frame, ["pref_accuracy", "pref_margin", "gen_reward"], caption="hh")
    data = styler.data
    assert list(data.columns) == ["budget", "sampler", "preference accuracy", "implicit reward margin"], \
        "readers' names; no column for a metric the runs lack; seeds moved into the caption"
    assert styler.caption.startswith("hh: mean ± half-width of the 95% t interval over 3 seeds")
    cells = data["preference accuracy"].tolist()
    assert all(views.NBSP + "±" + views.NBSP in c and "\n" not in c and " " not in c for c in cells), cells
    assert list(data["budget"])[:3] == ["5% (15)", "", ""], "a group is named once"
    assert list(data["sampler"])[:3] == ["isa", "kcenter", "random"], "ISA first within each budget"
    text = _assert_readable(styler)
    assert "0.000" not in text.split(), "no mean written with more digits than its interval carries"


def test_paired_and_headline_views_fit_and_name_the_primary_contrast():
    from effalign import findings, tables

    frame = _sampler_frame()
    diffs = tables.paired_differences(frame, "pref_accuracy", primary=("isa", 0.1))
    styler = views.paired_view({"hh": diffs, "testbed": diffs})
    data = styler.data
    assert list(data.columns) == ["track", "budget", "sampler", "minus random", "95% interval", "p (Holm)", "MDE"]
    assert "isa (primary)" in set(data["sampler"]) and "paired by seed" in styler.caption
    assert data["track"].tolist().count("hh") == 1
    _assert_readable(styler)
    assert "track" not in views.paired_view({"hh": diffs}).data.columns

    headline = pd.DataFrame({"track": ["hh"] * 3, "metric": ["pref_accuracy"] * 3,
                             "claim": ["plateau", "small subset", "sampler"], "rule": ["P", "E", "S"],
                             "contrast": ["y(N) − y(N/2), default arm", "isa at 10% − whole pool", "isa − random at 10%"],
                             "estimate": [0.01, np.nan, -0.02], "lo": [-0.01, np.nan, -0.05],
                             "hi": [0.03, np.nan, 0.01], "p": [0.2, np.nan, 0.3], "margin": [0.02, 0.02, np.nan],
                             "mde": [0.04, np.nan, 0.05], "smallest margin shown": [0.03, np.nan, np.nan],
                             "seeds": [3, 0, 3], "verdict": ["not resolved", "not resolved", "not resolved"]})
    head = views.headline_view(headline)
    assert list(head.data.columns) == ["track", "claim", "estimate", "95% interval", "p", "margin", "MDE", "seeds",
                                       "verdict"]
    assert head.data["track"].tolist() == ["hh (preference accuracy)", "", ""]
    assert head.data["95% interval"].tolist()[1] == "—"
    _assert_readable(head)
    assert "seeds" not in views.headline_view(headline.assign(seeds=3)).data.columns
    assert findings.headline_frame({}).empty and views.headline_view(findings.headline_frame({})).data.empty


def test_size_fit_and_gain_views():
    from effalign import findings, tables
    from effalign.verdicts import AnalysisPlan

    rng = np.random.default_rng(1)
    rows = [{"key": f"{n}-{s}", "label": "full" if n == 400 else "random", "fraction": n / 400, "seed": s,
             "n_train": n, "pool_size": 400, "pref_accuracy": 0.8 - 0.3 * np.exp(-n / 60) + rng.normal(0, 0.01)}
            for s in range(3) for n in (8, 20, 40, 100, 200, 400)]
    frame = pd.DataFrame(rows)
    sizes = views.size_means_view({"hh": ("pref_accuracy", tables.summarize(frame, "pref_accuracy", by=["n_train"]))})
    assert list(sizes.data.columns) == ["track", "metric", "pairs", "share of pool", "mean", "95% interval"]
    assert sizes.data["metric"].tolist()[:2] == ["preference accuracy", ""] and "3 seeds" in sizes.caption
    _assert_readable(sizes)

    outcome = findings.scaling_outcome(frame, "pref_accuracy", n_boot=20)
    fit = views.fit_view({"hh": outcome, "testbed": findings.scaling_outcome(None, "gen_reward")})
    data = fit.data
    assert list(data.columns) == ["track", "form", "standing", "Akaike weight", "lack-of-fit p", "plateau",
                                  "n95 (pairs)", "note"]
    assert set(data["form"]) >= {"exponential plateau", "straight line"} and "favoured" in set(data["standing"])
    assert data.loc[data["track"] == "testbed", "standing"].tolist() == ["no fit"]
    assert "no runs are stored" in data["note"].iloc[-1], "the note is kept whole"
    html = fit.to_html()
    assert "text wrap" in html, "the note and names wrap instead of widening the table"
    _assert_readable(fit)
    weights = [w for w in data["Akaike weight"] if w not in ("—",)]
    assert all(w == "< 0.001" or 0 <= float(w) <= 1 for w in weights)

    sat = findings.saturation(frame, "pref_accuracy", AnalysisPlan(primary_metric={"hh": "pref_accuracy"}))
    gains = views.gains_view({"hh": sat})
    assert list(gains.data.columns) == ["track", "share of pool", "pairs", "gain", "95% interval"]
    assert gains.data["gain"].iloc[-1].startswith("+") and "3 seeds" in gains.caption
    _assert_readable(gains)


#: A profile's ``common`` in the keys used before designs (no ``common.design``): the views still read it.
LEGACY = {
    "tracks": {"hh": {"metric": "pref_accuracy", "secondary": ["pref_margin"], "data": {"source": "hh-harmless"}}},
    "analysis": {"primary_budget": 0.1, "plateau_delta": {"hh": 0.02}, "equivalence_margin": {"hh": 0.02}},
    "samplers": ["random", "isa", "kcenter"], "budgets": [0.05, 0.1, 0.25], "seeds": [0, 1, 2],
    "scaling_fractions": [0.05, 0.1, 0.25, 0.5, 1.0], "scaling_seeds": [0, 1, 2],
    "ablation": [{"dim": 8}], "ablation_budget": 0.1,
}


def test_sampler_and_ablation_statements_follow_the_parameters():
    from effalign.book import load_profile

    for profile in ("smoke", "default", "paper"):
        c = load_profile(profile)["common"]
        samplers = views.profile_samplers(c)
        design = c["design"]
        assert samplers[:2] == [design["primary"]["baseline"], design["primary"]["sampler"]]
        assert set(samplers[2:]) == set(design["grids"]["samplers"]["samplers"]), "the samplers at the primary budget"
        said = views.sampler_statements(samplers)
        assert len(said) == len(samplers) and all("a sampler of effalign.samplers" not in s for s in said)
        variants, budget = views.profile_ablation(c)
        ablation = design["grids"].get("ablation")
        assert variants == [e["params"] for e in (ablation or {}).get("samplers", [])]
        assert budget == (ablation["fractions"][0] if ablation else design["primary"]["fraction"])
        lines = views.ablation_statements(variants, budget)
        text = " ".join(lines)
        assert len(lines) == (1 + len(variants) if variants else 1)
        changed = {k for v in variants for k in v}
        for setting in views.ISA_SETTINGS:
            assert (f"`{setting}`" in text) == (setting in changed), (profile, setting)
    assert views.profile_samplers(LEGACY) == LEGACY["samplers"]
    assert views.profile_ablation(LEGACY) == ([{"dim": 8}], 0.1)
    one = views.ablation_statements([{"dim": 4}], 0.25)
    assert "25% of the pool" in one[0] and "default 32" in one[0] and "`dim` = 4 instead of 32" in one[1]
    assert "no ISA ablation" in views.ablation_statements([], 0.05)[0]


def test_arm_labels_and_exercise_cost():
    assert views.arm_labels([("hh", "default"), ("testbed", "default")]) == {("hh", "default"): "hh",
                                                                               ("testbed", "default"): "testbed"}
    two = views.arm_labels([("hh", "default"), ("hh", "equal_steps")])
    assert two[("hh", "equal_steps")] == "hh, equal_steps arm"
    similar = pd.DataFrame({"seconds": [100.0, 140.0], "device_name": ["CPU: x", "CPU: x"]})
    said = views.exercise_cost(similar, 6, "Exercise 3")
    assert said.startswith("Exercise 3 trains 6 new runs") and "120 s each" in said and "about 12 minutes" in said
    assert "a minute or less in all" in views.exercise_cost(similar.assign(seconds=4.0), 8, "Exercise 2")
    assert "needs no new run" in views.exercise_cost(similar, 0, "Exercise 1")
    assert "no similar run is stored" in views.exercise_cost(similar.iloc[:0], 2, "Exercise 2")


def _overrides(command: str) -> dict:
    """The papermill overrides ``python -m effalign book`` builds from an exercise's command line."""
    import shlex

    import yaml

    from effalign.cli import build_parser

    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "effalign"]
    args = build_parser().parse_args(words[3:])
    out = {}
    for text in args.yaml or []:
        out.update(yaml.safe_load(text))
    out.update({name: yaml.safe_load(text) for name, text in args.parameter or []})
    return out


def _run_keys(common: dict) -> set[str]:
    from effalign.design import design_grids
    from effalign.experiment import expand_grid

    return {s.key for g in design_grids({"common": common}).values() for s in expand_grid(g)}


def _chapters(common: dict, plan) -> dict:
    first = common.get("seeds", [0])[0] if not common.get("design") else 0
    frames = {(t, "arm"): pd.DataFrame({"seed": [first] * 2, "seconds": [60.0, 120.0], "device_name": "CPU: x",
                                        "label": "isa", "fraction": plan.primary_budget}) for t in common["tracks"]}
    return {"02_scaling": views.scaling_exercises(common, plan, frames),
            "03_samplers": views.sampler_exercises(common, plan, {t: f for (t, _), f in frames.items()}),
            "05_findings": views.findings_exercises(common, plan)}


def _check_exercises(chapters: dict) -> None:
    for name, exercises in chapters.items():
        assert 2 <= len(exercises.items) <= 3
        text = exercises._repr_markdown_()
        assert not text_problems(text, name)
        for _, command, _ in exercises.items:
            assert command.startswith(f"python -m effalign book --only {name}") and f"`{command}`" in text
        if name != "05_findings":
            note = exercises.notes[0]
            reading = sum(1 for _, command, _ in exercises.items if "run_missing" not in command)
            assert ("Exercises 1 and 2 read" in note) == (reading == 2) and ("Exercise 1 reads" in note) == (reading == 1)
            assert f"Exercise {len(exercises.items)} (" in note and "in all on the same machine" in note


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_exercises_are_exact_commands_whose_no_training_runs_are_in_the_profile(profile):
    """Design profiles: every command parses with the CLI, its parameters apply to the profile and give a
    valid plan; an exercise that trains nothing asks only for runs of the profile's own grids."""
    from effalign.book import load_profile, notebook_parameters
    from effalign.design import analysis_plan

    prof = load_profile(profile)
    c = prof["common"]
    plan = analysis_plan(c)
    stored = _run_keys(c)
    chapters = _chapters(c, plan)
    _check_exercises(chapters)
    for name, exercises in chapters.items():
        for _, command, question in exercises.items:
            over = _overrides(command)
            assert not [k for k in over if k.startswith("analysis.")], "the design fixes the analysis"
            params = notebook_parameters(prof, name, None, over)  # the dotted names resolve
            new = {**c, **{k: params[k] for k in ("tracks", "design", "analysis")}}
            changed = analysis_plan(new)  # the design still validates
            keys = _run_keys(new)
            if over.get("run_missing") is True:
                assert "trains" in question.lower() and keys - stored, "an exercise that trains asks for new runs"
                continue
            assert keys <= stored, f"{command}: asks for runs the profile does not have"
            assert changed != plan or name == "02_scaling", command
            for key, value in over.items():
                if key.startswith("tracks.") and key.endswith(".metric"):
                    assert value in c["tracks"][key.split(".")[1]]["secondary"], "an endpoint the runs record"


def test_exercises_of_a_legacy_profile():
    """Without a design the exercises change the legacy keys (``analysis``, ``scaling_*``, ``ablation``)."""
    from effalign.book import notebook_parameters
    from effalign.verdicts import AnalysisPlan

    plan = AnalysisPlan.from_profile(LEGACY["analysis"], LEGACY["tracks"])
    chapters = _chapters(LEGACY, plan)
    _check_exercises(chapters)
    for name, exercises in chapters.items():
        for _, command, _ in exercises.items:
            over = _overrides(command)
            params = notebook_parameters({"profile": "legacy", "common": LEGACY}, name, None, over)
            if over.get("run_missing") is True:
                continue
            AnalysisPlan.from_profile(params["analysis"], params["tracks"])
            if "scaling_fractions" in over:
                assert set(over["scaling_fractions"]) <= set(LEGACY["scaling_fractions"]) and len(over["scaling_fractions"]) >= 4
            if "analysis.primary_budget" in over:
                assert over["analysis.primary_budget"] in LEGACY["budgets"]
    commands = " ".join(c for e in chapters.values() for _, c, _ in e.items)
    for key in ("analysis.plateau_delta.hh", "scaling_fractions", "analysis.primary_budget", "ablation",
                "analysis.equivalence_margin.hh", "analysis.alpha"):
        assert key in commands, key


def test_variance_and_missing_views_are_narrow_and_formatted(tmp_path):
    from effalign.book import load_profile
    from effalign.design import design_grids, variance_frame
    from effalign.notebook import missing_cells

    c = load_profile("default")["common"]
    var = variance_frame(c, {t: [] for t in c["tracks"]})
    table = views.variance_table(var)
    assert list(table.columns) == ["quantity", *c["tracks"]], "one column per track"
    assert len(table) == len(var.columns) - 1 and table.loc[table["quantity"] == "runs", "hh"].item() == "0"
    assert table.loc[table["quantity"] == "effect of interest", "testbed"].item() == "0.030"
    _assert_readable(views.variance_view(var))

    cells = missing_cells({k: g for k, g in design_grids({"common": c}).items() if k.endswith("_primary")}, tmp_path)
    view = views.missing_view(cells)
    assert list(view.data.columns) == ["grid", "arm", "sampler", "pairs", "seeds", "stored", "missing seeds"]
    assert set(view.data["missing seeds"]) == {"0–15"} and set(view.data["stored"]) == {"0"}
    _assert_readable(view)


def test_rules_view_is_a_table_with_the_plans_values():
    from effalign.book import load_profile
    from effalign.design import analysis_plan
    from effalign.verdicts import RULES

    c = load_profile("default")["common"]
    view = views.rules_view(analysis_plan(c), list(c["tracks"]))
    assert list(view.data["rule"]) == list(RULES) and "|" not in _assert_readable(view)
    assert view.caption.startswith("Values (common.design): α = 0.05") and "testbed: gen_reward" in view.caption


def test_margin_exercises_ask_about_a_track_whose_design_runs_the_claim():
    """A design that runs the whole pool on one track only: the small-subset and plateau exercises name it."""
    from effalign.book import load_profile
    from effalign.design import analysis_plan

    common = load_profile("smoke")["common"]
    first, *others = list(common["tracks"])
    common["design"]["grids"]["full_pool"]["tracks"] = others[:1]
    plan = analysis_plan(common)
    text = views.findings_exercises(common, plan)._repr_markdown_()
    assert f"does the {others[0]} small-subset verdict" in text and f"does the {first} small-subset" not in text
    frames = {(t, plan.plateau_arm): pd.DataFrame({"seed": [0], "seconds": [60.0], "device_name": "CPU: x",
                                                    "label": "random", "fraction": 0.5}) for t in common["tracks"]}
    text = views.scaling_exercises(common, plan, frames)._repr_markdown_()
    assert f"does the {others[0]} verdict change" in text and f"does the {first} verdict" not in text


def test_selector_view_names_columns_for_readers_and_refuses_unknown_parts():
    frame = pd.DataFrame({"label": ["random", "isa", "full"], "fraction": [0.1, 0.1, 1.0], "runs": [16, 16, 2],
                          "mean": [0.053, 0.075, 0.096], "diff": [np.nan, 0.0227, np.nan], "lo": [np.nan, -0.002, np.nan],
                          "hi": [np.nan, 0.047, np.nan], "p": [np.nan, 0.071, np.nan], "select_s": [0.015, 3.35, 0.0],
                          "scoring_s": [0.0, 0.0, 0.0], "train_s": [470.0, 432.0, 834.0], "total_s": [470.0, 436.0, 834.0],
                          "total_tokens": [65587, 56480, 106609], "compute vs whole pool": [0.563, 0.523, 1.0],
                          "chosen_chars": [161.0, 108.0, 158.0], "chosen_minus_rejected": [-45.9, -98.1, -58.8],
                          "chosen vs pool": [0.984, 0.66, 1.0]})
    metrics = {"hh": "pref_margin"}
    benefit = views.selector_view({"hh": frame}, "benefit", metrics)
    assert list(benefit.data.columns) == ["selector", "budget", "runs", "mean", "minus random", "95% interval", "p"]
    assert list(benefit.data["selector"]) == ["random", "isa", "whole pool"] and list(benefit.data["budget"])[-1] == "100%"
    assert benefit.data.loc[1, "minus random"] == "+0.023" and "implicit reward margin (hh)" in benefit.caption
    cost = views.selector_view({"hh": frame, "t": frame}, "cost", metrics)
    assert list(cost.data.columns)[:3] == ["track", "selector", "budget"] and list(cost.data["track"]) == ["hh", "", "", "t", "", ""]
    assert list(cost.data["tokens"])[:3] == ["65,587", "56,480", "106,609"]
    lengths = views.selector_view({"hh": frame}, "lengths", metrics)
    assert list(lengths.data["chosen − rejected (characters)"]) == ["−45.9", "−98.1", "−58.8"]
    for styler in (benefit, cost, lengths):
        _assert_readable(styler)
    with pytest.raises(ValueError, match="part must be one of benefit, cost, lengths"):
        views.selector_view({"hh": frame}, "speed", metrics)
