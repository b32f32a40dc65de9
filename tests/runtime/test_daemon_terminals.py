"""Terminals through a real sandboxd: isolation, viewers, flow control, replay, recording."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import signal

import pytest

from sandboxapp.runtime.client import Refused, SandboxdError
from sandboxapp.runtime.pacing import BURST
from sandboxapp.runtime.terminal import FlowLimits

pytestmark = pytest.mark.asyncio


def learner() -> str:
    return f"l{secrets.token_hex(4)}"


async def test_two_learners_never_see_each_others_terminal(start_sandboxd, screen):
    daemon = start_sandboxd()
    alice, bob = learner(), learner()
    a = screen(await daemon.client.attach(alice))
    b = screen(await daemon.client.attach(bob))
    assert a.terminal.session != b.terminal.session
    await a.type("echo secret-$((1+1)); hostname\r")
    await b.type("echo other-$((2+2)); hostname\r")
    await a.expect(b"secret-2")
    await b.expect(b"other-4")
    await a.expect(alice.encode())
    await b.expect(bob.encode())
    await asyncio.sleep(0.2)
    assert b"secret-2" not in b.data and b"other-4" not in a.data
    assert bob.encode() not in a.data and alice.encode() not in b.data
    await a.close()
    await b.close()


# Each writer either sends its keystrokes to sandboxd, or, as the web tier does, is handed
# the PTY's master and types on it (sandboxd-protocol.md, "pty").
typing_ways = pytest.mark.parametrize("pty", [False, True], ids=["frames", "pty"])


@typing_ways
async def test_a_viewer_sees_the_learner_but_cannot_type(start_sandboxd, screen, pty):
    daemon = start_sandboxd()
    name = learner()
    writer = screen(await daemon.client.attach(name, pty=pty))
    assert writer.terminal.types_on_pty == pty
    await writer.expect(b"# ")
    viewer = screen(await daemon.client.attach(name, role="viewer", pty=pty))
    assert not viewer.terminal.types_on_pty, "a viewer is never handed the PTY"
    await viewer.type("touch /tmp/viewer-was-here\r")
    await viewer.terminal.resize(5, 5)
    refusal = await viewer.event("error")
    assert refusal["code"] == "read_only"
    await writer.type("echo shown-$((3*3))\r")
    await viewer.expect(b"shown-9")
    probe = await daemon.client.exec(name, ["test", "-e", "/tmp/viewer-was-here"])
    assert probe[0] == 1
    await writer.type("stty size\r")
    await writer.expect(b"24 80")
    await viewer.close()
    await writer.close()


@typing_ways
async def test_a_second_writer_replaces_the_first(start_sandboxd, screen, pty):
    daemon = start_sandboxd()
    name = learner()
    first = screen(await daemon.client.attach(name, pty=pty))
    second = screen(await daemon.client.attach(name, pty=pty))
    detached = await first.event("detached")
    assert detached["reason"] == "replaced"
    # Replaced, it types no more: not through sandboxd, and not on a PTY it was handed.
    assert not first.terminal.types_on_pty
    with contextlib.suppress(SandboxdError):
        await first.type("touch /tmp/replaced-was-here\r")
    await second.type("echo still-$((5+5))\r")
    await second.expect(b"still-10")
    assert (await daemon.client.exec(name, ["test", "-e", "/tmp/replaced-was-here"]))[0] == 1
    await second.close()


async def test_resize_reaches_the_program(start_sandboxd, screen):
    daemon = start_sandboxd()
    s = screen(await daemon.client.attach(learner(), rows=30, cols=100))
    await s.type("stty size\r")
    await s.expect(b"30 100")
    await s.terminal.resize(40, 132)
    await asyncio.sleep(0.1)
    await s.type("stty size\r")
    await s.expect(b"40 132")
    await s.close()


async def test_reattach_replays_exactly_the_missed_bytes(start_sandboxd, screen):
    daemon = start_sandboxd()
    name = learner()
    first = screen(await daemon.client.attach(name))
    # A viewer attached throughout has every byte from the start.
    witness = screen(await daemon.client.attach(name, role="viewer"))
    await first.type("sleep 0.5; seq 1 300; echo done-$((7*6))\r")
    await first.expect(b"sleep 0.5")
    session, drawn = first.terminal.session, first.end
    await first.close()
    await witness.expect(b"done-42")
    again = screen(await daemon.client.attach(name, session=session, offset=drawn))
    assert again.terminal.info["reset"] is False and again.start == drawn
    end = await again.expect(b"done-42")
    assert bytes(again.data[: end - drawn]) == bytes(
        witness.data[drawn - witness.start : end - witness.start]
    )
    await again.close()
    await witness.close()


async def test_reattach_after_the_ring_scrolled_gets_a_reset_and_the_tail(start_sandboxd, screen):
    daemon = start_sandboxd()
    name = learner()
    first = screen(await daemon.client.attach(name))
    session = first.terminal.session
    await first.type("seq 1 30000; echo end-$((8*8))\r")
    await first.expect(b"end-64")
    await first.close()
    again = screen(await daemon.client.attach(name, session=session, offset=0))
    info = again.terminal.info
    assert info["reset"] is True and info["offset"] > 0
    await again.expect(b"end-64")
    ring = daemon.config.flow.ring
    assert len(again.data) <= ring
    # The tail starts at a line: the first line drawn is a whole number from seq.
    assert again.data.split(b"\r\n", 1)[0].isdigit()
    await again.close()


async def test_an_unknown_session_starts_fresh_with_a_reset(start_sandboxd, screen):
    daemon = start_sandboxd()
    s = screen(await daemon.client.attach(learner(), session="0123456789abcdef", offset=12345))
    assert s.terminal.info["reset"] is True and s.terminal.info["offset"] == 0
    await s.close()


async def test_output_a_client_never_acknowledges_stays_bounded(start_sandboxd, screen):
    daemon = start_sandboxd()
    name = learner()
    s = screen(await daemon.client.attach(name), ack=False)
    await s.expect(b"# ")
    base = s.end
    await s.type("yes\r")
    await asyncio.sleep(2)
    stats = await daemon.client.call("stats")
    flow = daemon.config.flow
    # The daemon reads at most `high` past the last ack, plus one read.
    assert s.end - base <= flow.high + 64 * 1024
    assert stats["ring_bytes"] <= flow.ring
    # Ctrl-C during the flood: once the client draws again, the prompt comes back.
    await s.type(b"\x03")
    s.ack = True
    await s.terminal.ack(s.end)
    await s.type("echo back-$((9*9))\r")
    await s.expect(b"back-81", since=base, timeout=30)
    await s.close()


async def test_a_stalled_viewer_never_slows_the_learner(start_sandboxd, screen):
    daemon = start_sandboxd()
    name = learner()
    writer = screen(await daemon.client.attach(name))
    await writer.expect(b"# ")
    stalled = await daemon.client.attach(name, role="viewer")  # never read
    await writer.type("seq 1 200000 | tail -c 0; seq 1 100000; echo over-$((6*6))\r")
    await writer.expect(b"over-36", timeout=60)
    late = screen(stalled)
    # It catches up from the ring: a resync, never a stall of the writer.
    await late.expect(b"over-36", timeout=60)
    assert b"<resync>" in late.data or late.events
    await late.close()
    await writer.close()


@typing_ways
async def test_a_10mb_paste_arrives_whole_and_others_keep_working(start_sandboxd, screen, pty):
    daemon = start_sandboxd()
    paster = screen(await daemon.client.attach(learner(), pty=pty))
    other = screen(await daemon.client.attach(learner()))
    await paster.expect(b"# ")
    await paster.type("stty -echo; cat > /tmp/paste; stty echo; wc -c < /tmp/paste\r")
    await asyncio.sleep(0.3)
    line = b"x" * 99 + b"\n"
    paste = asyncio.create_task(paster.type(line * 100_000 + b"\x04"))
    # While the paste streams in, the other learner's shell answers.
    for i in range(3):
        await other.type(f"echo alive-{i}-$((1+{i}))\r")
        await other.expect(f"alive-{i}-{1 + i}".encode())
    await paste
    await paster.expect(b"10000000", timeout=120)
    await paster.close()
    await other.close()


async def test_malformed_frames_on_a_terminal_end_only_that_connection(start_sandboxd, screen):
    from sandboxapp.runtime import wire

    daemon = start_sandboxd()
    victim = screen(await daemon.client.attach(learner()))
    # Several times over: whether the daemon closed with bytes unread (which resets the
    # connection, and can cost the client the error) depended on timing.
    for _ in range(8):
        bad = screen(await daemon.client.attach(learner()))
        # A header past the size limit, and more after it: bytes the daemon will not read.
        bad.terminal.writer.write(wire.HEADER.pack(50 * 1024 * 1024, wire.INPUT) + bytes(65536))
        error = await bad.event("error")
        assert error["code"] == "bad_request"
        await bad.closed.wait()
    await victim.type("echo fine-$((2*21))\r")
    await victim.expect(b"fine-42")
    await victim.close()


async def test_a_writer_acking_every_ack_every_bytes_keeps_a_flood_flowing(start_sandboxd, screen):
    # As the page acks: far less often than every frame, yet often enough that a PTY
    # paused at the high watermark (16 KiB here) is read again, whatever was left
    # unacknowledged. (At every (high - low) / 2 it stalled now and then.)
    daemon = start_sandboxd()
    s = screen(await daemon.client.attach(learner()), ack="sparse")
    assert 0 < s.every <= 4 * 1024
    await s.expect(b"# ")
    await s.type("yes | head -c 3000000; echo flood-$((2+3))\r")
    await s.expect(b"flood-5", timeout=60)
    assert s.end > 3_000_000
    await s.close()


@typing_ways
async def test_a_flood_is_paced_while_another_learner_types(start_sandboxd, screen, pty):
    # Typed on the PTY, the keystrokes reach sandboxd's pacer only as TYPED notices.
    rate = 32 * 1024
    daemon = start_sandboxd(
        flow=FlowLimits(ring=64 * 1024, high=16 * 1024, low=4 * 1024, flood_rate=rate)
    )
    flood = screen(await daemon.client.attach(learner(), pty=pty))
    typist = screen(await daemon.client.attach(learner(), pty=pty))
    await flood.expect(b"# ")
    await typist.expect(b"# ")

    async def keep_typing() -> None:
        for i in range(1000):
            if pty:
                # Letters alone, no Enter: only the writer's TYPED frames, sent once a
                # second after a key, tell the pacer that someone types.
                since = typist.end
                await typist.type("x")
                await typist.expect(b"x", since=since)
            else:
                await typist.type(f"echo typed-{i}-$(({i}+1))\r")
                await typist.expect(f"typed-{i}-{i + 1}".encode())
            # On the PTY a notice follows a key at most once a second: keys close together
            # keep those notices well inside the pacer's 2 s window on a slow host too.
            await asyncio.sleep(0.1 if pty else 0.3)

    typing = asyncio.create_task(keep_typing())
    await flood.type("yes\r")
    await asyncio.sleep(1)  # its burst spent
    began, seconds = flood.end, 2.0
    await asyncio.sleep(seconds)
    paced = flood.end - began
    # What it earns at the rate, and one read (up to 64 KiB) when the window opens.
    assert paced <= rate * (seconds + 0.5) + 64 * 1024
    # Ctrl-C in the flooding terminal is read at once, and so is what it types next.
    since = flood.end
    await flood.type(b"\x03")
    await flood.type("echo stopped-$((6*7))\r")
    await flood.expect(b"stopped-42", since=since, timeout=10)
    typing.cancel()
    await typist.close()
    # With nobody else typing, the same flood runs at full speed.
    await flood.type("yes\r")
    await asyncio.sleep(0.5)
    began = flood.end
    await asyncio.sleep(seconds)
    assert flood.end - began > 2 * max(paced, BURST)
    await flood.type(b"\x03")
    await flood.close()


async def test_exit_ends_the_session_and_the_next_attach_gets_a_new_shell(start_sandboxd, screen):
    daemon = start_sandboxd()
    name = learner()
    s = screen(await daemon.client.attach(name))
    await s.type("exit\r")
    await s.event("exit")
    again = screen(await daemon.client.attach(name, session=s.terminal.session, offset=s.end))
    assert again.terminal.session != s.terminal.session
    await again.type("echo new-$((4*4))\r")
    await again.expect(b"new-16")
    await again.close()


async def test_after_a_daemon_restart_the_learner_is_told(start_sandboxd, screen):
    daemon = start_sandboxd()
    name = learner()
    s = screen(await daemon.client.attach(name))
    await s.expect(b"# ")
    daemon.stop(signal.SIGKILL)
    await s.closed.wait()
    daemon.start()
    again = screen(await daemon.client.attach(name, session=s.terminal.session, offset=s.end))
    await again.expect(b"sandboxd restarted")
    await again.close()


async def test_stop_and_reset_tell_attached_clients(start_sandboxd, screen):
    daemon = start_sandboxd()
    name = learner()
    s = screen(await daemon.client.attach(name))
    await s.expect(b"# ")
    await daemon.client.call("reset", learner=name, keep_files=True)
    stopped = await s.event("stopped")
    assert stopped["reason"] == "reset"
    again = screen(await daemon.client.attach(name))
    await again.expect(b"your sandbox was reset")
    await again.close()
    with pytest.raises(Refused):
        await daemon.client.call("reset", learner="../x")


async def test_sessions_are_recorded_as_asciicast(start_sandboxd, screen, tmp_path):
    daemon = start_sandboxd(recordings_dir=tmp_path / "casts")
    name = learner()
    s = screen(await daemon.client.attach(name, rows=20, cols=70))
    await s.type("echo rec-$((5*5))\r")
    await s.expect(b"rec-25")
    await s.close()
    await daemon.client.call("destroy", learner=name)
    (cast,) = (tmp_path / "casts").glob(f"{name}-*.cast")
    header, *events = [json.loads(line) for line in cast.read_text().splitlines()]
    assert header["version"] == 2 and (header["width"], header["height"]) == (70, 20)
    assert "rec-25" in "".join(e[2] for e in events if e[1] == "o")
    assert all(later[0] >= earlier[0] for earlier, later in zip(events, events[1:], strict=False))
    # A session opened with record: false (a class that does not record) leaves no file.
    other = learner()
    s = screen(await daemon.client.attach(other, record=False))
    await s.type("echo unrecorded\r")
    await s.expect(b"unrecorded")
    await s.close()
    assert not list((tmp_path / "casts").glob(f"{other}-*.cast"))


async def test_attaches_at_once_share_one_terminal(start_sandboxd):
    daemon = start_sandboxd()
    name = learner()
    # Three tabs open at the same moment on a learner with no sandbox yet.
    terminals = await asyncio.gather(*(daemon.client.attach(name) for _ in range(3)))
    assert len({t.session for t in terminals}) == 1
    listed = (await daemon.client.call("list"))["sandboxes"]
    assert [s["writers"] for s in listed] == [1]
    for terminal in terminals:
        await terminal.close()


async def test_a_learners_recordings_are_listed_and_read_back_and_no_one_elses(
    start_sandboxd, screen, tmp_path
):
    casts = tmp_path / "casts"
    daemon = start_sandboxd(recordings_dir=casts)
    ada = learner()
    s = screen(await daemon.client.attach(ada))
    await s.type("echo replay-$((7*6))\r")
    await s.expect(b"replay-42")
    await s.close()
    await daemon.client.call("destroy", learner=ada)
    # Another learner whose id starts like ada's, and a file that is no recording.
    (casts / f"{ada}-x-20260101T000000.cast").write_text("not ada's")
    (casts / "secret.txt").write_text("host file")
    (listed,) = (await daemon.client.call("recordings", learner=ada))["recordings"]
    assert listed["node"] is None and listed["bytes"] == (casts / listed["name"]).stat().st_size
    data, offset = b"", 0
    while True:
        chunk = await daemon.client.call(
            "recording", learner=ada, name=listed["name"], offset=offset
        )
        data += base64.b64decode(chunk["data"])
        offset = chunk["next"]
        if offset >= chunk["size"]:
            break
    assert data == (casts / listed["name"]).read_bytes() and b"replay-42" in data
    for name in (f"{ada}-x-20260101T000000.cast", "secret.txt", "../casts/secret.txt", None):
        with pytest.raises(Refused, match="no such recording"):
            await daemon.client.call("recording", learner=ada, name=name, offset=0)
    other = learner()
    assert (await daemon.client.call("recordings", learner=other))["recordings"] == []
    with pytest.raises(Refused, match="no such recording"):
        await daemon.client.call("recording", learner=other, name=listed["name"], offset=0)
