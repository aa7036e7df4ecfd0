#!/usr/bin/env python3
"""Check the built book as a reader sees it: static rules on every page, then headless Chromium.

Usage: ``python scripts/check_book.py [--html _build/html] [--out _build/screenshots] [--static-only]
[--readme docs/screenshots]`` (``make check-book`` installs Chromium when it is missing, then runs this).

For every chapter of the table of contents (``_toc.yml``):

1. Without a browser (:mod:`effalign.bookcheck`): the page exists and has a title; no cell output
   shows a progress bar, a warning, standard-error text, a traceback or a number in scientific
   notation (outside physical units); every image resolves to a non-empty file of the build; no
   script or stylesheet comes from the network; chapters with figures have at least
   ``FIGURE_CHAPTERS`` of them.
2. In headless Chromium at a 1280 px wide window (the pages are served on 127.0.0.1 with a small
   measuring script injected): no table is wider than the content column; every figure loads;
   a full-page screenshot is saved to ``--out`` (``book__executed__02_scaling.png``...).

Chromium is not installed by this script: without it, the static checks run, the script says
what to install and exits 3 (``--static-only`` skips the browser and exits 0 when the static
checks pass). Exit status: 0 all checks passed; 1 a check failed; 2 no built book; 3 no Chromium.

``--readme DIR`` also writes the README's two pictures from the full-page screenshots
(:data:`README_SHOTS`): a 1280 x ``README_HEIGHT`` px window of a page around one of its figures,
quantised to a small palette (``scorecard.png``: the introduction with the scorecard;
``samplers.png``: the sampler chapter at its first figure).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from effalign.bookcheck import MEASURE_JS, layout_problems, measured, page_problems  # noqa: E402

#: chapters that must show at least this many figures
FIGURE_CHAPTERS = {
    "book/executed/01_data_and_information": 4,
    "book/executed/02_scaling": 2,
    "book/executed/03_samplers": 3,
    "book/executed/04_gpu_dpo": 2,
    "book/executed/05_findings": 1,
}
#: the README's pictures: file name -> (chapter, which figure, px of page above it)
README_SHOTS = {
    "scorecard.png": ("book/intro", 0, 800),
    "samplers.png": ("book/executed/03_samplers", 0, 260),
}
README_HEIGHT = 1600
README_COLOURS = 128
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280
MAX_SCREENSHOT_HEIGHT = 30000
INSTALL_HINT = ("Chromium is needed for the browser checks (table widths at 1280 px, figures loading, "
                "screenshots) and was not found ({names}).\nInstall it, e.g. on Debian or Ubuntu:\n"
                "    sudo apt-get install --no-install-recommends chromium\n"
                "or run `make check-book`, which installs it with apt-get when it is missing; "
                "`--static-only` skips the browser.")


def chapters(root: Path = ROOT) -> list[str]:
    """The pages of the table of contents, root first (``book/intro``, ``book/executed/01_...``)."""
    toc = (root / "_toc.yml").read_text()
    first = re.search(r"^root:\s*(\S+)", toc, flags=re.MULTILINE)
    files = re.findall(r"file:\s*(\S+)", toc)
    names = ([first.group(1)] if first else []) + files
    return [re.sub(r"\.(md|ipynb)$", "", n) for n in dict.fromkeys(names)]


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Measuring(http.server.SimpleHTTPRequestHandler):
    """Serves the build; HTML pages get :data:`MEASURE_JS` before ``</body>``."""

    def log_message(self, *args: object) -> None:  # no access log
        pass

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        import io

        page = path.read_text(encoding="utf-8")
        body = page.replace("</body>", f"<script>{MEASURE_JS}</script></body>", 1).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


def serve(directory: Path) -> tuple[socketserver.TCPServer, str]:
    handler = functools.partial(_Measuring, directory=str(directory))
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def chromium_args(binary: str, profile: str, height: int) -> list[str]:
    return [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
        "--virtual-time-budget=10000", "--run-all-compositor-stages-before-draw",
    ]


def static_checks(html_dir: Path, names: list[str]) -> tuple[list[str], dict[str, int]]:
    problems: list[str] = []
    figures: dict[str, int] = {}
    for chapter in names:
        page = html_dir / f"{chapter}.html"
        if not page.exists():
            problems.append(f"{chapter}: {chapter}.html was not built")
            continue
        found, figures[chapter] = page_problems(chapter, page.read_text(encoding="utf-8"), html_dir,
                                                FIGURE_CHAPTERS.get(chapter, 0))
        problems += found
    return problems, figures


def browser_checks(binary: str, html_dir: Path, names: list[str], out: Path | None, timeout: int,
                   measurements: dict[str, dict] | None = None) -> list[str]:
    """Layout problems of every page in Chromium, full-page screenshots in ``out``; each page's
    measurement goes into ``measurements`` when given."""
    problems: list[str] = []
    server, base = serve(html_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="check-book-") as profile:
            for chapter in names:
                if not (html_dir / f"{chapter}.html").exists():
                    continue
                url = f"{base}/{chapter}.html"
                dump = subprocess.run([*chromium_args(binary, profile, 1600), "--dump-dom", url],
                                      capture_output=True, text=True, timeout=timeout)
                if dump.returncode != 0 or not dump.stdout.strip():
                    problems.append(f"{chapter}: chromium --dump-dom failed ({dump.returncode}): {dump.stderr[-300:]}")
                    continue
                result = measured(dump.stdout)
                if measurements is not None and result is not None:
                    measurements[chapter] = result
                found = layout_problems(chapter, result)
                problems += found
                note = ""
                if out is not None and result is not None:
                    shot = out / (chapter.replace("/", "__") + ".png")
                    height = min(int(result.get("height") or 1600), MAX_SCREENSHOT_HEIGHT)
                    subprocess.run([*chromium_args(binary, profile, height), f"--screenshot={shot}", url],
                                   capture_output=True, text=True, timeout=timeout)
                    if not shot.exists() or shot.stat().st_size == 0:
                        problems.append(f"{chapter}: no screenshot written")
                    note = f", screenshot {shot} ({WIDTH}x{height})"
                tables = len(result.get("tables", [])) if result else 0
                print(f"[check_book] {chapter}: {tables} table(s), {len(found)} layout problem(s){note}", flush=True)
    finally:
        server.shutdown()
        server.server_close()
    return problems


def readme_screenshots(shots: Path, measurements: dict[str, dict], dest: Path) -> list[str]:
    """The README's pictures (:data:`README_SHOTS`) cut from the full-page screenshots in ``shots``
    and quantised to :data:`README_COLOURS` colours; returns the problems (a page or figure missing)."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, (chapter, figure, above) in README_SHOTS.items():
        shot = shots / (chapter.replace("/", "__") + ".png")
        images = [im for im in (measurements.get(chapter) or {}).get("images", []) if im.get("ok")]
        if not shot.exists() or len(images) <= figure:
            problems.append(f"{chapter}: no screenshot or no figure {figure + 1} for the README picture {name}")
            continue
        with Image.open(shot) as page:
            top = max(0, min(int(images[figure]["top"]) - above, page.height - README_HEIGHT))
            window = page.convert("RGB").crop((0, top, page.width, min(top + README_HEIGHT, page.height)))
        small = window.quantize(colors=README_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        small.save(dest / name, optimize=True)
        print(f"[check_book] README picture {dest / name}: {chapter} from {top} px, "
              f"{(dest / name).stat().st_size / 1024:.0f} KiB", flush=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default=str(ROOT / "_build" / "html"), help="the built book (default _build/html)")
    parser.add_argument("--out", default=str(ROOT / "_build" / "screenshots"), help="where the full-page PNGs go")
    parser.add_argument("--toc", default=str(ROOT), help="folder holding the _toc.yml of the build (default: the repository)")
    parser.add_argument("--static-only", action="store_true", help="no browser: only the static checks")
    parser.add_argument("--no-screenshots", action="store_true", help="browser checks without screenshots")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per Chromium call")
    parser.add_argument("--readme", default=None,
                        help="also write the README's two pictures (small PNGs) into this folder, e.g. docs/screenshots")
    args = parser.parse_args(argv)

    html_dir = Path(args.html).resolve()
    if not (html_dir / "index.html").exists():
        print(f"[check_book] {html_dir / 'index.html'} is missing: build the book first (make book)", file=sys.stderr)
        return 2
    names = chapters(Path(args.toc))
    problems, figures = static_checks(html_dir, names)
    print(f"[check_book] static checks: {len(names)} pages, {sum(figures.values())} figures, "
          f"{len(problems)} problem(s)", flush=True)
    binary = None if args.static_only else find_chromium()
    if not args.static_only and binary is None:
        if problems:
            print("[check_book] FAILED (static):\n  " + "\n  ".join(problems), file=sys.stderr)
        print("[check_book] " + INSTALL_HINT.format(names=", ".join(CANDIDATES)), file=sys.stderr)
        return 3
    if binary is not None:
        out = None if args.no_screenshots else Path(args.out)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        measurements: dict[str, dict] = {}
        problems += browser_checks(binary, html_dir, names, out, args.timeout, measurements)
        if args.readme:
            if out is None:
                problems.append("--readme needs the screenshots: drop --no-screenshots")
            else:
                problems += readme_screenshots(out, measurements, Path(args.readme))
    if problems:
        print("[check_book] FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    where = "" if binary is None or args.no_screenshots else f"; screenshots in {args.out}"
    print(f"[check_book] OK: {len(names)} pages" + (" (static checks only)" if binary is None else
                                                    f" checked in Chromium at {WIDTH} px") + where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
