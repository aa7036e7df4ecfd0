"""On-disk SQLite caches that heal themselves (the embedding and reference log-prob caches).

A cache only saves work, so a damaged one must never stop a run: a file that is not a SQLite
database, or one whose pages are damaged (a truncated copy, a crash on a file system that lost
writes), is moved aside to ``<name>.corrupt-<time>-<pid>`` with a warning naming both paths, and
an empty cache is created in its place; the lost values are computed again. The file is checked
(``PRAGMA quick_check``) the first time a process opens it, and any later "malformed" or "not a
database" error heals the same way. Other SQLite errors (a lock held too long, a read-only or
full disk) are raised as :class:`CacheError` naming the file.
"""

from __future__ import annotations

import os
import sqlite3
import time
import warnings
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_CORRUPTION = ("malformed", "not a database", "file is encrypted", "disk image", "database corrupt")
_checked: set[str] = set()  # caches checked by this process


class CacheError(RuntimeError):
    """A cache file could not be used for a reason other than damage (locked, read-only, full)."""


def is_corruption(err: sqlite3.Error) -> bool:
    """Whether a SQLite error means the file is damaged (as opposed to locked or unwritable)."""
    text = str(err).lower()
    return any(m in text for m in _CORRUPTION) or (
        isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError)
        and not isinstance(err, sqlite3.IntegrityError)
    )


class SqliteCache:
    """A SQLite file with one schema, opened per operation; damage heals (see module doc).

    Subclasses set :attr:`schema` (``CREATE TABLE IF NOT EXISTS …`` statements) and use
    :meth:`run` for every query.
    """

    schema: tuple[str, ...] = ()

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheError(f"cannot create the cache folder {self.path.parent} ({err.strerror or err})") from None
        self.run(self._check, write=True)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def _check(self, con: sqlite3.Connection) -> None:
        key = str(self.path.resolve())
        if key not in _checked:
            rows = con.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                raise sqlite3.DatabaseError(f"database disk image is malformed (quick_check: {rows[0][0]})")
            _checked.add(key)
        for statement in self.schema:
            con.execute(statement)

    def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """``fn(connection)`` (inside a transaction when ``write``); a damaged file is moved
        aside, rebuilt empty, and ``fn`` is run once more on the new file."""
        for attempt in range(2):
            try:
                with closing(self._connect()) as con:
                    if write:
                        with con:
                            return fn(con)
                    return fn(con)
            except sqlite3.Error as err:
                if "no such table" in str(err) and attempt == 0:  # rebuilt by another process meanwhile
                    self._create()
                    continue
                if attempt == 0 and is_corruption(err):
                    self.move_aside(err)
                    self._create()
                    continue
                raise CacheError(f"cache {self.path}: {type(err).__name__}: {err}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _create(self) -> None:
        with closing(self._connect()) as con, con:
            for statement in self.schema:
                con.execute(statement)
        _checked.add(str(self.path.resolve()))

    def move_aside(self, reason: Any) -> Path:
        """Move the damaged file (and its journal files) aside; warn with both paths."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:  # another process moved it first
            pass
        except OSError as err:
            raise CacheError(f"cache {self.path} is damaged ({reason}) and cannot be moved aside "
                             f"({err.strerror or err}); delete it by hand") from None
        for suffix in ("-journal", "-wal", "-shm"):
            extra = self.path.with_name(self.path.name + suffix)
            if extra.exists():
                os.replace(extra, aside.with_name(aside.name + suffix))
        warnings.warn(f"cache {self.path} was damaged ({reason}); moved aside to {aside} and rebuilt empty "
                      "(its values will be computed again)", stacklevel=4)
        return aside
