"""The web tier's way to sandboxd: one short connection per request, one per terminal.

Every failure is one of the exceptions below, with a message fit for a log; `Refused`
carries the daemon's code and a message fit for the learner.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .ptyinput import PtyInput
from .syscalls import recv_fds

DEFAULT_TIMEOUT = 10.0
# Creating a sandbox can wait behind others being created: attach allows longer.
ATTACH_TIMEOUT = 30.0
# A writer that types on the PTY itself tells sandboxd so at most this often (its pacer
# counts a typist for 2 s), and at once, before the key, for a control key: Enter, or a
# Ctrl-C whose prompt must come through a flood without waiting.
TYPED_EVERY = 1.0
# Events after which a writer has no business typing on the PTY any more.
PTY_ENDS = {"exit", "stopped", "detached", "error"}


class SandboxdError(Exception):
    """Talking to sandboxd failed."""


class Unavailable(SandboxdError):
    """sandboxd is not running, or not answering."""


@dataclass(frozen=True)
class Output:
    """Terminal output, as sandboxd's OUTPUT frame carries it: the u64 offset of its first
    byte, then the bytes. Kept whole, so a relay can pass it on without taking it apart
    (the terminal websocket's output frame is the same after its opcode)."""

    payload: bytes

    @property
    def offset(self) -> int:
        return int(wire.OFFSET.unpack_from(self.payload)[0])

    @property
    def data(self) -> bytes:
        return self.payload[wire.OFFSET.size :]

    @property
    def end(self) -> int:
        return self.offset + len(self.payload) - wire.OFFSET.size


@dataclass(frozen=True)
class Event:
    """A terminal event: resync, exit, stopped, detached or error (see the protocol doc)."""

    message: dict

    @property
    def name(self) -> str:
        return str(self.message.get("event"))


class Refused(wire.Refused, SandboxdError):
    """sandboxd answered with a refusal (see wire.Refused)."""


def _reply(message: dict) -> dict:
    if not message.get("ok"):
        raise Refused(str(message.get("error", "failed")), str(message.get("message", "")))
    return message


async def _connect(path: Path, timeout: float) -> socket.socket:
    """A non-blocking connection to sandboxd, or Unavailable."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, str(path)), timeout)
    except (OSError, TimeoutError) as exc:
        sock.close()
        raise Unavailable(f"cannot reach sandboxd at {path}: {exc}") from exc
    return sock


async def _open(path: Path, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(sock=await _connect(path, timeout))


def _reply_length(header: bytes) -> int:
    """The length of the reply a frame header announces: a JSON frame within MAX_REPLY."""
    length, kind = wire.HEADER.unpack(header)
    if kind != wire.JSON or length > wire.MAX_REPLY:
        raise SandboxdError("sandboxd answered with a bad frame")
    return int(length)


async def _read_reply(reader: asyncio.StreamReader, timeout: float, what: str) -> dict:
    try:
        frame = await asyncio.wait_for(wire.read_frame(reader, wire.MAX_REPLY), timeout)
    except TimeoutError:
        raise Unavailable(f"sandboxd did not answer {what} within {timeout} s") from None
    except (wire.ProtocolError, ConnectionError) as exc:
        raise SandboxdError(f"sandboxd broke off {what}: {exc}") from exc
    if frame is None:
        raise SandboxdError(f"sandboxd closed the connection during {what}")
    try:
        return _reply(frame.json())
    except wire.ProtocolError as exc:
        raise SandboxdError(f"sandboxd answered {what} with a bad frame: {exc}") from exc


class SandboxdClient:
    def __init__(self, path: str | Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout

    async def call(self, op: str, reply_timeout: float | None = None, **params: object) -> dict:
        """One request and its reply; raises Refused when the daemon says no."""
        timeout = reply_timeout or self.timeout
        reader, writer = await _open(self.path, timeout)
        try:
            writer.write(wire.encode_json({"op": op, **params}))
            return await _read_reply(reader, timeout, op)
        finally:
            writer.close()

    async def exec(self, learner: str, argv: list[str], **params: object) -> tuple[int, bytes]:
        reply = await self.call("exec", learner=learner, argv=argv, **params)
        return int(reply["code"]), base64.b64decode(reply["output"])

    async def attach(
        self,
        learner: str,
        *,
        role: str = "writer",
        session: str | None = None,
        offset: int = 0,
        rows: int = 24,
        cols: int = 80,
        pty: bool = False,
        **params: object,
    ) -> Terminal:
        """Attach to the learner's terminal. With `pty`, a writer is handed the PTY's master
        with the reply and types on it directly (see Terminal.send_input)."""
        request = {
            "op": "attach",
            "learner": learner,
            "role": role,
            "session": session,
            "offset": offset,
            "rows": rows,
            "cols": cols,
            "pty": pty,
            **params,
        }
        sock = await _connect(self.path, self.timeout)
        fds: list[int] = []
        try:
            # Read by hand, not by a StreamReader: the PTY's fd rides on the reply.
            try:
                async with asyncio.timeout(ATTACH_TIMEOUT):
                    await asyncio.get_running_loop().sock_sendall(sock, wire.encode_json(request))
                    length = _reply_length(await _recv_with_fds(sock, wire.HEADER.size, fds))
                    body = await _recv_with_fds(sock, length, fds)
            except TimeoutError:
                raise Unavailable(f"sandboxd did not answer attach in {ATTACH_TIMEOUT} s") from None
            except OSError as exc:
                raise SandboxdError(f"sandboxd broke off attach: {exc}") from exc
            try:
                info = _reply(wire.Frame(wire.JSON, body).json())
            except wire.ProtocolError as exc:
                raise SandboxdError(f"sandboxd answered attach with a bad frame: {exc}") from exc
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except BaseException:
            sock.close()
            for fd in fds:
                os.close(fd)
            raise
        handed = fds.pop(0) if fds and pty else None
        for extra in fds:
            os.close(extra)
        return Terminal(reader, writer, info, handed)


async def _recv_with_fds(sock: socket.socket, size: int, fds: list[int]) -> bytes:
    """Exactly `size` bytes from a non-blocking socket, adding any fds that came with them
    to `fds` (close-on-exec: a web worker starts no programs, but it holds them anyway)."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < size:
        ready = loop.create_future()
        loop.add_reader(sock.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(sock.fileno())
        try:
            chunk, received = recv_fds(sock, size - len(data), 1)
        except BlockingIOError:
            continue
        fds += received
        if not chunk:
            raise ConnectionError("sandboxd closed the connection")
        data += chunk
    return bytes(data)


class Terminal:
    """An attached terminal. `info` is the attach reply: session id, offset, reset, sandbox.
    `pty`, if sandboxd handed it over, is the terminal's PTY master: input is written to it
    here, and sandboxd is only told that the writer typed."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: dict,
        pty: int | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.info = info
        self._pty = None
        if pty is not None:
            os.set_blocking(pty, False)  # sandboxd's is already: never block our loop
            self._pty = PtyInput(pty)
        self._told = float("-inf")  # when sandboxd was last told that the writer typed

    @property
    def types_on_pty(self) -> bool:
        return self._pty is not None

    @property
    def session(self) -> str:
        return str(self.info["session"])

    async def _send(self, frame: bytes) -> None:
        # Writing to a lost connection only logs asyncio's "socket.send() raised exception",
        # once per keystroke or acknowledgement still on its way: say it is gone instead.
        if self.writer.is_closing():
            raise SandboxdError("the terminal connection closed")
        try:
            self.writer.write(frame)
            await self.writer.drain()
        except ConnectionError as exc:
            raise SandboxdError(f"the terminal connection closed: {exc}") from exc

    async def send_input(self, data: bytes) -> None:
        """Send input, however large; waits while the program (or sandboxd) has not read
        enough of what came before."""
        pty = self._pty  # it may be closed (a "detached") while we wait below
        if pty is not None:
            if min(data, default=0x20) < 0x20:
                # Before the key: a Ctrl-C's prompt must find its flood unpaced.
                await self._tell_typed()
            pty.write(data)
            if time.monotonic() >= self._told + TYPED_EVERY:
                # After it: only the pacer's count of typists needs it, not the echo.
                await self._tell_typed()
            await pty.room.wait()
            return
        view = memoryview(data)
        for start in range(0, len(view), wire.MAX_FRAME):
            await self._send(wire.encode(wire.INPUT, bytes(view[start : start + wire.MAX_FRAME])))

    async def _tell_typed(self) -> None:
        self._told = time.monotonic()
        await self._send(wire.encode(wire.TYPED, b""))

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(wire.encode(wire.RESIZE, wire.SIZE.pack(rows, cols)))

    async def ack(self, offset: int) -> None:
        await self._send(wire.encode(wire.ACK, wire.OFFSET.pack(offset)))

    async def receive(self) -> Output | Event | None:
        """The next output or event; None when sandboxd closed the terminal."""
        try:
            frame = await wire.read_frame(self.reader, wire.MAX_REPLY)
        except (wire.ProtocolError, ConnectionError) as exc:
            raise SandboxdError(f"the terminal connection broke: {exc}") from exc
        if frame is None:
            return None
        if frame.kind == wire.OUTPUT:
            if len(frame.payload) < wire.OFFSET.size:
                raise SandboxdError("an OUTPUT frame without its offset")
            return Output(frame.payload)
        event = Event(frame.json())
        if event.name in PTY_ENDS:
            self._pty_close()  # replaced by a newer writer, or the terminal is gone
        return event

    def _pty_close(self) -> None:
        if self._pty is not None:
            self._pty.close()
            os.close(self._pty.fd)
            self._pty = None

    async def close(self) -> None:
        self._pty_close()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def call_sync(path: str | Path, op: str, reply_timeout: float = 2.0, **params: object) -> dict:
    """A blocking request, for management commands and the health check."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(reply_timeout)
        try:
            sock.connect(str(path))
            try:
                sock.sendall(wire.encode_json({"op": op, **params}))
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before our request was read: the reply says why
            length = _reply_length(_recv_exactly(sock, wire.HEADER.size))
            return _reply(wire.Frame(wire.JSON, _recv_exactly(sock, length)).json())
        except (OSError, wire.ProtocolError) as exc:
            raise Unavailable(f"cannot reach sandboxd at {path}: {exc}") from exc


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("sandboxd closed the connection")
        data += chunk
    return bytes(data)
