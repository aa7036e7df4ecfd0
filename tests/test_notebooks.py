"""The book end to end: every notebook executed with the smoke profile, then rendered.

One module-scoped fixture executes all notebooks once (papermill, the tiny random model, a
throwaway run store) and another renders the executed copies with Jupyter Book into a temporary
directory. The tests then check the outputs (no error, no traceback, at most a few warning lines,
the expected figures) and the HTML (every chapter, images that resolve, nothing loaded from the
network). A few minutes on a 2-core CPU.
"""

from __future__ import annotations

import ast
import html.parser
import os
import re
from pathlib import Path

import nbformat
import pytest

from effalign.book import build_stamp, execute_notebooks, load_profile, notebook_parameters, read_stamp, render, stage_book
from effalign.bookcheck import notebook_output_problems
from effalign.data import repo_dir, resolve_source

ROOT = repo_dir()
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
#: figures each notebook must show (with the smoke profile's two tracks)
MIN_FIGURES = {
    "01_data_and_information": 6,
    "02_scaling": 4,
    "03_samplers": 6,
    "04_gpu_dpo": 2,
    "05_findings": 2,
}
MAX_WARNING_LINES = 3
WARNING = re.compile(r"\bwarn(ing)?s?\b", re.IGNORECASE)
PROGRESS = re.compile(r"\d+%\|")  # tqdm bars


def test_notebooks_are_the_expected_chapters():
    assert NOTEBOOKS == sorted(MIN_FIGURES)
    toc = (ROOT / "_toc.yml").read_text()
    for name in NOTEBOOKS:
        assert f"file: book/executed/{name}" in toc


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_source_style(name):
    """Parameters cell first and tagged; every parameter set by the profiles; no long functions."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert not any(c.get("outputs") for c in code), "commit notebooks without outputs"
    declared = {t.id for node in ast.parse(code[0].source).body if isinstance(node, ast.Assign) for t in node.targets}
    for profile in ("smoke", "default", "paper"):
        prof = load_profile(profile)
        offered = {*prof["common"], *(prof["notebooks"].get(name) or {}), "profile"}
        assert declared <= offered, f"{profile} profile lacks {sorted(declared - offered)} for {name}"
    defaults: dict = {}
    exec(code[0].source, {}, defaults)  # noqa: S102 - the notebook's own literal defaults
    expected = notebook_parameters(load_profile("default"), name, declared)
    assert {k: v for k, v in defaults.items() if k != "profile"} == {k: v for k, v in expected.items() if k != "profile"}, \
        "the parameters cell should hold the default profile's values (papermill re-runs start from them)"
    for cell in code[1:]:
        for node in ast.walk(ast.parse(cell.source.replace("%", "#"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.end_lineno - node.lineno <= 2, f"{name}: logic belongs in effalign, not the notebook"


def test_profiles_keep_smoke_out_of_results():
    assert "results" not in Path(load_profile("smoke")["common"]["store"]).parts
    for profile in ("default", "paper"):
        assert load_profile(profile)["common"]["store"] == "../results"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    if not Path(resolve_source("hh-harmless")).exists():
        pytest.skip("shared HH data not found (set EFFALIGN_SHARED)")
    tmp = tmp_path_factory.mktemp("smoke-book")
    out = tmp / "executed"
    execute_notebooks("smoke", out_dir=out, overrides={"store": str(tmp / "store")}, timeout=900)
    return tmp, out


def _texts(output) -> list[str]:
    if output.output_type == "stream":
        return [output.text]
    if output.output_type == "error":
        return ["\n".join(output.get("traceback", [])), output.get("ename", "")]
    data = output.get("data", {})
    return [str(data[k]) for k in ("text/plain", "text/markdown", "text/html") if k in data]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_executed_notebook_outputs(executed, name):
    _, out = executed
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    figures, warning_lines = 0, []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{name}: {output.get('ename')}: {output.get('evalue')}"
            for text in _texts(output):
                assert "Traceback" not in text, f"{name}: traceback in an output:\n{text[:2000]}"
                if output.output_type == "stream":
                    warning_lines += [line for line in re.split(r"[\r\n]+", text)
                                      if WARNING.search(line) or PROGRESS.search(line)]
            figures += "image/png" in output.get("data", {})
    assert len(warning_lines) <= MAX_WARNING_LINES, f"{name}: warnings or progress bars flood the outputs:\n" + "\n".join(
        warning_lines)
    assert figures >= MIN_FIGURES[name], f"{name}: {figures} figures, expected at least {MIN_FIGURES[name]}"
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert any("injected-parameters" in t for t in tags) and any("remove-cell" in t for t in tags)


#: chapters whose outputs meet every reader rule of effalign.bookcheck (no progress bar, warning,
#: standard-error text, traceback or scientific notation); the others join as their tables are
#: formatted (issue 17)
CLEAN_CHAPTERS = ["01_data_and_information", "02_scaling", "03_samplers", "04_gpu_dpo", "05_findings"]


@pytest.mark.parametrize("name", CLEAN_CHAPTERS)
def test_reader_facing_outputs_are_clean_and_stamped(executed, name):
    _, out = executed
    path = out / f"{name}.ipynb"
    assert notebook_output_problems(path) == []
    stamp, now = read_stamp(path), build_stamp("smoke")
    assert (stamp.commit, stamp.profile) == (now.commit, "smoke")


def _markdown_outputs(nb) -> str:
    return "\n".join(t for c in nb.cells for o in c.get("outputs", []) for t in _texts(o))


@pytest.mark.parametrize("name", ["02_scaling", "03_samplers", "05_findings"])
def test_experiment_chapters_open_with_the_question_and_close_with_exercises(executed, name):
    """The teaching thread: the question first, the exercises (computed commands) last."""
    _, out = executed
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert "**The question of this chapter.**" in markdown[0].source
    headings = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert nb.cells[headings[-1]].source.startswith("## What to try")
    tail = _markdown_outputs(nbformat.v4.new_notebook(cells=nb.cells[headings[-1]:]))
    exercises = set(re.findall(rf"`python -m effalign book --only {name} [^`]+`", tail))  # markdown and plain text
    assert 2 <= len(exercises) <= 3, tail


def test_sampler_chapter_describes_the_ablation_the_profile_runs(executed):
    """The ablation text is computed from the parameters: the smoke design's ablation variants, no other setting."""
    from effalign.views import profile_ablation

    _, out = executed
    text = _markdown_outputs(nbformat.read(out / "03_samplers.ipynb", as_version=4))
    variants, _ = profile_ablation(load_profile("smoke")["common"])
    assert variants, "the smoke design has an ablation grid"
    for variant in variants:
        for key, value in variant.items():
            assert f"`{key}` = {value!r} instead of" in text
    changed = {k for v in variants for k in v}
    for setting in ("temperature", "n_components", "dim", "score"):
        assert (f"`{setting}` = " in text) == (setting in changed), setting


def test_findings_chapter_glues_the_scorecard(executed):
    _, out = executed
    nb = nbformat.read(out / "05_findings.ipynb", as_version=4)
    glued = [o for c in nb.cells for o in c.get("outputs", [])
             if (o.get("metadata") or {}).get("scrapbook", {}).get("name") == "scorecard"]
    assert len(glued) == 1 and "image/png" in glued[0]["data"]
    first_figure = next(i for i, c in enumerate(nb.cells) if any("image/png" in o.get("data", {})
                                                                 for o in c.get("outputs", [])))
    headings = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert first_figure < headings[1], "the scorecard comes first, before the sections on each claim"


def test_runs_went_to_the_throwaway_store(executed):
    tmp, _ = executed
    files = {p.stem for p in (tmp / "store").glob("*.jsonl")}
    assert files == {"testbed_smoke", "hh_smoke"}  # the smoke design's experiments (gpu_dpo.cpu reads them)


def test_findings_are_computed(executed):
    _, out = executed
    nb = nbformat.read(out / "05_findings.ipynb", as_version=4)
    text = "\n".join(t for c in nb.cells for o in c.get("outputs", []) for t in _texts(o))
    assert "not yet available" not in text
    for phrase in ("Akaike weight", "minus random", "highest mean", "full pool"):
        assert phrase in text, phrase


class _Scan(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.loads = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        if tag == "script" and a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and "stylesheet" in (a.get("rel") or "") and a.get("href"):
            self.loads.append(a["href"])


@pytest.fixture(scope="module")
def site(executed):
    tmp, out = executed
    return render(stage_book(tmp / "site", out), build_stamp("smoke"))  # refuses broken or stale chapters


def test_book_renders_every_chapter_offline(site):
    assert (site / "index.html").exists()
    toc = (ROOT / "_toc.yml").read_text()
    chapters = re.findall(r"file: (\S+)", toc) + ["book/intro"]
    for chapter in chapters:
        page = site / f"{chapter}.html"
        assert page.exists(), chapter
        scan = _Scan()
        scan.feed(page.read_text(encoding="utf-8"))
        external = [u for u in scan.loads if u.startswith(("http://", "https://", "//"))]
        assert not external, f"{chapter} loads from the network: {external}"
        figures = [s for s in scan.images if "_images/" in s]
        name = Path(chapter).name
        if name in MIN_FIGURES:
            assert len(figures) >= 1, f"{chapter}: no figure in the HTML"
        for src in figures:
            target = (page.parent / src).resolve()
            assert target.is_file() and target.stat().st_size > 0, f"{chapter}: {src} does not resolve"
    intro = _Scan()
    intro.feed((site / "book" / "intro.html").read_text(encoding="utf-8"))
    scorecard = [s for s in intro.images if "_images/" in s]
    assert len(scorecard) == 1, "the introduction shows the scorecard glued from the findings"
    assert ((site / "book" / scorecard[0]).resolve()).is_file()
    assert (site / "_static" / "mathjax" / "tex-chtml-full.js").exists()
    assert os.path.getsize(site / "_static" / "mathjax" / "tex-chtml-full.js") > 100_000
