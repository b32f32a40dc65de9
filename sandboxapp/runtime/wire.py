"""sandboxd's frames: what travels on its Unix socket, shared by the daemon and client.

Every frame is a 5-byte header, the payload length (u32, big-endian) then its kind (u8),
followed by the payload. docs/sandboxd-protocol.md is the reference for each kind.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass

HEADER = struct.Struct(">IB")
OFFSET = struct.Struct(">Q")
SIZE = struct.Struct(">HH")

JSON = 1  # both ways: a request, a reply or an event, as a JSON object
OUTPUT = 2  # daemon -> client: u64 offset of the first byte, then terminal output
INPUT = 3  # client -> daemon: bytes for the terminal (the writer only)
ACK = 4  # client -> daemon: u64 offset up to which output has been drawn
RESIZE = 5  # client -> daemon: u16 rows, u16 cols (the writer only)
TYPED = 6  # client -> daemon, empty: the writer typed on the PTY it was handed
KINDS = {JSON, OUTPUT, INPUT, ACK, RESIZE, TYPED}

# A paste larger than this is split by the client into several INPUT frames.
MAX_FRAME = 1024 * 1024
# Requests are small; replies may carry a command's output (base64) or a snapshot.
MAX_JSON = 64 * 1024
MAX_REPLY = 4 * 1024 * 1024


class Refused(Exception):
    """A request sandboxd will not carry out: `code` for programs, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ProtocolError(Exception):
    """The peer broke the framing; the message says how. The connection cannot go on."""


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes

    def json(self) -> dict:
        if self.kind != JSON:
            raise ProtocolError(f"expected a JSON frame, got kind {self.kind}")
        try:
            message = json.loads(self.payload)
        except ValueError as exc:
            raise ProtocolError(f"a JSON frame that is not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("a JSON frame must hold an object")
        return message

    def offset(self) -> int:
        if len(self.payload) != OFFSET.size:
            raise ProtocolError(f"an ACK frame carries {OFFSET.size} bytes")
        return int(OFFSET.unpack(self.payload)[0])

    def size(self) -> tuple[int, int]:
        if len(self.payload) != SIZE.size:
            raise ProtocolError(f"a RESIZE frame carries {SIZE.size} bytes")
        rows, cols = SIZE.unpack(self.payload)
        return int(rows), int(cols)


def encode(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), kind) + payload


def encode_json(message: dict) -> bytes:
    return encode(JSON, json.dumps(message, separators=(",", ":")).encode())


def encode_output(offset: int, data: bytes | memoryview) -> bytes:
    return HEADER.pack(OFFSET.size + len(data), OUTPUT) + OFFSET.pack(offset) + bytes(data)


async def read_frame(reader: asyncio.StreamReader, json_limit: int = MAX_JSON) -> Frame | None:
    """The next frame, or None at a clean end of stream (between frames)."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("the stream ended inside a frame header") from None
        return None
    length, kind = HEADER.unpack(header)
    if kind not in KINDS:
        raise ProtocolError(f"unknown frame kind {kind}")
    limit = json_limit if kind == JSON else MAX_FRAME + OFFSET.size
    if length > limit:
        raise ProtocolError(f"a frame of {length} bytes is over the {limit}-byte limit")
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("the stream ended inside a frame") from None
    return Frame(kind, payload)
