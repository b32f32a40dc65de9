"""The websocket side of a learner's terminal: browser <-> TerminalConsumer <-> sandboxd.

Thin on purpose: the learner is read from the session once, at connect; every frame after
that is relayed without touching the database. The frames are in docs/terminal-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from classroom.joining import classroom_now
from lessons.models import Lesson
from sandboxapp.learners import learner_of
from sandboxapp.ratelimit import allow
from sandboxapp.runtime.client import (
    Output,
    Refused,
    SandboxdClient,
    SandboxdError,
    Terminal,
    Unavailable,
)
from sandboxapp.terminal_protocol import (
    CLOSE_BAD_FRAME,
    CLOSE_ENDED,
    CLOSE_NO_LEARNER,
    CLOSE_RATE_LIMITED,
    CLOSE_REFUSED,
    CLOSE_UNAVAILABLE,
    OFFSET,
    OP_ACK,
    OP_INPUT,
    OP_OUTPUT,
    OP_RESIZE,
    SIZE,
)

log = logging.getLogger(__name__)

OUTPUT_OP = bytes([OP_OUTPUT])
# Where ServerSendInScope keeps the server's own `send`.
SERVER_SEND = "contained.server_send"

# Refusals by sandboxd that the learner can act on get their own close code.
REFUSAL_CLOSE = {"rate_limited": CLOSE_RATE_LIMITED}
SESSION_RE_MAX = 32


def _query(scope: dict) -> dict[str, str]:
    raw = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {key: values[-1] for key, values in raw.items()}


def _topology_of(slug: str | None) -> dict | None:
    """The nodes and links of the lesson the page shows, if it has its own machines."""
    if not slug:
        return None
    lesson = Lesson.objects.filter(slug=slug).only("nodes", "links").first()
    if lesson is None or not lesson.nodes:
        return None
    return {"nodes": lesson.nodes, "links": lesson.links}


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return max(low, min(high, number))


@dataclass(frozen=True)
class Target:
    """Whose terminal a socket attaches to, and how."""

    sandbox_id: str
    # Reconnects are limited per key: the learner's own, or one per watcher and learner.
    rate_key: str
    role: str = "writer"
    node: str | None = None
    limits: dict | None = None
    topology: dict | None = None
    # Whether a session this opens is recorded (when the host records at all).
    record: bool = True


def _learner_target(session, user, query: dict[str, str]) -> Target | None:
    learner = learner_of(session, user)
    if learner is None:
        return None
    topology = _topology_of(query.get("lesson"))
    node = None
    if topology is not None:
        node = query.get("node") if query.get("node") in topology["nodes"] else None
        node = node or topology["nodes"][0]
    # In a running class, the class sets the sandbox's limits and whether it is recorded.
    classroom = classroom_now(learner)
    return Target(
        learner.sandbox_id,
        rate_key=f"ws:{learner.sandbox_id}",
        node=node,
        limits=classroom.sandbox_limits() if classroom else None,
        topology=topology,
        record=classroom.record_sessions if classroom else True,
    )


async def close_refused(consumer: AsyncWebsocketConsumer, code: int) -> None:
    """Refuse a socket with `code`, which the page reads to stop retrying and say why. A
    handshake refused outright reaches a browser as 1006 with no code, so the socket is
    accepted first; nothing is sent before the close."""
    await consumer.accept()
    await consumer.close(code)


class ServerSendInScope:
    """ASGI middleware, outside the auth stack: keeps the server's own `send` in the scope.

    Channels' session middleware wraps `send` to save sessions on HTTP responses; for a
    websocket it only passes each message on, after reading the session's state through
    Django's lazy objects. On a terminal's output, which is most of what Daphne sends, that
    was an eighth of the relay's time (bench/README.md). The terminal sends through this
    one instead; sessions are read at connect and never saved by a websocket.
    """

    def __init__(self, inner: Callable) -> None:
        self.inner = inner

    async def __call__(
        self, scope: dict, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        await self.inner({**scope, SERVER_SEND: send}, receive, send)


class TerminalConsumer(AsyncWebsocketConsumer):
    """The learner's own terminal. Subclasses attach someone else to another target."""

    # No channel layer: a terminal talks only to sandboxd, so it keeps working while Redis
    # restarts (a consumer on the layer dies with its connection). `__call__` never asks
    # Channels for one.
    channel_layer = None
    terminal: Terminal | None = None
    relay: asyncio.Task | None = None
    # Closed with this when `target` finds nobody to attach for.
    no_target_close = CLOSE_NO_LEARNER

    async def __call__(
        self, scope: dict, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        # Channels reads the client and the channel layer side by side, through a new task
        # and an `asyncio.wait` for every message. A terminal has no layer, so it reads its
        # one source in turn (bench/README.md has what that saved). `base_send` is what
        # Channels' `send` uses.
        self.scope = scope
        self.base_send = scope.get(SERVER_SEND, send)
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels closes stale database connections before every message, by a hop to its
        # one shared sync thread: per keystroke and acknowledgement, that queues every
        # terminal's frames behind each other. A frame here touches no database; connect
        # reads it through database_sync_to_async, which does its own closing.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def target(self, query: dict[str, str]) -> Target | None:
        return await database_sync_to_async(_learner_target)(
            self.scope["session"], self.scope.get("user"), query
        )

    async def connect(self) -> None:
        query = _query(self.scope)
        target = await self.target(query)
        if target is None:
            await close_refused(self, self.no_target_close)
            return
        await self.accept()
        # A cache round trip, off the event loop that relays everyone's keystrokes.
        counted = sync_to_async(allow, thread_sensitive=False)
        if not await counted(target.rate_key, settings.TERMINAL_CONNECTS_PER_MINUTE, 60):
            await self._fail(
                CLOSE_RATE_LIMITED,
                "rate_limited",
                "Too many reconnects in a minute: wait a moment, then reload the page.",
            )
            return
        session = query.get("session") or None
        if session is not None and (len(session) > SESSION_RE_MAX or not session.isalnum()):
            session = None
        client = SandboxdClient(settings.SANDBOXD_SOCKET)
        try:
            if target.topology is not None:
                await client.call(
                    "topology", learner=target.sandbox_id, limits=target.limits, **target.topology
                )
            self.terminal = await client.attach(
                target.sandbox_id,
                role=target.role,
                node=target.node,
                limits=target.limits,
                record=target.record,
                session=session,
                offset=_int(query.get("offset"), 0, 0, 2**62),
                rows=_int(query.get("rows"), 24, 1, 1000),
                cols=_int(query.get("cols"), 80, 1, 1000),
                # The writer's keystrokes go straight to its PTY (sandboxd-protocol.md).
                pty=target.role == "writer",
            )
        except Refused as refusal:
            code = REFUSAL_CLOSE.get(refusal.code, CLOSE_REFUSED)
            await self._fail(code, refusal.code, refusal.message)
            return
        except SandboxdError as exc:
            log.error("terminal of %s: %s", target.sandbox_id, exc)
            await self._fail(
                CLOSE_UNAVAILABLE,
                "unavailable",
                "The sandbox service is not answering. Trying again in a moment.",
            )
            return
        info = self.terminal.info
        sandbox = info.get("sandbox", {})
        await self.send(
            text_data=json.dumps(
                {
                    "type": "hello",
                    "session": info["session"],
                    "offset": info["offset"],
                    "reset": info["reset"],
                    "created": info.get("created", False),
                    "hostname": sandbox.get("name"),
                    "node": target.node,
                    "startup_ms": sandbox.get("startup_ms"),
                    "ack_every": info.get("ack_every", 0),
                }
            )
        )
        self.relay = asyncio.create_task(self._relay_output(self.terminal))

    async def _fail(self, close_code: int, code: str, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "code": code, "message": message}))
        await self.close(close_code)

    async def _relay_output(self, terminal: Terminal) -> None:
        send = self.base_send
        try:
            while (item := await terminal.receive()) is not None:
                if isinstance(item, Output):
                    # sandboxd's output payload is the browser's frame after its opcode.
                    await send({"type": "websocket.send", "bytes": OUTPUT_OP + item.payload})
                else:
                    await self.send(text_data=json.dumps({"type": "event", **item.message}))
        except SandboxdError as exc:
            log.warning("terminal relay ended: %s", exc)
        await self.close(CLOSE_ENDED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.terminal is None:
            return
        if not bytes_data:
            await self._fail(CLOSE_BAD_FRAME, "bad_frame", "expected a binary frame")
            return
        op, payload = bytes_data[0], bytes_data[1:]
        try:
            if op == OP_INPUT:
                await self.terminal.send_input(payload)
            elif op == OP_RESIZE and len(payload) == SIZE.size:
                await self.terminal.resize(*SIZE.unpack(payload))
            elif op == OP_ACK and len(payload) == OFFSET.size:
                await self.terminal.ack(*OFFSET.unpack(payload))
            else:
                await self._fail(CLOSE_BAD_FRAME, "bad_frame", f"unknown or malformed op {op}")
        except Unavailable:
            await self.close(CLOSE_UNAVAILABLE)
        except SandboxdError:
            await self.close(CLOSE_ENDED)

    async def disconnect(self, code: int) -> None:
        if self.relay is not None:
            self.relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.relay
        if self.terminal is not None:
            await self.terminal.close()
