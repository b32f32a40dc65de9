"""A learner simulated over the network: HTTP for the pages, a real websocket for the terminal.

It does what a browser does (static/js/terminal.js included), against any running site: the
compose stack, two workers behind nginx, or `make run`. The compose smoke test, the
several-workers test and `bench/load.py` all drive the site through it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import websockets

from sandboxapp.terminal_protocol import OFFSET, OP_ACK, OP_INPUT, OP_OUTPUT

HTTP_TIMEOUT = 30.0
# What is kept of the screen, as a terminal keeps a bounded scrollback: a flood of output
# must not make every later search through the screen slower.
SCREEN_KEEP = 64 * 1024


class SiteError(Exception):
    """The site answered with something a browser would show as an error."""


class TerminalClosed(SiteError):
    """The site closed the terminal's websocket, with its close code and what it said."""

    def __init__(self, code: int | None, said: list[str]) -> None:
        super().__init__(f"closed with {code}: {'; '.join(said) or 'no reason given'}")


class LiveLearner:
    """One browser: its cookies, and at most one open terminal."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = self.base_url
        self.cookies = CookieJar()
        self._http = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.ws: websockets.ClientConnection | None = None
        self.session = ""
        self.offset = 0
        self.acked = 0
        self.ack_every = 0
        self.screen = bytearray()
        self.messages: list[dict] = []

    # --- pages -----------------------------------------------------------------------------

    async def get(self, path: str) -> str:
        return await asyncio.to_thread(self._request, path, None)

    async def post(self, path: str, fields: dict[str, str] | None = None) -> str:
        return await asyncio.to_thread(self._request, path, fields or {})

    def _request(self, path: str, fields: dict[str, str] | None) -> str:
        data = None
        headers = {"Origin": self.origin, "Referer": self.base_url + "/"}
        if fields is not None:
            token = self.cookie("csrftoken")
            if token is None:  # a page with a form sets it, as a browser would have loaded one
                self._request("/terminal/", None)
                token = self.cookie("csrftoken") or ""
            data = urllib.parse.urlencode(fields).encode()
            headers["X-CSRFToken"] = token
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers)
        try:
            with self._http.open(request, timeout=HTTP_TIMEOUT) as response:
                return response.read().decode()
        except urllib.error.HTTPError as error:
            raise SiteError(f"{path}: HTTP {error.code}: {error.read()[:300]!r}") from None

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)

    async def start(self, display_name: str) -> None:
        """Start as a guest, as the form on every page does."""
        await self.post("/start/", {"display_name": display_name, "next": "/terminal/"})
        if self.cookie("sessionid") is None:
            raise SiteError("starting as a guest gave no session")

    async def check(self, lesson: str, step: str, auto: bool = True) -> dict:
        """The lesson page's "Check" (or its background check, with `auto`)."""
        fields = {"auto": "1"} if auto else {}
        return json.loads(await self.post(f"/lessons/{lesson}/steps/{step}/check", fields))

    # --- the terminal ----------------------------------------------------------------------

    async def open_terminal(self, query: str = "rows=24&cols=80", resume: bool = False) -> dict:
        """Open the websocket; with `resume`, ask for what was missed since `offset`."""
        url = self.base_url.replace("http", "ws", 1) + "/ws/terminal/?" + query
        if resume and self.session:
            url += f"&session={self.session}&offset={self.offset}"
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.cookies)
        self.ws = await websockets.connect(
            url, origin=self.origin, additional_headers={"Cookie": cookie}, max_size=None
        )
        self.messages.clear()  # what the previous connection said is not about this one
        hello = await self.expect_message("hello")
        self.session = hello["session"]
        if hello.get("reset") or not resume:
            self.screen.clear()
        self.offset = self.acked = hello["offset"]
        self.ack_every = hello.get("ack_every", 0)
        return hello

    async def type(self, text: str) -> None:
        await self.ws.send(bytes([OP_INPUT]) + text.encode())

    async def expect(self, pattern: bytes | re.Pattern, timeout: float = 20) -> float:
        """Read (and acknowledge) output until `pattern` is on the screen; seconds it took."""
        began = time.perf_counter()
        async with asyncio.timeout(timeout):
            while not self._seen(pattern):
                await self.read_frame()
        return time.perf_counter() - began

    def _seen(self, pattern: bytes | re.Pattern) -> bool:
        if isinstance(pattern, re.Pattern):
            return pattern.search(self.screen) is not None
        return pattern in self.screen

    async def expect_message(self, kind: str, timeout: float = 30) -> dict:
        """Read frames until a JSON message of this `type`, `event` or `code` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if kind in (message.get("type"), message.get("event"), message.get("code")):
                        self.messages.remove(message)
                        return message
                await self.read_frame()

    async def read_frame(self) -> None:
        """Read one frame: output is drawn (kept) and acknowledged, a message is queued."""
        data = await self.receive()
        if data is not None:
            self.screen += data
            if len(self.screen) > 2 * SCREEN_KEEP:
                del self.screen[:-SCREEN_KEEP]
            await self.acknowledge()

    async def receive(self) -> bytes | None:
        """Read one frame: its output, for the caller to draw and then `acknowledge`, or None
        for a JSON message (queued in `messages`)."""
        try:
            frame = await self.ws.recv()
        except websockets.ConnectionClosed as closed:
            said = [m.get("message") for m in self.messages if m.get("type") == "error"]
            raise TerminalClosed(closed.rcvd.code if closed.rcvd else None, said) from None
        if isinstance(frame, str):
            self.messages.append(json.loads(frame))
            return None
        if frame[0] != OP_OUTPUT:
            raise SiteError(f"unknown frame opcode {frame[0]}")
        (at,) = OFFSET.unpack_from(frame, 1)
        data = frame[1 + OFFSET.size :]
        self.offset = at + len(data)
        return data

    async def acknowledge(self) -> None:
        """Everything received so far is drawn: acknowledged as static/js/terminal.js does,
        once `ack_every` bytes are drawn since the last acknowledgement."""
        if self.offset - self.acked >= self.ack_every:
            self.acked = self.offset
            await self.ws.send(bytes([OP_ACK]) + OFFSET.pack(self.offset))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None
