"""What a reader of the built book must never see, checked without a browser.

The rules (each problem is one line naming the chapter, the cell or output and the offending text):

- **progress bars**: tqdm-style bars (``42%|████``, ``12/40 [00:03<00:09, 3.1it/s]``);
- **warnings**: ``SomethingWarning``, ``Warning:``, a line starting ``WARNING``, and any output a
  cell wrote to standard error;
- **tracebacks**: error outputs, ``Traceback (most recent call last)``;
- **scientific notation**: a number such as ``3.9e+73`` or ``1E-06``, unless a physical unit
  follows it (:data:`PHYSICAL_UNITS`, e.g. ``2.1e+18 FLOP``).

They apply to the cell outputs of executed notebooks (:func:`notebook_output_problems`, the
MIME type the book would show for each output) and to the outputs of rendered pages
(:func:`html_output_texts`, the text inside ``div.cell_output``). :func:`page_problems` adds the
page-level checks that need no browser: a title, images that resolve to non-empty files of the
build, no script or stylesheet from the network, and a minimum number of figures.

The checks that need a browser (tables wider than the content column at 1280 px, images that
do not load) are measured by :data:`MEASURE_JS` inside the page and judged by
:func:`layout_problems`; ``scripts/check_book.py`` runs them in headless Chromium.
"""

from __future__ import annotations

import html.parser
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MEASURE_JS",
    "PHYSICAL_UNITS",
    "html_output_texts",
    "layout_problems",
    "notebook_output_problems",
    "page_problems",
    "text_problems",
]

PROGRESS = re.compile(r"\d{1,3}%\|"                       # 42%|
                      r"|\|[█▏▎▍▌▋▊▉#]{2,}"                 # |████
                      r"|\[\d+:\d\d(?::\d\d)?<"             # [00:03<
                      r"|\d+(?:\.\d+)?\s?(?:it|s)/(?:s|it)\]")  # 3.1it/s]
WARNING = re.compile(r"\b[A-Z]\w*Warning\b|\bWarning:|^\s*WARNING\b|\bwarnings\.warn\(", re.MULTILINE)
TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
#: a Markdown table's delimiter row (on a rendered page "---" becomes a dash): cell outputs are rendered
#: as CommonMark, which has no tables
MARKDOWN_TABLE = re.compile(r"\|\s*:?(?:-{3,}|[—–])\s*:?\|\s*:?(?:-{3,}|[—–])\s*:?\|")
#: units after which scientific notation is acceptable (physical quantities)
PHYSICAL_UNITS = ("s", "ms", "µs", "us", "ns", "h", "B", "KiB", "MiB", "GiB", "TiB", "kB", "MB", "GB", "TB",
                  "FLOP", "FLOPs", "FLOP/s", "Hz", "W", "J", "Wh", "kWh", "m", "K")
_UNITS = "|".join(re.escape(u) for u in sorted(PHYSICAL_UNITS, key=len, reverse=True))
SCIENTIFIC = re.compile(r"(?<![\w.])[-−]?\d+(?:\.\d+)?[eE][+\-−]?\d+(?![\w.])"
                        rf"(?!\s?(?:{_UNITS})(?![\w/]))")

#: the MIME types a Jupyter Book HTML page shows, most preferred first (myst-nb's order)
DISPLAY_ORDER = ("text/html", "image/svg+xml", "image/png", "image/jpeg", "text/markdown", "text/latex",
                 "text/plain")


def _excerpt(text: str, match: re.Match[str], width: int = 50) -> str:
    start, end = max(match.start() - width, 0), min(match.end() + width, len(text))
    return " ".join(text[start:end].split())


def text_problems(text: str, where: str) -> list[str]:
    """Progress bars, warnings, tracebacks, Markdown tables left as text and scientific notation in a
    text a reader sees."""
    problems = []
    for rule, pattern in (("a progress bar", PROGRESS), ("a warning", WARNING), ("a traceback", TRACEBACK),
                          ("a Markdown table shown as text (outputs render as CommonMark: show a table as HTML)",
                           MARKDOWN_TABLE)):
        found = pattern.search(text)
        if found:
            problems.append(f"{where}: {rule}: …{_excerpt(text, found)}…")
    numbers = [m.group(0) for m in SCIENTIFIC.finditer(text)]
    if numbers:
        shown = ", ".join(dict.fromkeys(numbers[:5]))
        problems.append(f"{where}: scientific notation ({len(numbers)} number(s), e.g. {shown})")
    return problems


class _Text(html.parser.HTMLParser):
    """Visible text of an HTML fragment (no <style>, <script> or tags)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _visible_text(fragment: str) -> str:
    parser = _Text()
    parser.feed(fragment)
    return " ".join(parser.parts)


def _shown(output: Mapping[str, Any]) -> str:
    """The text of the representation the book shows for a display or result output."""
    data = output.get("data") or {}
    for mime in DISPLAY_ORDER:
        if mime in data:
            if mime.startswith("image/"):
                return ""
            value = data[mime]
            text = "".join(value) if isinstance(value, list) else str(value)
            return _visible_text(text) if mime == "text/html" else text
    return ""


def notebook_output_problems(notebook: Any, name: str | None = None) -> list[str]:
    """Problems in the cell outputs of an executed notebook (a path or an ``nbformat`` node)."""
    import nbformat

    if isinstance(notebook, (str, Path)):
        name = name or Path(notebook).stem
        notebook = nbformat.read(str(notebook), as_version=4)
    name = name or "notebook"
    problems = []
    for i, cell in enumerate(notebook.cells):
        for j, out in enumerate(cell.get("outputs", [])):
            where = f"{name}, cell {i}, output {j}"
            kind = out.get("output_type")
            if kind == "error":
                problems.append(f"{where}: an error output ({out.get('ename')}: {out.get('evalue')})")
                continue
            if kind == "stream":
                text = "".join(out.get("text", "")) if isinstance(out.get("text"), list) else out.get("text", "")
                if out.get("name") == "stderr" and text.strip():
                    first = text.strip().splitlines()[0][:120]
                    problems.append(f"{where}: writes to standard error: {first}")
                problems += text_problems(text, where)
            else:
                problems += text_problems(_shown(out), where)
    return problems


class _Outputs(html.parser.HTMLParser):
    """The visible text inside each ``div.cell_output`` of a rendered page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.outputs: list[list[str]] = []
        self._depth = 0  # div nesting inside the current cell_output (0: outside)
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        if tag != "div":
            return
        classes = (dict(attrs).get("class") or "").split()
        if self._depth:
            self._depth += 1
        elif "cell_output" in classes:
            self._depth = 1
            self.outputs.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script") and self._skip:
            self._skip -= 1
        if tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth and not self._skip:
            self.outputs[-1].append(data)


def html_output_texts(page: str) -> list[str]:
    """The visible text of every cell output of a rendered page, in page order."""
    parser = _Outputs()
    parser.feed(page)
    return [" ".join(parts) for parts in parser.outputs]


class _Page(html.parser.HTMLParser):
    """<img src>, <script src>, stylesheet <link href> and the <title> of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[str] = []
        self.loads: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        elif tag == "script" and a.get("src"):
            self.loads.append(a["src"])
        elif tag == "link" and "stylesheet" in a.get("rel", "") and a.get("href"):
            self.loads.append(a["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def content_images(images: Iterable[str]) -> list[str]:
    """Figures of a page (outputs and embedded images), not the theme's logos or icons."""
    return [s for s in images if "_images/" in s or s.startswith("data:image/")]


def page_problems(chapter: str, page: str, html_root: Path, min_figures: int = 0) -> tuple[list[str], int]:
    """Problems of one rendered page found without a browser, and its number of figures.

    ``chapter`` is the page's path below ``html_root`` without ``.html`` (``book/intro``)."""
    problems: list[str] = []
    scan = _Page()
    scan.feed(page)
    if not scan.title.strip():
        problems.append(f"{chapter}: the page has no title")
    page_dir = (html_root / chapter).parent
    for src in scan.images:
        if src.startswith("data:"):
            continue
        parsed = urllib.parse.urlparse(src)
        if parsed.scheme or parsed.netloc:
            problems.append(f"{chapter}: image from outside the build: {src}")
            continue
        path = (page_dir / urllib.parse.unquote(parsed.path)).resolve()
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"{chapter}: image {src} does not resolve to a non-empty file of the build")
    for src in scan.loads:
        if urllib.parse.urlparse(src).scheme in ("http", "https") or src.startswith("//"):
            problems.append(f"{chapter}: loads {src} from the network")
    for k, text in enumerate(html_output_texts(page)):
        problems += text_problems(text, f"{chapter}, output {k + 1}")
    figures = len(content_images(scan.images))
    if figures < min_figures:
        problems.append(f"{chapter}: {figures} figure(s), expected at least {min_figures}")
    return problems, figures


#: Measures the page after it loaded and appends the result as JSON in ``pre#check-book-result``:
#: the content column's width, every table's width and the width of it a reader sees (less than the
#: column inside an output area that scrolls or clips), with its first header cells, every image's
#: load state and position on the page, and the page's height.
MEASURE_JS = """
window.addEventListener('load', function () {
  setTimeout(function () {
    var article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    var column = article.getBoundingClientRect().width;
    var tables = [];
    article.querySelectorAll('table').forEach(function (t, i) {
      var heads = Array.prototype.slice.call(t.querySelectorAll('th, td'), 0, 4)
        .map(function (c) { return c.textContent.trim().slice(0, 30); }).filter(Boolean);
      // the width a reader sees: the content column, or less where an ancestor clips or scrolls
      var visible = column;
      for (var el = t.parentElement; el && el !== article.parentElement; el = el.parentElement) {
        var overflow = window.getComputedStyle(el).overflowX;
        if (overflow === 'auto' || overflow === 'scroll' || overflow === 'hidden' || overflow === 'clip') {
          visible = Math.min(visible, el.clientWidth);
        }
      }
      tables.push({index: i + 1, width: Math.max(t.getBoundingClientRect().width, t.scrollWidth), visible: visible,
                   head: heads.join(' | ')});
    });
    var images = [];
    document.querySelectorAll('article img').forEach(function (im) {
      var box = im.getBoundingClientRect();
      images.push({src: im.getAttribute('src') || '', ok: im.complete && im.naturalWidth > 0,
                   top: box.top + window.scrollY, bottom: box.bottom + window.scrollY});
    });
    var out = document.createElement('pre');
    out.id = 'check-book-result';
    out.style.display = 'none';
    out.textContent = JSON.stringify({column: column, viewport: window.innerWidth, tables: tables, images: images,
                                      height: document.documentElement.scrollHeight});
    document.body.appendChild(out);
  }, 300);
});
"""

_RESULT = re.compile(r'<pre id="check-book-result"[^>]*>(.*?)</pre>', re.DOTALL)


def measured(dom: str) -> dict[str, Any] | None:
    """The measurement :data:`MEASURE_JS` left in a dumped DOM (None when it did not run)."""
    import html as html_lib
    import json

    found = _RESULT.search(dom)
    return json.loads(html_lib.unescape(found.group(1))) if found else None


def layout_problems(chapter: str, result: Mapping[str, Any] | None, tolerance: float = 1.0) -> list[str]:
    """Problems in a page's measurement: tables wider than the content column or than the part of it
    their output area shows, images that did not load (``result`` None: the measurement did not run)."""
    if result is None:
        return [f"{chapter}: the page did not finish loading in the browser (no measurement)"]
    problems = []
    column = float(result["column"])
    for table in result.get("tables", []):
        visible = min(float(table.get("visible", column)), column)
        if float(table["width"]) > visible + tolerance:
            inside = "" if visible >= column - tolerance else f", and {visible:.0f} px of it show (the rest scrolls)"
            problems.append(f"{chapter}: table {table['index']} ({table['head'] or 'no header'}) is "
                            f"{float(table['width']):.0f} px wide, the content column {column:.0f} px{inside} "
                            f"at a {result.get('viewport', '?')} px window")
    for image in result.get("images", []):
        if not image.get("ok"):
            problems.append(f"{chapter}: figure {image.get('src', '')[:80]} did not load")
    return problems
