"""PtyInput on a plain pty: order, backpressure, and a program that has gone."""

import asyncio
import os
import termios
import tty

from sandboxapp.runtime.ptyinput import INPUT_HIGH, PtyInput


def raw_pty() -> tuple[int, int]:
    # Raw: the line discipline neither echoes nor edits, so what is read is what was written.
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    os.set_blocking(master, False)
    return master, slave


async def read_all(slave: int, size: int) -> bytes:
    os.set_blocking(slave, False)
    data = bytearray()
    while len(data) < size:
        try:
            data += os.read(slave, 65536)
        except BlockingIOError:
            await asyncio.sleep(0.001)
    return bytes(data)


def test_a_paste_larger_than_the_pty_holds_waits_for_room_and_arrives_in_order():
    async def go() -> None:
        master, slave = raw_pty()
        pty = PtyInput(master)
        paste = bytes(range(256)) * (INPUT_HIGH // 256 * 2)
        pty.write(paste)
        assert pty.pending, "a pty holds a few KiB: the rest waits"
        assert not pty.room.is_set(), "past INPUT_HIGH the writer must wait"
        pty.write(b"after")  # typed while the paste waits: it goes behind it
        reader = asyncio.create_task(read_all(slave, len(paste) + 5))
        await asyncio.wait_for(pty.room.wait(), 10)
        assert await asyncio.wait_for(reader, 10) == paste + b"after"
        assert not pty.pending
        pty.close()
        os.close(master)
        os.close(slave)

    asyncio.run(go())


def test_closing_releases_a_waiting_writer_and_stops_watching_the_pty():
    # As when the terminal ends (its "exit" event): a paste still waiting is dropped.
    async def go() -> None:
        master, slave = raw_pty()
        pty = PtyInput(master)
        pty.write(b"x" * (INPUT_HIGH * 2))
        waiting = asyncio.create_task(pty.room.wait())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        pty.close()
        await asyncio.wait_for(waiting, 1)
        assert not pty.pending
        assert not asyncio.get_running_loop().remove_writer(master), "still watched"
        os.close(master)
        os.close(slave)

    asyncio.run(go())


def test_after_close_nothing_more_is_written():
    async def go() -> None:
        master, slave = raw_pty()
        pty = PtyInput(master)
        pty.close()
        pty.write(b"late")
        os.set_blocking(slave, False)
        try:
            leaked = os.read(slave, 100)
        except BlockingIOError:
            leaked = b""
        assert leaked == b"" and pty.room.is_set()
        os.close(master)
        os.close(slave)

    asyncio.run(go())
