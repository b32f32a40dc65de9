"""The web tier's client for a terminal in sandboxd, against a socket that goes away."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sandboxapp.runtime.client import SandboxdError, Terminal

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
