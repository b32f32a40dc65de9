"""Input for the program on a PTY, written without ever blocking an event loop.

Both ends of a terminal write with it: sandboxd for a client that sends INPUT frames, and
the web worker that holds the PTY's master itself (docs/sandboxd-protocol.md, "pty"). What
the program has not read yet waits here, in order; past `INPUT_HIGH` the writer waits on
`room`, so a huge paste stays in its sender's socket, not in our memory.
"""

from __future__ import annotations

import asyncio
import os

# Input waiting for the program to read it; past this the writer waits for room.
INPUT_HIGH = 256 * 1024


class PtyInput:
    def __init__(self, fd: int) -> None:
        self.fd = fd  # non-blocking: the PTY master's file description is shared
        self.pending = bytearray()
        self.room = asyncio.Event()
        self.room.set()
        self._loop = asyncio.get_running_loop()
        self._waiting = False
        self.closed = False

    def write(self, data: bytes) -> None:
        """Queue `data` behind what is pending; the caller awaits `room` before more."""
        if self.closed:
            return
        was_empty = not self.pending
        self.pending += data
        if was_empty:
            self._flush()
        if len(self.pending) > INPUT_HIGH:
            self.room.clear()

    def _flush(self) -> None:
        try:
            written = os.write(self.fd, self.pending)
        except BlockingIOError:
            written = 0
        except OSError:
            # EIO, or the fd closed under us: what was typed has nowhere to go, and the
            # terminal's output side reports the end.
            self.pending.clear()
            self.room.set()
            return
        del self.pending[:written]
        if self.pending and not self._waiting:
            self._waiting = True
            self._loop.add_writer(self.fd, self._writable)
        if len(self.pending) <= INPUT_HIGH:
            self.room.set()

    def _writable(self) -> None:
        self._waiting = False
        self._loop.remove_writer(self.fd)
        self._flush()

    def close(self) -> None:
        """Stop writing: drop what is pending and release any waiting writer. The fd
        itself is its owner's to close."""
        if self._waiting:
            self._loop.remove_writer(self.fd)
            self._waiting = False
        self.closed = True
        self.pending.clear()
        self.room.set()
