"""The checks behind ``/healthz``: each one really exercises the thing it reports on.

A check returns a small dict with ``ok`` and a ``detail`` that is safe to show anyone: the
reason for a failure goes to the log, never into the response.
"""

import asyncio
import logging
import uuid
from pathlib import Path
from typing import TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from sandboxapp.runtime.client import SandboxdError, call_sync

log = logging.getLogger(__name__)

CHANNEL_LAYER_TIMEOUT = 3.0
SANDBOXD_TIMEOUT = 1.0


class Check(TypedDict):
    ok: bool
    detail: str


def check_web() -> Check:
    return {"ok": True, "detail": "serving"}


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            (value,) = cursor.fetchone()
        if value != 1:
            raise RuntimeError(f"SELECT 1 returned {value!r}")
    except Exception:
        log.exception("healthz: the database check failed")
        return {"ok": False, "detail": "query failed"}
    return {"ok": True, "detail": f"{connection.vendor} answered"}


async def _channel_round_trip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured")
    channel = await layer.new_channel()
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "healthz.ping", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise RuntimeError("the channel layer returned a different message")


def check_channel_layer() -> Check:
    async def bounded() -> None:
        await asyncio.wait_for(_channel_round_trip(), CHANNEL_LAYER_TIMEOUT)

    try:
        async_to_sync(bounded)()
    except Exception:
        log.exception("healthz: the channel layer check failed")
        return {"ok": False, "detail": "send/receive failed"}
    return {"ok": True, "detail": "send/receive round trip"}


def probe_sandboxd(path: Path, timeout: float = SANDBOXD_TIMEOUT) -> Check:
    """A real request: a socket file can outlive the daemon that made it."""
    if not path.exists():
        return {"ok": False, "detail": "not running"}
    try:
        stats = call_sync(path, "stats", reply_timeout=timeout)
    except SandboxdError:
        log.exception("healthz: sandboxd at %s did not answer", path)
        return {"ok": False, "detail": "not answering"}
    return {"ok": True, "detail": f"{stats['sandboxes']} of {stats['max_sandboxes']} sandboxes"}


def check_sandboxd() -> Check:
    return probe_sandboxd(Path(settings.SANDBOXD_SOCKET))


def run_checks() -> tuple[bool, dict[str, Check]]:
    """Run every check; return whether the required ones passed, and all results."""
    checks: dict[str, Check] = {
        "web": check_web(),
        "database": check_database(),
        "channel_layer": check_channel_layer(),
        "sandboxd": check_sandboxd(),
    }
    return all(check["ok"] for check in checks.values()), checks
