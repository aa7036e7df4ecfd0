#!/usr/bin/env python3
"""Render every chapter of the built book in headless Chromium and check its figures.

Usage: ``python scripts/check_book.py [--html _build/html] [--out _build/screenshots]``

1. Installs Debian's ``chromium`` with apt-get when no Chromium is found (``apt-get update`` first).
2. Serves the HTML on 127.0.0.1 (``http.server`` in a thread).
3. For every chapter in the table of contents: dumps the DOM after JavaScript ran
   (``--dump-dom``) and takes a full-window screenshot (``--screenshot``) into ``--out``.
4. Checks, per chapter: the page loaded (title present); every ``<img src>`` resolves to a
   non-empty file of the build; chapters that should have figures (the notebook chapters with a
   figure, see ``FIGURE_CHAPTERS``) have at least one; no ``<script src>`` or stylesheet loads
   from the network; no output shows a Python traceback.

Exits non-zero and lists the problems when a check fails.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [
    "book/intro",
    "book/isa",
    "book/methods",
    "book/executed/01_data_and_information",
    "book/executed/02_scaling",
    "book/executed/03_samplers",
    "book/executed/04_gpu_dpo",
    "book/executed/05_findings",
    "book/limitations",
    "book/scale",
    "book/references",
]
#: chapters that must show at least this many figures
FIGURE_CHAPTERS = {
    "book/executed/01_data_and_information": 3,
    "book/executed/02_scaling": 2,
    "book/executed/03_samplers": 3,
    "book/executed/04_gpu_dpo": 2,
    "book/executed/05_findings": 1,
}
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    """The Chromium binary; installs the Debian package ``chromium`` when none is found."""
    found = find_chromium()
    if found:
        return found
    print("[check_book] chromium not found: installing the Debian package (apt-get)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=True, env=env)
    found = find_chromium()
    if not found:
        raise SystemExit("chromium is still missing after apt-get install")
    return found


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no access log
        pass


def serve(directory: Path) -> tuple[socketserver.TCPServer, str]:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = socketserver.TCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def chromium_args(binary: str, profile: str, size: str = "1280,2400") -> list[str]:
    return [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={size}",
        "--virtual-time-budget=8000", "--run-all-compositor-stages-before-draw",
    ]


class _Scan(html.parser.HTMLParser):
    """Collects <img src>, <script src>, stylesheet <link href> and the <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "link" and "stylesheet" in a.get("rel", "") and a.get("href"):
            self.styles.append(a["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def content_images(images: list[str]) -> list[str]:
    """Figures of the page (outputs and embedded images), not the theme's logos or icons."""
    return [s for s in images if "_images/" in s or s.startswith("data:image/png")]


def check_page(chapter: str, dom: str, html_dir: Path, base_url: str) -> tuple[list[str], int]:
    problems: list[str] = []
    scan = _Scan()
    scan.feed(dom)
    if not scan.title.strip():
        problems.append(f"{chapter}: the page has no title (did it load?)")
    page_url = f"{base_url}/{chapter}.html"
    for src in scan.images:
        if src.startswith("data:"):
            continue
        url = urllib.parse.urljoin(page_url, src)
        if not url.startswith(base_url):
            problems.append(f"{chapter}: image from outside the build: {src}")
            continue
        path = html_dir / urllib.parse.unquote(urllib.parse.urlparse(url).path.lstrip("/"))
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"{chapter}: image {src} does not resolve to a non-empty file ({path})")
    for src in scan.scripts + scan.styles:
        if urllib.parse.urljoin(page_url, src).startswith(("http://", "https://")) and not \
                urllib.parse.urljoin(page_url, src).startswith(base_url):
            problems.append(f"{chapter}: loads {src} from the network")
    if "Traceback (most recent call last)" in dom:
        problems.append(f"{chapter}: an output shows a Python traceback")
    figures = len(content_images(scan.images))
    need = FIGURE_CHAPTERS.get(chapter, 0)
    if figures < need:
        problems.append(f"{chapter}: {figures} figure(s), expected at least {need}")
    return problems, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default=str(ROOT / "_build" / "html"), help="the built book (default _build/html)")
    parser.add_argument("--out", default=str(ROOT / "_build" / "screenshots"), help="where the PNGs go")
    parser.add_argument("--no-screenshots", action="store_true", help="only check the DOM")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per Chromium call")
    args = parser.parse_args(argv)

    html_dir = Path(args.html).resolve()
    if not (html_dir / "index.html").exists():
        print(f"[check_book] {html_dir / 'index.html'} is missing: build the book first (make book)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    binary = ensure_chromium()
    server, base = serve(html_dir)
    problems: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="check-book-") as profile:
            for chapter in CHAPTERS:
                if not (html_dir / f"{chapter}.html").exists():
                    problems.append(f"{chapter}: {chapter}.html was not built")
                    continue
                url = f"{base}/{chapter}.html"
                dump = subprocess.run([*chromium_args(binary, profile), "--dump-dom", url], capture_output=True,
                                      text=True, timeout=args.timeout)
                if dump.returncode != 0 or not dump.stdout.strip():
                    problems.append(f"{chapter}: chromium --dump-dom failed ({dump.returncode}): {dump.stderr[-300:]}")
                    continue
                page_problems, figures = check_page(chapter, dump.stdout, html_dir, base)
                problems.extend(page_problems)
                shot = out / (chapter.replace("/", "__") + ".png")
                if not args.no_screenshots:
                    subprocess.run([*chromium_args(binary, profile), f"--screenshot={shot}", url], capture_output=True,
                                   text=True, timeout=args.timeout)
                    if not shot.exists() or shot.stat().st_size == 0:
                        problems.append(f"{chapter}: no screenshot written")
                print(f"[check_book] {chapter}: {figures} figure(s), {len(page_problems)} problem(s)"
                      + ("" if args.no_screenshots else f", screenshot {shot}"), flush=True)
    finally:
        server.shutdown()
        server.server_close()
    if problems:
        print("[check_book] FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"[check_book] OK: {len(CHAPTERS)} chapters rendered in Chromium; screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
