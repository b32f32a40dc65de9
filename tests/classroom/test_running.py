"""A running class against a real sandboxd: watching a terminal, messages, reset, the end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from classroom.joining import classroom_now
from classroom.models import Classroom
from classroom.running import classroom_broadcast, classroom_set_state, member_extend
from lessons.models import Step, StepProgress
from sandboxapp.runtime.client import call_sync
from sandboxapp.terminal_protocol import OP_INPUT
from tests.websockets import Browser, closed_with, ws_open

pytestmark = [
    pytest.mark.root,
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("plain_http"),
]


async def _class_events(cookie: bytes):
    ws, connected, code = await ws_open("/ws/classroom/", cookie)
    assert connected, code
    return ws


async def test_the_instructor_watches_and_cannot_type(
    sandboxd, instructor, make_classroom, cookie_of, joined
):
    classroom = await database_sync_to_async(make_classroom)(instructor)
    member, cookie = await joined(classroom, "Ada")
    learner = Browser(cookie)
    await learner.connect()
    watcher = Browser(
        await cookie_of(instructor), path=f"/ws/classrooms/{classroom.pk}/watch/{member.pk}/"
    )
    hello = await watcher.connect()
    assert hello["hostname"] == member.learner.sandbox_id
    await learner.type("echo seen-$((6*7))\r")
    await watcher.expect(b"seen-42")  # what the learner types, as it happens
    await watcher.ws.send_to(bytes_data=bytes([OP_INPUT]) + b"touch /root/pwned\r")
    assert (await watcher.expect_message("read_only"))["event"] == "error"
    await learner.type("ls /root/pwned || echo absent-$((1+1))\r")
    await learner.expect(b"absent-2")  # the watcher's keys never reached the shell
    await watcher.ws.disconnect()
    await learner.ws.disconnect()


async def test_a_broadcast_and_the_end_reach_the_learners_page(
    sandboxd, instructor, make_classroom, joined
):
    classroom = await database_sync_to_async(make_classroom)(instructor)
    member, cookie = await joined(classroom, "Ada")
    events = await _class_events(cookie)
    learner = Browser(cookie)
    await learner.connect()
    step = await database_sync_to_async(Step.objects.first)()
    await database_sync_to_async(StepProgress.objects.create)(
        learner=member.learner, step=step, passed_at=timezone.now()
    )
    await database_sync_to_async(classroom_broadcast)(classroom, "  Five   minutes left ")
    assert await events.receive_json_from(timeout=5) == {
        "event": "message",
        "message": "Five minutes left",
    }
    await database_sync_to_async(classroom_set_state)(classroom, Classroom.State.ENDED)
    assert await events.receive_json_from(timeout=5) == {"event": "state", "state": "ended"}
    # Every sandbox of the class is stopped; the progress stays.
    assert call_sync(sandboxd.config.socket_path, "list")["sandboxes"] == []
    assert (
        await database_sync_to_async(StepProgress.objects.filter(passed_at__isnull=False).count)()
        == 1
    )
    await events.disconnect()
    # An ended class has no page to tell any more: the socket says so and stays shut.
    ws, connected, _ = await ws_open("/ws/classroom/", cookie)
    assert connected and await closed_with(ws) == 4404
    await learner.ws.disconnect()


async def test_a_learner_in_no_class_gets_no_class_events(sandboxd):
    cookie = Client()
    await database_sync_to_async(cookie.post)("/start/", {"display_name": "Solo"})
    value = cookie.cookies[django_settings.SESSION_COOKIE_NAME].value
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={value}".encode()
    ws, connected, _ = await ws_open("/ws/classroom/", cookie)
    assert connected and await closed_with(ws) == 4404


async def test_more_time_keeps_a_learner_in_a_class_past_its_end(
    instructor, make_classroom, joined
):
    classroom = await database_sync_to_async(make_classroom)(instructor)
    member, _ = await joined(classroom, "Ada")
    ended = timezone.now() - timedelta(minutes=1)
    await database_sync_to_async(Classroom.objects.filter(pk=classroom.pk).update)(ends_at=ended)
    assert await database_sync_to_async(classroom_now)(member.learner) is None
    await database_sync_to_async(member_extend)(member)
    assert (await database_sync_to_async(classroom_now)(member.learner)).pk == classroom.pk
