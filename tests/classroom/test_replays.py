"""Recorded sessions of a class, listed, streamed and replayed through sandboxd."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from tests.websockets import Browser

pytestmark = [
    pytest.mark.root,
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("plain_http"),
]


@pytest.fixture
def recording_sandboxd(start_sandboxd, settings, tmp_path):
    daemon = start_sandboxd(recordings_dir=tmp_path / "casts")
    settings.SANDBOXD_SOCKET = daemon.config.socket_path
    return daemon


async def test_an_instructor_lists_streams_and_replays_a_members_session(
    recording_sandboxd, instructor, make_classroom, joined, tmp_path
):
    classroom = await database_sync_to_async(make_classroom)(instructor, record_sessions=True)
    other = await database_sync_to_async(make_classroom)(instructor, name="Other")
    member, cookie = await joined(classroom, "Ada")
    stranger, _ = await joined(other, "Grace")
    terminal = Browser(cookie)
    await terminal.connect()
    await terminal.type("echo taped-$((6*7))\r")
    await terminal.expect(b"taped-42")
    await terminal.ws.disconnect()
    # Ending the session closes its recording, so the file is whole.
    await recording_sandboxd.client.call("reset", learner=member.learner.sandbox_id)
    (cast,) = (tmp_path / "casts").glob("*.cast")

    def as_instructor() -> dict:
        client = Client()
        client.force_login(instructor)
        base = f"/classrooms/{classroom.pk}/members/{member.pk}"
        listing = client.get(f"{base}/recordings/")
        streamed = client.get(f"{base}/recordings/{cast.name}")
        replay = client.get(f"{base}/replay/{cast.name}")
        return {
            "listing": listing.content,
            "streamed": b"".join(streamed.streaming_content),
            "replay": replay,
            "unknown": client.get(f"{base}/recordings/{member.learner.sandbox_id}-x.cast"),
            # Ada's recording through another member's URL: it is not theirs.
            "elsewhere": client.get(
                f"/classrooms/{other.pk}/members/{stranger.pk}/recordings/{cast.name}"
            ),
        }

    seen = await database_sync_to_async(as_instructor)()
    assert cast.name.encode() in seen["listing"] and b"Replay" in seen["listing"]
    assert seen["streamed"] == cast.read_bytes() and b"taped-42" in seen["streamed"]
    assert seen["replay"].status_code == 200
    assert "'wasm-unsafe-eval'" in seen["replay"]["Content-Security-Policy"]
    assert b"asciinema-player.min.js" in seen["replay"].content
    assert seen["unknown"].status_code == 404 and seen["elsewhere"].status_code == 404
