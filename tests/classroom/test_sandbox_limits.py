"""A classroom's per-learner limits and recording choice hold for its members' sandboxes."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from classroom.models import Member
from sandboxapp.asgi import application
from sandboxapp.runtime.cgroups import SandboxCgroup
from sandboxapp.runtime.sandbox import cgroup_backend

pytestmark = [
    pytest.mark.root,
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("plain_http"),
]


@database_sync_to_async
def _join(classroom, name: str) -> tuple[Member, bytes]:
    browser = Client()
    browser.post("/join/", {"code": classroom.join_code, "display_name": name})
    cookie = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
    member = Member.objects.select_related("learner").get(display_name=name)
    return member, f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()


async def test_a_members_sandbox_gets_the_classrooms_limits_and_recording_choice(
    start_sandboxd, settings, config, instructor, make_classroom, tmp_path
):
    casts = tmp_path / "casts"
    settings.SANDBOXD_SOCKET = start_sandboxd(recordings_dir=casts).config.socket_path
    classroom = await database_sync_to_async(make_classroom)(
        instructor, memory_mb=96, pids=64, record_sessions=False
    )
    member, cookie = await _join(classroom, "Ada")
    ws = WebsocketCommunicator(
        application,
        "/ws/terminal/",
        headers=[(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", cookie)],
    )
    connected, _ = await ws.connect(timeout=30)
    assert connected
    hello = json.loads(await ws.receive_from(timeout=30))
    assert hello["type"] == "hello", hello
    cgroup = SandboxCgroup(cgroup_backend(), config.cgroup_parent, member.learner.sandbox_id)
    limits = cgroup.limits()
    assert limits["memory_bytes"] == 96 * 1024 * 1024 and limits["pids"] == 64
    # The host records sessions, but this class chose not to.
    assert not list(casts.glob("*.cast"))
    await ws.disconnect()
