"""Terminal sessions: one PTY master held by sandboxd, its scrollback and its clients.

Output is read from the PTY into a ring buffer addressed by absolute byte offsets, so a
client that comes back with the last offset it drew gets exactly what it missed. The PTY
is read at most `high` bytes ahead of what the writer (the learner) has acknowledged as
drawn: past that the program blocks on its write, as in a real terminal, and memory stays
bounded whatever it prints. While others type, a flood is also read no faster than the
daemon's `Pacer` allows (pacing.py). Viewers (instructors) never hold the learner back: a
viewer that falls out of the ring is resynced from its tail, one that stalls is dropped.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import wire
from .child import set_winsize
from .pacing import Pacer
from .ptyinput import PtyInput

log = logging.getLogger("contained.sandboxd")

READ_CHUNK = 64 * 1024
# Resizes closer together than this are merged (dragging a window sends dozens).
RESIZE_INTERVAL = 0.05
# Output goes straight to a client's socket while less than this waits in it.
PUSH_LIMIT = 64 * 1024
# Output smaller than this (an echo, a prompt after a command's output) goes at once even
# within FRAME_INTERVAL of the previous frame: it is what a learner waits for.
PUSH_SMALL = 1024
# A flood goes out in fewer, fuller frames: a frame costs every hop after sandboxd (the web
# worker, the browser, the acknowledgement back) about the same whatever its size, so a
# frame of less than READ_CHUNK waits until this long after the client's previous one. A
# keystroke's echo, after a pause, goes at once; 4 ms is below what anyone sees.
FRAME_INTERVAL = 0.004
# A viewer whose socket accepts nothing for this long is dropped.
STALL_TIMEOUT = 30.0


@dataclass(frozen=True)
class FlowLimits:
    ring: int = 1024 * 1024
    high: int = 512 * 1024
    low: int = 128 * 1024
    # Bytes a second a terminal's output is read at while others type (pacing.py); 0: off.
    flood_rate: int = 64 * 1024

    def validate(self) -> None:
        if not 0 < self.low < self.high <= self.ring:
            raise ValueError("flow limits need 0 < low < high <= ring")
        if self.flood_rate < 0:
            raise ValueError("the flood rate cannot be negative")

    @property
    def ack_every(self) -> int:
        """How often a writer must acknowledge. Once it has drawn all it was sent, less than
        this is unacknowledged, which is at most `low`: a paused PTY is read again. Output
        that stays under `high` needs no ack at all, so typing sends none."""
        return self.low


class Recorder:
    """Writes the session as asciicast v2 (one JSON line per event), up to `max_bytes`."""

    def __init__(self, path: Path, rows: int, cols: int, max_bytes: int) -> None:
        self.path = path
        self.started = time.monotonic()
        self.max_bytes = max_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        header = {"version": 2, "width": cols, "height": rows, "timestamp": int(time.time())}
        self._line(header)

    def _line(self, event: object) -> None:
        if self.file.closed:
            return
        line = json.dumps(event, ensure_ascii=False) + "\n"
        if self.file.tell() + len(line) > self.max_bytes:
            self.file.write(json.dumps([self._now(), "o", "\r\n[recording size limit]\r\n"]))
            self.file.close()
            return
        self.file.write(line)

    def _now(self) -> float:
        return round(time.monotonic() - self.started, 6)

    def output(self, data: bytes) -> None:
        text = self.decoder.decode(data)
        if text:
            self._line([self._now(), "o", text])

    def resize(self, rows: int, cols: int) -> None:
        self._line([self._now(), "r", f"{cols}x{rows}"])

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


@dataclass(eq=False)
class Client:
    """One attached connection: its role, what has been sent to it, and its socket."""

    writer: asyncio.StreamWriter
    role: str  # "writer" or "viewer"
    sent: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    last_frame: float = 0.0

    def send(self, frame: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(frame)

    def event(self, message: dict) -> None:
        self.send(wire.encode_json(message))


class TerminalSession:
    """A shell on a PTY in a sandbox, shared by one writer and any number of viewers."""

    def __init__(
        self,
        master: int,
        *,
        flow: FlowLimits,
        on_end: Callable[[TerminalSession], None],
        recorder: Recorder | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.master = master
        self.flow = flow
        self.ring = bytearray()
        self.end = 0  # absolute offset just past the newest output byte
        self.acked = 0  # how far the writer has drawn: the PTY is read up to acked + high
        self.clients: set[Client] = set()
        self.ended = False
        self.reading = False
        self._held = False  # past the high watermark, until the writer acks down to low
        self._loop = asyncio.get_running_loop()
        self._pacer = pacer or Pacer(0)
        self._allowance = self._pacer.allowance(self._loop.time())
        self._paced: asyncio.TimerHandle | None = None
        self.input = PtyInput(master)
        self.recorder = recorder
        self._on_end = on_end
        self._size: tuple[int, int] | None = None
        self._last_resize = 0.0
        self._resize_pending: asyncio.TimerHandle | None = None
        os.set_blocking(master, False)
        self._sync_reader()

    @property
    def start(self) -> int:
        """Offset of the oldest byte still in the ring."""
        return self.end - len(self.ring)

    # -- output ------------------------------------------------------------------------

    def _sync_reader(self) -> None:
        """Read the PTY unless the session ended, is held by flow control or is paced."""
        want = not self.ended and not self._held and self._paced is None
        if want and not self.reading:
            self._loop.add_reader(self.master, self._readable)
        elif self.reading and not want:
            self._loop.remove_reader(self.master)
        self.reading = want

    def _pace_over(self) -> None:
        self._paced = None
        self._sync_reader()

    def _release(self) -> None:
        """The writer has drawn enough: read again once below the low watermark."""
        if self.end - self.acked <= self.flow.low:
            self._held = False
            self._sync_reader()

    def _readable(self) -> None:
        # A PTY gives at most 4 KiB a read: during a flood, what is already there is taken
        # in one go (up to the high watermark), so it becomes one frame rather than sixteen.
        data = bytearray()
        ended = False
        while True:
            try:
                chunk = os.read(self.master, READ_CHUNK - len(data))
            except BlockingIOError:
                break
            except OSError as exc:
                # EIO: every slave fd is closed, the shell and its jobs are gone.
                if exc.errno != errno.EIO:
                    log.warning("terminal %s: reading the pty failed: %s", self.id, exc)
                chunk = b""
            if not chunk:
                ended = True
                break
            data += chunk
            if len(data) >= READ_CHUNK or self.end + len(data) - self.acked > self.flow.high:
                break
        if data:
            self.append(bytes(data))
        if ended:
            self.close()
            return
        self._held = self.end - self.acked > self.flow.high
        now = self._loop.time()
        delay = self._pacer.delay(self, self._allowance, len(data), now)
        if delay > 0:
            self._paced = self._loop.call_at(now + delay, self._pace_over)
        self._sync_reader()

    def append(self, data: bytes) -> None:
        """Add output (from the PTY, or a notice from the daemon) and wake the clients."""
        self.ring += data
        self.end += len(data)
        if len(self.ring) > self.flow.ring:
            # bytearray drops its head without copying the rest.
            del self.ring[: len(self.ring) - self.flow.ring]
        if self.recorder is not None:
            self.recorder.output(data)
        for client in self.clients:
            self._push(client, data)

    def _push(self, client: Client, data: bytes) -> None:
        """A client that is caught up, on a socket that keeps up, gets `data` at once:
        a keystroke's echo then costs no task switch. Any other is woken to catch up."""
        transport = client.writer.transport
        now = self._loop.time()
        if (
            client.sent == self.end - len(data)
            and (len(data) < PUSH_SMALL or now >= client.last_frame + FRAME_INTERVAL)
            and not client.closed
            and not transport.is_closing()
            and transport.get_write_buffer_size() < PUSH_LIMIT
        ):
            client.send(wire.encode_output(client.sent, data))
            client.sent = self.end
            client.last_frame = now
        else:
            client.wake.set()

    def ack(self, offset: int) -> None:
        """The writer drew everything before `offset`."""
        self.acked = max(self.acked, min(offset, self.end))
        self._release()

    def tail_from(self, offset: int) -> int:
        """Where a client that drew up to `offset` resumes: there if the ring still holds
        it, else at the first line start of the ring (after a reset of its screen)."""
        if self.start <= offset <= self.end:
            return offset
        newline = self.ring.find(b"\n")
        return self.start + newline + 1 if 0 <= newline < len(self.ring) - 1 else self.start

    # -- clients -----------------------------------------------------------------------

    def attach(self, client: Client) -> None:
        if client.role == "writer":
            for other in [c for c in self.clients if c.role == "writer"]:
                other.event({"event": "detached", "reason": "replaced"})
                self.detach(other)
            # The new writer resumes where it has drawn: flow control restarts from there.
            self.acked = max(self.start, min(client.sent, self.end))
            self._release()
        self.clients.add(client)
        client.wake.set()

    def detach(self, client: Client, *, stalled: bool = False) -> None:
        client.closed = True
        client.wake.set()
        if client.role == "writer" and client in self.clients:
            self._pacer.gone(self)
        self.clients.discard(client)
        with contextlib.suppress(Exception):
            if stalled or not client.writer.can_write_eof():
                client.writer.close()
            else:
                # Half-close: the client reads our last frames (the exit or "detached"
                # event), and the acknowledgements it still sends meet an open socket,
                # not a closed one whose error would end its reading early.
                client.writer.write_eof()

    async def pump(self, client: Client) -> None:
        """Send `client` everything it has not seen, as fast as its socket takes it."""
        while not client.closed:
            await client.wake.wait()
            client.wake.clear()
            while not client.closed and client.sent < self.end:
                early = client.last_frame + FRAME_INTERVAL - self._loop.time()
                if early > 0 and self.end - client.sent < READ_CHUNK:
                    # Until the interval is up, or a full frame is waiting: more output
                    # wakes this pump again.
                    client.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(client.wake.wait(), early)
                    continue
                if client.sent < self.start:
                    client.sent = self.tail_from(client.sent)
                    client.event({"event": "resync", "offset": client.sent})
                begin = client.sent - self.start
                chunk = memoryview(self.ring)[begin : begin + READ_CHUNK]
                client.send(wire.encode_output(client.sent, chunk))
                client.last_frame = self._loop.time()
                client.sent += len(chunk)
                chunk.release()
                try:
                    await asyncio.wait_for(client.writer.drain(), STALL_TIMEOUT)
                except (TimeoutError, ConnectionError):
                    log.info("terminal %s: dropped a %s that stopped reading", self.id, client.role)
                    self.detach(client, stalled=True)
                    return
            if self.ended and client.sent >= self.end:
                client.event({"event": "exit"})
                self.detach(client)

    # -- input -------------------------------------------------------------------------

    def typed(self) -> None:
        """The writer typed: input sent here, or written to the PTY by a web worker that
        holds it, which says so (at most every TYPED_EVERY seconds, and at once for a
        control key). For the pacer, and a Ctrl-C's prompt comes through a flood at once."""
        if self.ended:
            return  # gone from the pacer already: a late notice must not count it again
        replying = self._pacer.typed(self, self._allowance, self._loop.time())
        if replying and self._paced is not None:
            self._paced.cancel()
            self._pace_over()

    def write(self, data: bytes) -> None:
        """Queue input for the program; the caller waits on `input.room` before more. Once
        the session has ended both do nothing (`input` is closed with it)."""
        self.typed()
        self.input.write(data)

    def resize(self, rows: int, cols: int) -> None:
        self._size = (max(1, min(rows, 1000)), max(1, min(cols, 1000)))
        wait = self._last_resize + RESIZE_INTERVAL - time.monotonic()
        if wait <= 0:
            self._apply_size()
        elif self._resize_pending is None:
            self._resize_pending = self._loop.call_later(wait, self._apply_size)

    def _apply_size(self) -> None:
        self._resize_pending = None
        if self._size is None or self.ended:
            return
        self._last_resize = time.monotonic()
        with contextlib.suppress(OSError):
            set_winsize(self.master, *self._size)
        if self.recorder is not None:
            self.recorder.resize(*self._size)

    # -- end ---------------------------------------------------------------------------

    def close(self) -> None:
        """End the session: the shell exited, or the sandbox is going away."""
        if self.ended:
            return
        self.ended = True
        self._sync_reader()
        self._pacer.gone(self)
        if self._paced is not None:
            self._paced.cancel()
        self.input.close()
        if self._resize_pending is not None:
            self._resize_pending.cancel()
        os.close(self.master)
        if self.recorder is not None:
            self.recorder.close()
        for client in self.clients:
            client.wake.set()
        self._on_end(self)
