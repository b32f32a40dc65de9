"""Live dashboard events: a learner's progress reaches their instructors' dashboards only."""

from __future__ import annotations

import os

import pytest
from channels.db import database_sync_to_async

from classroom.models import Member
from lessons.models import Step, StepProgress
from tests.websockets import ws_open

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("plain_http"),
]


async def _dashboard(classroom, cookie: bytes):
    ws, connected, _ = await ws_open(f"/ws/classrooms/{classroom.pk}/dashboard/", cookie)
    assert connected
    return ws


async def test_progress_and_joins_reach_the_dashboard_live(
    instructor, make_classroom, cookie_of, joined
):
    classroom = await database_sync_to_async(make_classroom)(instructor)
    ws = await _dashboard(classroom, await cookie_of(instructor))
    member_of_ada, _ = await joined(classroom, "Ada")
    learner = member_of_ada.learner
    joined_event = await ws.receive_json_from(timeout=5)
    member = await database_sync_to_async(Member.objects.get)(learner=learner)
    assert joined_event == {"event": "joined", "member": member.pk}
    step = await database_sync_to_async(Step.objects.order_by("number").first)()
    progress = await database_sync_to_async(StepProgress.objects.create)(learner=learner, step=step)
    opened = await ws.receive_json_from(timeout=5)
    assert opened["member"] == member.pk and opened["step"] == step.pk
    assert opened["cell"]["state"] == "in_progress"
    progress.attempts, progress.passed_at = 1, progress.started_at
    await database_sync_to_async(progress.save)()
    passed = await ws.receive_json_from(timeout=5)
    assert passed["cell"]["state"] == "passed" and passed["cell"]["attempts"] == 1
    await ws.disconnect()


async def test_a_dashboard_hears_nothing_of_learners_outside_its_class(
    instructor, other_instructor, make_classroom, cookie_of, joined
):
    mine = await database_sync_to_async(make_classroom)(instructor)
    theirs = await database_sync_to_async(make_classroom)(other_instructor, name="Elsewhere")
    ws = await _dashboard(mine, await cookie_of(instructor))
    stranger = (await joined(theirs, "Grace"))[0].learner
    step = await database_sync_to_async(Step.objects.order_by("number").first)()
    await database_sync_to_async(StepProgress.objects.create)(learner=stranger, step=step)
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()


@pytest.mark.services
async def test_events_travel_through_redis_between_workers(
    service_urls, settings, instructor, make_classroom, cookie_of, joined
):
    # With channels-redis, the dashboard and the learner's request may be on different
    # Daphne workers: the event goes through Redis, so it must survive its serialisation.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [service_urls["REDIS_URL"]], "prefix": f"test{os.getpid()}"},
        }
    }
    classroom = await database_sync_to_async(make_classroom)(instructor)
    ws = await _dashboard(classroom, await cookie_of(instructor))
    member, _ = await joined(classroom, "Ada")
    assert (await ws.receive_json_from(timeout=5))["event"] == "joined"
    step = await database_sync_to_async(Step.objects.order_by("number").first)()
    await database_sync_to_async(StepProgress.objects.create)(learner=member.learner, step=step)
    cell = await ws.receive_json_from(timeout=5)
    assert cell["member"] == member.pk and cell["cell"]["state"] == "in_progress"
    await ws.disconnect()
