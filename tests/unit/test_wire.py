"""sandboxd's framing, without a daemon: round trips and every way a peer can break it."""

import asyncio

import pytest

from sandboxapp.runtime import wire


def read(data: bytes, **kwargs: int) -> wire.Frame | None:
    async def go() -> wire.Frame | None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await wire.read_frame(reader, **kwargs)

    return asyncio.run(go())


def test_round_trips():
    assert read(wire.encode_json({"op": "ping"})).json() == {"op": "ping"}
    output = read(wire.encode_output(2**40, b"\xff\x00abc"))
    assert output.kind == wire.OUTPUT
    assert output.payload == wire.OFFSET.pack(2**40) + b"\xff\x00abc"
    assert read(wire.encode(wire.ACK, wire.OFFSET.pack(7))).offset() == 7
    assert read(wire.encode(wire.RESIZE, wire.SIZE.pack(24, 80))).size() == (24, 80)


def test_a_clean_end_between_frames_is_none():
    assert read(b"") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "inside a frame header"),
        (wire.HEADER.pack(10, wire.INPUT) + b"abc", "inside a frame"),
        (wire.HEADER.pack(1, 42) + b"x", "unknown frame kind 42"),
        (wire.HEADER.pack(wire.MAX_JSON + 1, wire.JSON), "over the"),
        (wire.HEADER.pack(wire.MAX_FRAME + 9, wire.INPUT), "over the"),
    ],
)
def test_broken_streams_raise_protocol_errors(data, message):
    with pytest.raises(wire.ProtocolError, match=message):
        read(data)


def test_replies_may_be_larger_than_requests():
    big = wire.encode_json({"output": "x" * (wire.MAX_JSON * 2)})
    with pytest.raises(wire.ProtocolError):
        read(big)
    assert len(read(big, json_limit=wire.MAX_REPLY).json()["output"]) == wire.MAX_JSON * 2


@pytest.mark.parametrize(
    ("frame", "call"),
    [
        (wire.Frame(wire.JSON, b"{oops"), "json"),
        (wire.Frame(wire.JSON, b'"a string"'), "json"),
        (wire.Frame(wire.INPUT, b"{}"), "json"),
        (wire.Frame(wire.ACK, b"\x01"), "offset"),
        (wire.Frame(wire.RESIZE, b"\x01\x02\x03"), "size"),
    ],
)
def test_payloads_of_the_wrong_shape_are_refused(frame, call):
    with pytest.raises(wire.ProtocolError):
        getattr(frame, call)()
