"""The reader-facing checks of the built book (effalign.bookcheck, scripts/check_book.py) on small
synthetic notebooks and pages; the browser part runs only where Chromium is installed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

from effalign.bookcheck import (
    html_output_texts,
    layout_problems,
    measured,
    notebook_output_problems,
    page_problems,
    text_problems,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, rule", [
    ("Batches:   0%|          | 0/15 [00:00<?, ?it/s]", "a progress bar"),
    ("Batches: 100%|██████████| 15/15 [00:03<00:00,  4.61it/s]", "a progress bar"),
    ("/x/sklearn/mixture.py:12: ConvergenceWarning: did not converge", "a warning"),
    ("Warning: the pool is small", "a warning"),
    ("WARNING | Kernel is running over TCP", "a warning"),
    ("Traceback (most recent call last):\n  File", "a traceback"),
    ("a     3.939e+73\nb    -1.313e+71", "scientific notation"),
    ("learning rate 1E-06", "scientific notation"),
    ("KL −2.5e−3 nats", "scientific notation"),
    ("| rule | claim |\n| --- | --- |\n| P | plateau |", "a Markdown table shown as text"),
    ("| rule | claim | | — | — | | P | plateau |", "a Markdown table shown as text"),
])
def test_text_rules_catch_what_a_reader_must_not_see(text, rule):
    problems = text_problems(text, "ch, output 1")
    assert any(rule in p for p in problems), problems
    assert all(p.startswith("ch, output 1: ") for p in problems)


@pytest.mark.parametrize("text", [
    "accuracy 0.527 [0.49, 0.55], p = 0.031",
    "1,234 pairs in 3,600 s; 12% of the pool",
    "run cbed40f24267f8e1 (hash), id T_1e5f0_row0, version 2.13.0",
    "budget 2.1e+18 FLOP, 3.2e-05 s per token, 1.5e+03 GiB",
    "the warnings above were filtered: none left",
    "p | q | r: a b — c",
    "| hh | — | 0.5 |",
])
def test_text_rules_leave_ordinary_output_alone(text):
    assert text_problems(text, "ch") == []


def _notebook(*outputs) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = list(outputs)
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), cell]
    return nb


def test_notebook_outputs_are_judged_as_the_book_shows_them(tmp_path):
    frame_html = "<div><style>.x {width: 1e5px}</style><table><tr><td>0.5</td></tr></table></div>"
    clean = _notebook(
        nbformat.v4.new_output("stream", name="stdout", text="selected 10 of 40 pairs\n"),
        # the book shows the HTML; the plain-text repr (with scientific notation) is not shown
        nbformat.v4.new_output("execute_result", data={"text/html": frame_html, "text/plain": "0  5.0e-01"},
                               execution_count=1),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure 1e+03>"}),
    )
    path = tmp_path / "clean.ipynb"
    nbformat.write(clean, path)
    assert notebook_output_problems(path) == []

    dirty = _notebook(
        nbformat.v4.new_output("stream", name="stderr", text="Batches:  40%|████      | 6/15\n"),
        nbformat.v4.new_output("execute_result", data={"text/html": "<td>3.939e+73</td>"}, execution_count=2),
        nbformat.v4.new_output("error", ename="KeyError", evalue="'x'", traceback=["Traceback ..."]),
    )
    problems = notebook_output_problems(dirty, "02_scaling")
    assert any("cell 1, output 0: writes to standard error" in p for p in problems), problems
    assert any("output 0: a progress bar" in p for p in problems), problems
    assert any("output 1: scientific notation" in p and "3.939e+73" in p for p in problems), problems
    assert any("output 2: an error output (KeyError" in p for p in problems), problems


PAGE = """<html><head><title>Ch</title><link rel="stylesheet" href="{css}"></head><body>
<article class="bd-article"><p>Prose with 1e-3 is not an output.</p>
<div class="cell docutils container"><div class="cell_output docutils container">
<div class="output text_html"><style>td {{color: red}}</style><table><tr><td>{value}</td></tr></table></div>
</div></div>
<div class="cell_output docutils container"><img src="{img}" /></div>
</article></body></html>"""


def test_page_problems_on_rendered_outputs_images_and_network(tmp_path):
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "fig.png").write_bytes(b"\x89PNG...")
    (tmp_path / "book").mkdir()
    good = PAGE.format(css="../_static/x.css", value="0.527", img="../_images/fig.png")
    assert html_output_texts(good)[0].strip() == "0.527", "style text is not output text"
    assert page_problems("book/ch", good, tmp_path, min_figures=1) == ([], 1)

    bad = PAGE.format(css="https://cdn.example.org/x.css", value="9.222e+99", img="../_images/missing.png")
    problems, figures = page_problems("book/ch", bad, tmp_path, min_figures=2)
    assert any("loads https://cdn.example.org/x.css from the network" in p for p in problems)
    assert any("output 1: scientific notation" in p for p in problems)
    assert any("missing.png does not resolve" in p for p in problems)
    assert any("1 figure(s), expected at least 2" in p for p in problems)
    assert not any("1e-3" in p for p in problems), "prose outside outputs is not judged by the output rules"


def test_layout_problems_from_a_measurement():
    dom = ('<body><pre id="check-book-result" style="display: none;">{"column": 752, "viewport": 1280, '
           '"tables": [{"index": 1, "width": 700, "head": "a"}, {"index": 2, "width": 973.4, "head": "label | seed"}], '
           '"images": [{"src": "../_images/a.png", "ok": true}, {"src": "../_images/b.png", "ok": false}], '
           '"height": 3000}</pre></body>')
    problems = layout_problems("book/ch", measured(dom))
    assert problems == ["book/ch: table 2 (label | seed) is 973 px wide, the content column 752 px at a 1280 px window",
                        "book/ch: figure ../_images/b.png did not load"]
    assert "did not finish loading" in layout_problems("book/ch", measured("<body></body>"))[0]


def test_a_table_wider_than_its_scrolling_output_area_is_a_problem():
    """A table inside an output area that scrolls is cut for the reader even when it is narrower than
    the content column (the note column of the old fit table)."""
    result = {"column": 752, "viewport": 1280, "images": [], "tables": [
        {"index": 1, "width": 746, "visible": 688, "head": "form | favoured"},
        {"index": 2, "width": 680, "visible": 688, "head": "fits"},
        {"index": 3, "width": 700, "head": "no visible width measured"}]}
    problems = layout_problems("book/ch", result)
    assert problems == ["book/ch: table 1 (form | favoured) is 746 px wide, the content column 752 px, and 688 px "
                        "of it show (the rest scrolls) at a 1280 px window"]


def _script():
    spec = importlib.util.spec_from_file_location("check_book", ROOT / "scripts" / "check_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _site(tmp_path: Path, table_columns: int) -> Path:
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    (html / "_images").mkdir()
    (html / "_images" / "broken.png").write_bytes(b"not a png at all")
    cells = "".join(f"<td>column {i} with a long heading</td>" for i in range(table_columns))
    page = ("<html><head><title>Page</title><style>article {width: 700px}</style></head><body>"
            f"<article class='bd-article'><table style='border-collapse:collapse'><tr>{cells}</tr></table>"
            "<div class='cell_output'><img src='../_images/broken.png'></div></article></body></html>")
    (html / "book" / "page.html").write_text(page)
    (html / "index.html").write_text("<html><head><title>Index</title></head><body><article class='bd-article'>"
                                     "<p>hello</p></article></body></html>")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: book/page\n")
    return html


def test_script_without_chromium_says_what_to_install(tmp_path, monkeypatch, capsys):
    script = _script()
    html = _site(tmp_path, 2)
    monkeypatch.setattr(script, "find_chromium", lambda: None)
    code = script.main(["--html", str(html), "--toc", str(tmp_path), "--out", str(tmp_path / "shots")])
    err = capsys.readouterr().err
    assert code == 3 and "apt-get install --no-install-recommends chromium" in err and "make check-book" in err
    assert script.main(["--html", str(html), "--toc", str(tmp_path), "--static-only"]) == 0
    assert script.main(["--html", str(tmp_path / "nothing"), "--static-only"]) == 2


@pytest.mark.skipif(not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")),
                    reason="Chromium is not installed (make check-book installs it)")
def test_script_in_chromium_finds_wide_tables_and_broken_figures(tmp_path, capsys):
    script = _script()
    html = _site(tmp_path, 12)
    code = script.main(["--html", str(html), "--toc", str(tmp_path), "--out", str(tmp_path / "shots")])
    err = capsys.readouterr().err
    assert code == 1
    assert "book/page: table 1" in err and "content column 700 px" in err
    assert "book/page: figure ../_images/broken.png did not load" in err
    assert "index:" not in err, "the index page has no problem"
    shots = sorted(p.name for p in (tmp_path / "shots").glob("*.png"))
    assert shots == ["book__page.png", "index.png"]


@pytest.mark.skipif(not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")),
                    reason="Chromium is not installed (make check-book installs it)")
def test_script_in_chromium_measures_what_a_scrolling_output_area_shows(tmp_path, capsys):
    script = _script()
    html = _site(tmp_path, 2)
    cells = "".join(f"<td>column {i} with a long heading</td>" for i in range(4))
    page = ("<html><head><title>Page</title><style>article {width: 700px} td {white-space: nowrap}</style></head>"
            "<body><article class='bd-article'><div style='overflow-x: auto; width: 400px'>"
            f"<table style='border-collapse:collapse'><tr>{cells}</tr></table></div></article></body></html>")
    (html / "book" / "page.html").write_text(page)
    code = script.main(["--html", str(html), "--toc", str(tmp_path), "--no-screenshots"])
    err = capsys.readouterr().err
    assert code == 1 and "book/page: table 1" in err and "and 400 px of it show" in err


def test_readme_pictures_are_small_windows_around_a_figure(tmp_path):
    from PIL import Image

    script = _script()
    shots = tmp_path / "shots"
    shots.mkdir()
    page = Image.new("RGB", (1280, 5000), "white")
    for y in range(0, 5000, 7):  # some texture, so that compression has something to do
        page.paste((y % 255, 90, 160), (100, y, 1180, y + 2))
    page.save(shots / "book__intro.png")
    page.save(shots / "book__executed__03_samplers.png")
    measurements = {"book/intro": {"images": [{"src": "a.png", "ok": True, "top": 700, "bottom": 1300}]},
                    "book/executed/03_samplers": {"images": [{"src": "b.png", "ok": False, "top": 50},
                                                             {"src": "c.png", "ok": True, "top": 3000}]}}
    problems = script.readme_screenshots(shots, measurements, tmp_path / "docs")
    assert problems == []
    for name in script.README_SHOTS:
        with Image.open(tmp_path / "docs" / name) as im:
            assert im.size == (1280, script.README_HEIGHT) and im.mode == "P"
        assert (tmp_path / "docs" / name).stat().st_size < 300 * 1024
    missing = script.readme_screenshots(shots, {}, tmp_path / "docs2")
    assert len(missing) == 2 and "no figure 1" in missing[0]
