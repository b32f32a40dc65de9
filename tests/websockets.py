"""A browser's websocket to a terminal, as static/js/terminal.js speaks it, for tests."""

from __future__ import annotations

import asyncio
import json
import struct

from channels.testing import WebsocketCommunicator

from sandboxapp.asgi import application
from sandboxapp.terminal_protocol import OP_ACK, OP_INPUT

ORIGIN = (b"origin", b"http://localhost")
HOST = (b"host", b"localhost")


async def ws_open(
    path: str, cookie: bytes, origin: bytes = b"http://localhost"
) -> tuple[WebsocketCommunicator, bool, int | None]:
    """Open a websocket as a page of `origin` with this session cookie would."""
    ws = WebsocketCommunicator(
        application, path, headers=[HOST, (b"origin", origin), (b"cookie", cookie)]
    )
    connected, code = await ws.connect(timeout=10)
    return ws, connected, code


async def closed_with(ws: WebsocketCommunicator) -> int | None:
    """The code an accepted socket was then closed with, as a page sees it."""
    message = await ws.receive_output(timeout=10)
    assert message["type"] == "websocket.close", message
    return message.get("code")


class Browser:
    """What a page's terminal.js does, over a WebsocketCommunicator."""

    def __init__(
        self, cookie: bytes, query: str = "", origin: tuple = ORIGIN, path: str = "/ws/terminal/"
    ) -> None:
        self.ws = WebsocketCommunicator(
            application, f"{path}?{query}", headers=[HOST, origin, (b"cookie", cookie)]
        )
        self.screen = bytearray()
        self.messages: list[dict] = []
        self.offset = 0

    async def connect(self) -> dict:
        connected, code = await self.ws.connect(timeout=30)
        assert connected, code
        hello = json.loads(await self.ws.receive_from(timeout=30))
        assert hello["type"] == "hello", hello
        self.offset = hello["offset"]
        return hello

    async def type(self, text: str) -> None:
        await self.ws.send_to(bytes_data=bytes([OP_INPUT]) + text.encode())

    async def expect(self, pattern: bytes, timeout: float = 20) -> None:
        """Read (and acknowledge) output until `pattern` is on the screen."""
        async with asyncio.timeout(timeout):
            while pattern not in self.screen:
                await self._next_frame(timeout)

    async def expect_message(self, code: str, timeout: float = 20) -> dict:
        """Read frames until a JSON message with this `code` (or `event`) arrives."""
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if code in (message.get("code"), message.get("event")):
                        return message
                await self._next_frame(timeout)

    async def _next_frame(self, timeout: float) -> None:
        frame = await self.ws.receive_output(timeout)
        if frame["type"] == "websocket.close":
            raise AssertionError(f"closed {frame}; saw {bytes(self.screen[-300:])!r}")
        if frame.get("bytes"):
            data = frame["bytes"]
            (at,) = struct.unpack(">Q", data[1:9])
            self.screen += data[9:]
            self.offset = at + len(data) - 9
            await self.ws.send_to(bytes_data=bytes([OP_ACK]) + struct.pack(">Q", self.offset))
        else:
            self.messages.append(json.loads(frame["text"]))
