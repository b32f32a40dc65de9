"""The web tier's client for a terminal in sandboxd, against sockets that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from sandboxapp.runtime import wire
from sandboxapp.runtime.client import Output, SandboxdError, Terminal

pytestmark = pytest.mark.asyncio


async def test_typing_into_a_terminal_whose_daemon_went_away_fails_once_and_quietly(
    tmp_path, caplog
):
    async def hang_up(reader, writer):
        writer.close()

    server = await asyncio.start_unix_server(hang_up, path=str(tmp_path / "sandboxd.sock"))
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "sandboxd.sock"))
    terminal = Terminal(reader, writer, {"session": "s"})
    assert await reader.read() == b""  # the daemon is gone (a restart, a crash)
    await asyncio.sleep(0.05)
    caplog.set_level(logging.WARNING, logger="asyncio")
    for _ in range(10):  # keystrokes and acknowledgements already on their way
        with pytest.raises(SandboxdError):
            await terminal.send_input(b"x")
    assert "socket.send() raised exception" not in caplog.text
    writer.close()
    server.close()


@contextlib.asynccontextmanager
async def _terminal_fed(tmp_path, *frames: bytes) -> AsyncIterator[Terminal]:
    """A terminal whose daemon sends `frames`, then waits for the client to hang up."""

    async def serve(reader, writer):
        writer.write(b"".join(frames))
        await reader.read()
        writer.close()

    path = str(tmp_path / "sandboxd.sock")
    server = await asyncio.start_unix_server(serve, path=path)
    terminal = Terminal(*await asyncio.open_unix_connection(path), {"session": "s"})
    try:
        yield terminal
    finally:
        await terminal.close()
        server.close()
        await server.wait_closed()


async def test_output_is_read_whole_with_its_offset(tmp_path):
    async with _terminal_fed(tmp_path, wire.encode_output(2**40, b"echo")) as terminal:
        item = await terminal.receive()
    assert isinstance(item, Output)
    assert (item.offset, item.data, item.end) == (2**40, b"echo", 2**40 + 4)
    # What the consumer relays: the payload is the browser's frame after its opcode.
    assert item.payload == wire.OFFSET.pack(2**40) + b"echo"


async def test_an_output_frame_too_short_for_its_offset_is_an_error(tmp_path):
    async with _terminal_fed(tmp_path, wire.encode(wire.OUTPUT, b"\x00\x01")) as terminal:
        with pytest.raises(SandboxdError, match="offset"):
            await terminal.receive()
