"""Sphinx extension: launch buttons (Binder, Colab) open the notebook's source in ``notebooks/``.

The book renders the executed copies in ``book/executed/`` (git-ignored), so the theme's launch
links, which name the rendered file's path in the repository, would point at files the repository
does not have. This rewrites them to the committed notebook of the same name, which starts from
the default profile's parameters.
"""

from __future__ import annotations

from typing import Any

EXECUTED = "book/executed/"
SOURCE = "notebooks/"


def point_launch_buttons_at_sources(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if button.get("url"):
                button["url"] = button["url"].replace(EXECUTED, SOURCE)


def setup(app: Any) -> dict[str, Any]:
    # after sphinx-book-theme's add_launch_buttons (priority 501), before the page is written
    app.connect("html-page-context", point_launch_buttons_at_sources, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
