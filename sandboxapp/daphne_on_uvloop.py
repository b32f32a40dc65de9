"""Daphne, on uvloop: `python -m sandboxapp.daphne_on_uvloop [daphne's arguments]`.

Daphne runs Twisted's asyncio reactor on a loop that it makes when `daphne.server` is
imported, from the event loop policy of that moment; set uvloop's first, and every
websocket frame is handled on uvloop. With 200 terminals typing, that took 12 % off
Daphne's CPU time per keystroke (bench/README.md). Twisted accepts uvloop since 21.7.
"""

from __future__ import annotations

import asyncio
import gc
import sys

import uvloop


def daphne_argv(host: str, port: int) -> list[str]:
    """Daphne as `make run`, the benches and the browser tests start it."""
    return [
        sys.executable,
        "-m",
        __name__,
        *("-b", host, "-p", str(port)),
        # A class reconnecting at once after a sandboxd restart may wait its turn for a
        # sandbox longer than Daphne's default 5 s before the websocket is accepted.
        *("--websocket_connect_timeout", "30"),
        "sandboxapp.asgi:application",
    ]


def reactor_on_uvloop() -> asyncio.AbstractEventLoop:
    """Set uvloop's policy, then import Daphne's server, which makes the reactor's loop."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.server import twisted_loop

    return twisted_loop


def site_loaded() -> None:
    """Import the site (Django, its URL routes with every view they name) and freeze what
    that made, for good.

    Python's cycle collector walks every object it tracks at each full collection: the
    site's 100,000 or so, kept for the life of the process, took 70 ms a time on this
    2-core machine, while a class of 200 learners arriving set off one every few seconds
    (bench/README.md). Frozen, they are left out of every collection.
    """
    from django.urls import get_resolver

    import sandboxapp.asgi  # noqa: F401 (Django set up, the ASGI application built)

    get_resolver().url_patterns  # noqa: B018 (the URL conf imports the views)
    gc.freeze()


def writes_at_once() -> None:
    """Send what Daphne writes to a client's socket at once, when nothing waits before it.

    Twisted's TCP connections buffer every write and ask the loop to say when the socket
    can take it, then send at the loop's next turn and stop asking: two epoll_ctl calls
    and a turn of a busy loop for each websocket frame, a keystroke's echo included.
    asyncio's transports try the socket first; so does this, and whatever the socket
    does not take goes Twisted's own way, behind anything already waiting. With 200
    terminals typing: echo p99 and Daphne's CPU per keystroke about 10 % lower, bulk
    output 15-20 % higher (bench/README.md). TLS connections are left alone.
    """
    from twisted.internet import tcp

    buffered = tcp.Server.write

    def write(self: tcp.Server, data: bytes) -> None:
        if (
            data
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not getattr(self, "TLS", False)
            and not self._tempDataBuffer
            and self.offset == len(self.dataBuffer)
        ):
            sent = self.writeSomeData(data)
            if isinstance(sent, int) and sent > 0:  # else an error, which doWrite reports
                data = data[sent:]
            if not data:
                return
        buffered(self, data)

    tcp.Server.write = write  # type: ignore[method-assign]


# Frames shorter than this (a keystroke, an acknowledgement) are unmasked by SmallFrameMasker.
SMALL_FRAME = 128


class SmallFrameMasker:
    """Unmasks a short websocket frame with Python's integers: what autobahn's native masker
    does, without its allocations through cffi (an object, a buffer and a finaliser for
    every frame), which cost more than the XOR for a keystroke. Same interface: `process`
    continues where the last call stopped."""

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        length = len(data)
        start = self._ptr & 3
        key = (self._mask * ((start + length) // 4 + 1))[start : start + length]
        self._ptr += length
        return (int.from_bytes(data) ^ int.from_bytes(key)).to_bytes(length)


def small_frames_unmasked_in_python() -> None:
    """Every frame a browser sends is masked; autobahn builds a native masker per frame."""
    from autobahn.websocket import protocol

    native = protocol.create_xor_masker

    def create_xor_masker(mask: bytes, length: int | None = None) -> object:
        if length is not None and length < SMALL_FRAME:
            return SmallFrameMasker(mask)
        return native(mask, length)

    protocol.create_xor_masker = create_xor_masker


def main() -> None:
    reactor_on_uvloop()
    writes_at_once()
    small_frames_unmasked_in_python()
    site_loaded()
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
