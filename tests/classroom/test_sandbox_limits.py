"""A classroom's per-learner limits and recording choice hold for its members' sandboxes."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from sandboxapp.runtime.cgroups import SandboxCgroup
from sandboxapp.runtime.sandbox import cgroup_backend
from tests.websockets import Browser

pytestmark = [
    pytest.mark.root,
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("plain_http"),
]


async def test_a_members_sandbox_gets_the_classrooms_limits_and_recording_choice(
    start_sandboxd, settings, config, instructor, make_classroom, tmp_path, joined
):
    casts = tmp_path / "casts"
    settings.SANDBOXD_SOCKET = start_sandboxd(recordings_dir=casts).config.socket_path
    classroom = await database_sync_to_async(make_classroom)(
        instructor, memory_mb=96, pids=64, record_sessions=False
    )
    member, cookie = await joined(classroom, "Ada")
    terminal = Browser(cookie)
    await terminal.connect()
    cgroup = SandboxCgroup(cgroup_backend(), config.cgroup_parent, member.learner.sandbox_id)
    limits = cgroup.limits()
    assert limits["memory_bytes"] == 96 * 1024 * 1024 and limits["pids"] == 64
    # The host records sessions, but this class chose not to.
    assert not list(casts.glob("*.cast"))
    await terminal.ws.disconnect()
