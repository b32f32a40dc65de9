"""Live dashboard events: a learner's progress reaches their instructors' dashboards only."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from classroom.models import Member
from lessons.models import Step, StepProgress
from sandboxapp.asgi import application
from sandboxapp.models import Learner

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("plain_http"),
]


async def _dashboard(classroom, cookie: bytes) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(
        application,
        f"/ws/classrooms/{classroom.pk}/dashboard/",
        headers=[
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", cookie),
        ],
    )
    connected, _ = await ws.connect(timeout=10)
    assert connected
    return ws


@database_sync_to_async
def _join(classroom, name: str) -> Learner:
    Client().post("/join/", {"code": classroom.join_code, "display_name": name})
    return Member.objects.get(classroom=classroom, display_name=name).learner


async def test_progress_and_joins_reach_the_dashboard_live(instructor, make_classroom, cookie_of):
    classroom = await database_sync_to_async(make_classroom)(instructor)
    ws = await _dashboard(classroom, await cookie_of(instructor))
    learner = await _join(classroom, "Ada")
    joined = await ws.receive_json_from(timeout=5)
    member = await database_sync_to_async(Member.objects.get)(learner=learner)
    assert joined == {"event": "joined", "member": member.pk}
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
    instructor, other_instructor, make_classroom, cookie_of
):
    mine = await database_sync_to_async(make_classroom)(instructor)
    theirs = await database_sync_to_async(make_classroom)(other_instructor, name="Elsewhere")
    ws = await _dashboard(mine, await cookie_of(instructor))
    stranger = await _join(theirs, "Grace")
    step = await database_sync_to_async(Step.objects.order_by("number").first)()
    await database_sync_to_async(StepProgress.objects.create)(learner=stranger, step=step)
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()
