"""Entry points of the child processes that tests/test_reliability.py starts (forkserver children).

:func:`run_cli` installs a socket guard (every attempt to reach another machine is written to a
log file and refused), sends the child's output to a log file and runs ``python -m effalign``'s
``main`` in the child, exiting with its status.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence

LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}


def install_socket_guard(log_path: str) -> None:
    """Refuse and log every internet connection and host-name lookup (local sockets pass)."""
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def note(what: str) -> None:
        with open(log_path, "a") as fh:
            fh.write(f"{os.getpid()} {what}\n")

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            note(f"connect {address!r}")
            raise OSError("network access refused by the test's socket guard")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            note(f"connect_ex {address!r}")
            return 111
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host not in LOCAL_HOSTS:
            note(f"getaddrinfo {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, "name lookup refused by the test's socket guard")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


def run_cli(args: Sequence[str], guard_log: str, out_log: str) -> None:
    """``python -m effalign <args>`` in this process, under the socket guard, output to ``out_log``."""
    fd = os.open(out_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    install_socket_guard(guard_log)
    from effalign.cli import main

    code = main(list(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def noop() -> None:
    """Starts the fork server (and its preloaded modules) without doing anything."""
