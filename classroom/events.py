"""Live classroom events: the one place that sends to the dashboards' channel groups.

Progress is written by the lessons app; a post_save receiver (connected in apps.py) turns
each write into a cell update for every open classroom that learner is in, once the
transaction commits. Dashboards on any Daphne worker get it through the channel layer.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from classroom.models import Classroom, Member
from classroom.progress import cell_of, members_following
from lessons.models import StepProgress

log = logging.getLogger(__name__)


def dashboard_group(classroom_id: int) -> str:
    return f"classroom-{classroom_id}-dashboard"


def learners_group(classroom_id: int) -> str:
    return f"classroom-{classroom_id}-learners"


def _send(group: str, event: dict) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, event)
    except Exception:  # noqa: BLE001 - a dashboard update must never fail a learner's check
        log.exception("could not send %s to %s", event.get("type"), group)


def progress_saved(sender: type, instance: StepProgress, **kwargs: object) -> None:
    def send() -> None:
        cell = cell_of(instance, timezone.now())
        for member in members_following(instance):
            _send(
                dashboard_group(member.classroom_id),
                {
                    "type": "progress.cell",
                    "member": member.pk,
                    "step": instance.step_id,
                    "cell": cell,
                },
            )

    transaction.on_commit(send)


def member_joined(member: Member) -> None:
    transaction.on_commit(
        lambda: _send(
            dashboard_group(member.classroom_id), {"type": "member.joined", "member": member.pk}
        )
    )


def learners_broadcast(classroom: Classroom, message: str) -> None:
    _send(learners_group(classroom.pk), {"type": "class.message", "message": message})


def learners_state(classroom: Classroom) -> None:
    _send(learners_group(classroom.pk), {"type": "class.state", "state": classroom.state})
