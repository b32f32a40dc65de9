"""A learner's recorded terminal sessions, read through sandboxd (the web tier never
touches the recordings directory: sandboxd owns it and checks every name)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

from django.conf import settings

from classroom.models import Member
from classroom.running import ClassroomActionError
from sandboxapp.runtime.client import Refused, SandboxdError, call_sync


def _ask(op: str, member: Member, **params: object) -> dict:
    try:
        return call_sync(
            settings.SANDBOXD_SOCKET,
            op,
            reply_timeout=30,
            learner=member.learner.sandbox_id,
            **params,
        )
    except Refused as refusal:
        raise ClassroomActionError(refusal.message) from None
    except SandboxdError:
        raise ClassroomActionError("The sandbox service is not answering; try again.") from None


def member_recordings(member: Member) -> list[dict]:
    return _ask("recordings", member)["recordings"]


def recording_first_chunk(member: Member, name: str) -> dict:
    """The first chunk: asked before a response starts, so a bad name is a clean 404."""
    return _ask("recording", member, name=name, offset=0)


def recording_chunks(member: Member, name: str, first: dict) -> Iterator[bytes]:
    chunk = first
    while True:
        yield base64.b64decode(chunk["data"])
        if chunk["next"] >= chunk["size"] or not chunk["data"]:
            return
        chunk = _ask("recording", member, name=name, offset=chunk["next"])
