"""TerminalSession on a plain pty (no sandbox): the ring, flow control and the recorder."""

import asyncio
import json
import os
import socket
import subprocess

import pytest

from sandboxapp.runtime.pacing import Pacer
from sandboxapp.runtime.terminal import (
    READ_CHUNK,
    Client,
    FlowLimits,
    Recorder,
    TerminalSession,
)

FLOW = FlowLimits(ring=1024, high=512, low=128)


async def session_on_pty(
    pacer: Pacer | None = None,
) -> tuple[TerminalSession, int, list[TerminalSession]]:
    master, slave = os.openpty()
    ended: list[TerminalSession] = []
    return TerminalSession(master, flow=FLOW, on_end=ended.append, pacer=pacer), slave, ended


def test_flow_limits_must_be_ordered():
    FLOW.validate()
    for bad in (FlowLimits(1024, 128, 512), FlowLimits(256, 512, 128), FlowLimits(1024, 512, 0)):
        with pytest.raises(ValueError):
            bad.validate()


def test_the_ring_keeps_the_newest_bytes_at_absolute_offsets():
    async def go() -> None:
        session, slave, _ = await session_on_pty()
        line = b"%03d" + b"-" * 56 + b"\n"
        for i in range(30):
            session.append(line % i)
        assert len(session.ring) == FLOW.ring
        assert session.end == 30 * 60 and session.start == session.end - FLOW.ring
        # Still in the ring: resume exactly there. Scrolled out: at the first whole line.
        assert session.tail_from(session.end - 10) == session.end - 10
        tail = session.tail_from(0)
        assert session.ring[tail - session.start - 1 : tail - session.start] == b"\n"
        assert session.tail_from(session.end + 5) > session.start
        session.close()
        os.close(slave)

    asyncio.run(go())


def test_reading_pauses_past_high_and_resumes_below_low():
    async def go() -> None:
        session, slave, _ = await session_on_pty()
        os.write(slave, b"y" * 2000)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not session.reading:
                break
        assert not session.reading
        assert FLOW.high < session.end <= FLOW.high + 2000
        session.ack(session.end - FLOW.low - 1)
        assert not session.reading
        session.ack(session.end)
        assert session.reading
        session.close()
        os.close(slave)

    asyncio.run(go())


def test_the_end_of_the_program_ends_the_session():
    async def go() -> None:
        session, slave, ended = await session_on_pty()
        os.close(slave)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if ended:
                break
        assert ended == [session] and session.ended

    asyncio.run(go())


def test_input_reaches_the_program_whole():
    async def go() -> None:
        session, slave, _ = await session_on_pty()
        os.set_blocking(slave, False)
        session.write(b"hello\n")
        await asyncio.sleep(0.05)
        assert os.read(slave, 100) == b"hello\n"
        session.close()
        os.close(slave)

    asyncio.run(go())


def test_the_recorder_writes_asciicast_and_stops_at_its_limit(tmp_path):
    path = tmp_path / "s.cast"
    recorder = Recorder(path, rows=24, cols=80, max_bytes=400)
    # A character split across two reads is joined, not mangled.
    recorder.output("é".encode()[:1])
    recorder.output("é".encode()[1:] + b" ok\r\n")
    recorder.resize(30, 100)
    for _ in range(20):
        recorder.output(b"x" * 40)
    recorder.close()
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] == 80 and header["height"] == 24
    assert json.loads(lines[1])[1:] == ["o", "é ok\r\n"]
    assert json.loads(lines[2])[1:] == ["r", "100x30"]
    assert "recording size limit" in lines[-1]
    assert path.stat().st_size <= 400 + 100


def test_a_flood_waits_for_the_next_frame_and_a_prompt_does_not(monkeypatch):
    # Within the frame interval (made long here), more of a flood is left for the client's
    # pump to send as one frame; a small output, as a prompt, goes at once.
    monkeypatch.setattr("sandboxapp.runtime.terminal.FRAME_INTERVAL", 60.0)

    async def go() -> None:
        session, slave, _ = await session_on_pty()
        ours, theirs = socket.socketpair()
        _, writer = await asyncio.open_connection(sock=ours)
        client = Client(writer, "writer", sent=0)
        session.clients.add(client)  # no pump: only what append pushes is sent
        session.append(b"x" * 3000)
        assert client.sent == 3000  # the first output after a pause
        session.append(b"$ ")
        assert client.sent == 3002  # small: at once
        session.append(b"y" * 3000)
        assert client.sent == 3002 and client.wake.is_set()  # the pump's to send
        writer.close()
        theirs.close()
        session.close()
        os.close(slave)

    asyncio.run(go())


async def flooded_session(pacer: Pacer) -> tuple[TerminalSession, subprocess.Popen, int]:
    """A session whose program is `yes`, on a real PTY, with flow control out of the way."""
    master, slave = os.openpty()
    flow = FlowLimits(ring=1 << 26, high=1 << 25, low=1 << 20)
    session = TerminalSession(master, flow=flow, on_end=lambda _: None, pacer=pacer)
    flood = subprocess.Popen(["yes"], stdout=slave, stderr=subprocess.DEVNULL)
    return session, flood, slave


def test_a_flood_is_paced_while_another_terminal_types_and_not_when_alone():
    rate, seconds = 64 * 1024, 1.0

    async def read_for(session: TerminalSession) -> int:
        began = session.end
        await asyncio.sleep(seconds)
        return session.end - began

    async def go() -> tuple[int, int, bool]:
        pacer = Pacer(rate)
        session, flood, slave = await flooded_session(pacer)
        typist, typist_slave, _ = await session_on_pty(pacer)
        try:
            await asyncio.sleep(0.2)  # its burst spent
            alone = await read_for(session)
            typist.write(b"l")
            await asyncio.sleep(0.2)
            paced = await read_for(session)
            # Ctrl-C in the flooding terminal itself: its output is read again at once.
            for _ in range(200):  # between two reads, the reader is back only for a moment
                if not session.reading:
                    break
                await asyncio.sleep(0.005)
            waiting = not session.reading
            session.write(b"\x03")
            return alone, paced, waiting and session.reading
        finally:
            flood.kill()
            flood.wait()
            for s in (session, typist):
                s.close()
            os.close(slave)
            os.close(typist_slave)

    alone, paced, resumed = asyncio.run(go())
    # Paced: what it earns at the rate, and a read of up to one chunk already under way.
    assert paced <= rate * (seconds + 0.2) + READ_CHUNK
    assert alone > 4 * paced
    assert resumed


def test_a_typist_whose_writer_leaves_paces_no_one_any_more():
    async def go() -> None:
        pacer = Pacer(64 * 1024)
        flood, flood_slave, _ = await session_on_pty(pacer)
        typist, typist_slave, _ = await session_on_pty(pacer)
        ours, theirs = socket.socketpair()
        _, writer = await asyncio.open_connection(sock=ours)
        client = Client(writer, "writer", sent=0)
        typist.attach(client)
        typist.write(b"l")
        assert pacer.others_typing(flood, asyncio.get_running_loop().time())
        typist.detach(client)
        assert not pacer.others_typing(flood, asyncio.get_running_loop().time())
        theirs.close()
        for session, slave in ((flood, flood_slave), (typist, typist_slave)):
            session.close()
            os.close(slave)

    asyncio.run(go())
