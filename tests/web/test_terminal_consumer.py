"""TerminalConsumer over a real websocket stack (origin check, sessions) to a real sandboxd."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore

from sandboxapp.learners import SESSION_KEY
from sandboxapp.models import Learner
from sandboxapp.terminal_protocol import OP_RESIZE
from tests.websockets import Browser

pytestmark = [pytest.mark.root, pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def guest(name: str) -> tuple[Learner, bytes]:
    """A guest learner and the cookie of their browser session."""
    learner = Learner.objects.create(sandbox_id=f"gt{name}", display_name=name)
    session = SessionStore()
    session[SESSION_KEY] = learner.pk
    session.save()
    return learner, f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}".encode()


async def test_a_guest_types_in_their_own_sandbox(sandboxd):
    learner, cookie = await guest("ada")
    browser = Browser(cookie, "rows=30&cols=90")
    hello = await browser.connect()
    assert hello["hostname"] == learner.sandbox_id and hello["created"] is True
    assert hello["startup_ms"] > 0
    await browser.type("hostname; echo $((6*7)); stty size\r")
    await browser.expect(b"42")
    await browser.expect(learner.sandbox_id.encode())
    await browser.expect(b"30 90")
    await browser.ws.send_to(bytes_data=bytes([OP_RESIZE]) + struct.pack(">HH", 40, 100))
    await asyncio.sleep(0.1)
    await browser.type("stty size\r")
    await browser.expect(b"40 100")
    await browser.ws.disconnect()


async def test_keystrokes_and_acks_touch_no_database(sandboxd, monkeypatch):
    # Channels would close stale connections before every frame, by a hop to its one sync
    # thread that every terminal's keystrokes then queue for.
    learner, cookie = await guest("ada")
    browser = Browser(cookie)
    hello = await browser.connect()
    assert hello["ack_every"] > 0  # sandboxd's window, for the page to ack by
    await browser.expect(b"# ")
    closings = []

    async def closing() -> None:
        closings.append(1)

    monkeypatch.setattr("channels.consumer.aclose_old_connections", closing)
    for key in "echo typed-$((20+2))\r":
        await browser.type(key)
    await browser.expect(b"typed-22")
    assert closings == []
    await browser.ws.disconnect()


async def test_output_is_sent_past_the_session_middleware(sandboxd, monkeypatch):
    # Channels' session wrapper only passes a websocket's messages on, reading the session's
    # state through lazy objects for each: an eighth of the output relay's time.
    from channels.sessions import InstanceSessionWrapper

    wrappers, wrapped = [], []
    made, passed_on = InstanceSessionWrapper.__init__, InstanceSessionWrapper.send

    def init(wrapper, *args, **kwargs):
        wrappers.append(wrapper)
        made(wrapper, *args, **kwargs)

    async def send(wrapper, message: dict):
        wrapped.append(message["type"])
        return await passed_on(wrapper, message)

    monkeypatch.setattr(InstanceSessionWrapper, "__init__", init)
    monkeypatch.setattr(InstanceSessionWrapper, "send", send)
    learner, cookie = await guest("ada")
    browser = Browser(cookie)
    await browser.connect()
    await browser.type("echo past-$((40+2))\r")
    await browser.expect(b"past-42")
    # The socket did pass the session middleware (it read the learner), but sent past it.
    assert wrappers and wrapped == []
    await browser.ws.disconnect()


async def test_a_learner_reaches_only_their_own_sandbox(sandboxd):
    ada, ada_cookie = await guest("ada")
    bob, bob_cookie = await guest("bob")
    a = Browser(ada_cookie)
    await a.connect()
    await a.type("echo ada-secret > /root/s; echo wrote-$((1+1))\r")
    await a.expect(b"wrote-2")
    # Nothing in the request can name another learner: only the session says who this is.
    b = Browser(bob_cookie, f"learner={ada.sandbox_id}&session=x")
    hello = await b.connect()
    assert hello["hostname"] == bob.sandbox_id
    await b.type("cat /root/s; hostname\r")
    await b.expect(bob.sandbox_id.encode() + b"\r\n")
    assert b"ada-secret" not in b.screen
    await a.ws.disconnect()
    await b.ws.disconnect()


async def test_reconnecting_with_session_and_offset_gets_only_what_was_missed(sandboxd):
    _, cookie = await guest("cy")
    first = Browser(cookie)
    hello = await first.connect()
    await first.type("echo before-$((2+3))\r")
    await first.expect(b"before-5")
    await first.ws.disconnect()
    again = Browser(cookie, f"session={hello['session']}&offset={first.offset}")
    back = await again.connect()
    assert back["reset"] is False and back["offset"] == first.offset
    await again.type("echo after-$((3+4))\r")
    await again.expect(b"after-7")
    assert b"before-5" not in again.screen
    await again.ws.disconnect()
    # A reload (no session, no offset) replays the screen.
    reload = Browser(cookie)
    replay = await reload.connect()
    assert replay["reset"] is True
    await reload.expect(b"before-5")
    await reload.ws.disconnect()


async def test_a_foreign_origin_is_refused_even_with_a_valid_session(sandboxd):
    _, cookie = await guest("eve")
    browser = Browser(cookie, origin=(b"origin", b"https://evil.example"))
    connected, _ = await browser.ws.connect()
    assert connected is False


async def test_malformed_frames_are_refused_with_4400(sandboxd):
    _, cookie = await guest("mal")
    browser = Browser(cookie)
    await browser.connect()
    await browser.ws.send_to(bytes_data=bytes([OP_RESIZE]) + b"\x01")
    async with asyncio.timeout(20):
        while True:
            frame = await browser.ws.receive_output(20)
            if frame["type"] == "websocket.close":
                assert frame["code"] == 4400
                break


async def test_sandboxd_down_closes_with_4503_and_a_message(settings, tmp_path):
    settings.SANDBOXD_SOCKET = tmp_path / "nobody-home.sock"
    _, cookie = await guest("zed")
    browser = Browser(cookie)
    connected, _ = await browser.ws.connect()
    assert connected
    error = json.loads(await browser.ws.receive_from())
    assert error["type"] == "error" and "not answering" in error["message"]
    closed = await browser.ws.receive_output()
    assert closed["code"] == 4503


async def test_reconnects_are_rate_limited(sandboxd, settings):
    settings.TERMINAL_CONNECTS_PER_MINUTE = 2
    _, cookie = await guest("rat")
    for _ in range(2):
        browser = Browser(cookie)
        await browser.connect()
        await browser.ws.disconnect()
    browser = Browser(cookie)
    await browser.ws.connect()
    error = json.loads(await browser.ws.receive_from())
    assert error["code"] == "rate_limited"
    assert (await browser.ws.receive_output())["code"] == 4429
