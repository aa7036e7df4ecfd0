"""When the library's automatic progress bars are shown: on a terminal, never in a notebook's outputs.

Functions that show a tqdm bar by themselves for long work (``progress=None``: embedding many
texts, computing many reference log-probs) ask :func:`auto_progress` first. A bar is shown when
the work is long *and* bars are allowed, that is unless:

- ``EFFALIGN_PROGRESS=0`` (``EFFALIGN_PROGRESS=1`` forces them on, even in a notebook);
- ``TQDM_DISABLE`` is set to a true value (the book's kernels run with ``TQDM_DISABLE=1``);
- the code runs inside a Jupyter kernel whose standard error is not a terminal (a notebook being
  executed by papermill or opened in Jupyter): each bar refresh would become a line of the cell's
  output, and the book shows no progress bars.

An explicit ``progress=True`` or ``progress=False`` passed by the caller always wins.
"""

from __future__ import annotations

import os
import sys

__all__ = ["auto_progress", "bars_allowed", "in_notebook"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def in_notebook() -> bool:
    """True inside a Jupyter (IPython) kernel whose standard error is not a terminal."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return True


def bars_allowed() -> bool:
    """Whether automatic progress bars may be shown now (see the module docstring)."""
    forced = os.environ.get("EFFALIGN_PROGRESS", "").strip().lower()
    if forced in _TRUE:
        return True
    if forced in _FALSE:
        return False
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in _TRUE:
        return False
    return not in_notebook()


def auto_progress(requested: bool | None, long_work: bool) -> bool:
    """``requested`` when the caller chose; otherwise a bar for ``long_work`` where bars are allowed."""
    if requested is not None:
        return bool(requested)
    return bool(long_work) and bars_allowed()
