"""A learner's recorded terminal sessions, read through sandboxd (the web tier never
touches the recordings directory: sandboxd owns it and checks every name)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

from classroom.models import Member
from classroom.running import sandboxd_ask


def member_recordings(member: Member) -> list[dict]:
    return sandboxd_ask("recordings", member)["recordings"]


def recording_first_chunk(member: Member, name: str) -> dict:
    """The first chunk: asked before a response starts, so a bad name is a clean 404."""
    return sandboxd_ask("recording", member, name=name, offset=0)


def recording_chunks(member: Member, name: str, first: dict) -> Iterator[bytes]:
    chunk = first
    while True:
        yield base64.b64decode(chunk["data"])
        if chunk["next"] >= chunk["size"] or not chunk["data"]:
            return
        chunk = sandboxd_ask("recording", member, name=name, offset=chunk["next"])
