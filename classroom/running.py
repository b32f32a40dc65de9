"""What an instructor does to a running class: reset a learner, give them time, broadcast,
pause, resume and end. Each tells the learners' pages through events.py."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings

from classroom import events
from classroom.models import Classroom, Member
from sandboxapp.runtime.client import Refused, SandboxdError, call_sync

log = logging.getLogger(__name__)

BROADCAST_MAX = 500
EXTENSION = timedelta(minutes=15)


class ClassroomActionError(ValueError):
    """Why an action could not be done; the message is for the instructor."""


def sandboxd_ask(op: str, member: Member, reply_timeout: float = 30, **params: object) -> dict:
    """One sandboxd request about a member's sandbox; refusals become the instructor's message."""
    try:
        return call_sync(
            settings.SANDBOXD_SOCKET,
            op,
            reply_timeout=reply_timeout,
            learner=member.learner.sandbox_id,
            **params,
        )
    except Refused as refusal:
        raise ClassroomActionError(refusal.message) from None
    except SandboxdError:
        raise ClassroomActionError("The sandbox service is not answering; try again.") from None


def member_reset(member: Member, keep_files: bool) -> None:
    """Stop the learner's sandboxes; their next terminal starts a fresh one."""
    sandboxd_ask("reset", member, reply_timeout=60, keep_files=keep_files)


def member_extend(member: Member) -> None:
    """Fifteen more minutes past the class's end, for this learner only."""
    member.extra_minutes += int(EXTENSION.total_seconds() // 60)
    member.save(update_fields=["extra_minutes"])


def classroom_broadcast(classroom: Classroom, text: str) -> None:
    message = " ".join(text.split())
    if not message:
        raise ClassroomActionError("Write the message first.")
    if len(message) > BROADCAST_MAX:
        raise ClassroomActionError(f"Keep the message under {BROADCAST_MAX} characters.")
    events.learners_broadcast(classroom, message)


def classroom_set_state(classroom: Classroom, state: str) -> None:
    """Open, pause or end the class. Ending stops every member's sandbox; progress stays."""
    if state not in Classroom.State.values:
        raise ClassroomActionError("Unknown state.")
    if classroom.state == Classroom.State.ENDED:
        raise ClassroomActionError("This class has ended; create a new one to run it again.")
    classroom.state = state
    classroom.save(update_fields=["state"])
    # The pages first, so that they stop reconnecting before the sandboxes go.
    events.learners_state(classroom)
    if state == Classroom.State.ENDED:
        for member in classroom.members.select_related("learner"):
            try:
                member_reset(member, keep_files=True)
            except ClassroomActionError as error:
                log.warning("ending %s: could not stop %s's sandbox: %s", classroom, member, error)
