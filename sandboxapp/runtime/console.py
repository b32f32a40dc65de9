"""Attach the calling terminal to a sandbox's terminal (for `manage.py sandbox run`)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import termios
import tty
from collections.abc import Iterator

from .child import set_winsize
from .sandbox import Process


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    # TCSANOW, not the default TCSAFLUSH: keystrokes typed ahead must reach the shell.
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _copy_size(master: int) -> None:
    rows, cols = os.get_terminal_size(0)
    set_winsize(master, rows, cols)


def _write_all(fd: int, data: bytes) -> None:
    # A large paste may not fit in one write to a terminal.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(process: Process) -> int:
    """Pass bytes both ways between our terminal and the sandboxed program's until it
    exits; return its status."""
    master = process.terminal
    assert master is not None
    previous = signal.signal(signal.SIGWINCH, lambda *_: _copy_size(master))
    try:
        with _raw(0):
            while True:
                readable, _, _ = select.select([0, master], [], [])
                if master in readable:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: the last process on the terminal is gone
                        break
                    if not data:
                        break
                    _write_all(1, data)
                if 0 in readable:
                    data = os.read(0, 65536)
                    if not data:
                        break
                    _write_all(master, data)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(master)
    return process.wait()
