"""Who is learning: a guest (by browser session) or an account, as a `Learner`.

The session holds only the learner's primary key; the websocket consumer reads it once per
connection, never per keystroke.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.utils import timezone

from sandboxapp.models import Learner
from sandboxapp.runtime.client import Refused, SandboxdError, call_sync

log = logging.getLogger(__name__)

SESSION_KEY = "learner_id"
DISPLAY_NAME_MAX = 40
# How stale `last_seen_at` may be: one write per learner an hour, not one per request.
SEEN_EVERY = timedelta(hours=1)


class LearnerError(ValueError):
    """Input for a learner that cannot be used; the message is for the person typing it."""


def _new_sandbox_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


def clean_display_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise LearnerError("Please tell us what to call you.")
    if len(name) > DISPLAY_NAME_MAX:
        raise LearnerError(f"Please keep your name under {DISPLAY_NAME_MAX} characters.")
    if any(not ch.isprintable() for ch in name):
        raise LearnerError("Your name can only hold printable characters.")
    return name


def learner_of(
    session: SessionBase, user: AbstractBaseUser | AnonymousUser | None
) -> Learner | None:
    """The learner of this session or account, if they have started."""
    if user is not None and user.is_authenticated:
        learner, _ = Learner.objects.get_or_create(
            user=user,
            defaults={"sandbox_id": _new_sandbox_id("u"), "display_name": user.get_username()},
        )
        return _seen(learner)
    learner_id = session.get(SESSION_KEY)
    if learner_id is None:
        return None
    learner = Learner.objects.filter(pk=learner_id, user=None).first()
    return None if learner is None else _seen(learner)


def _seen(learner: Learner) -> Learner:
    now = timezone.now()
    if now - learner.last_seen_at > SEEN_EVERY:
        Learner.objects.filter(pk=learner.pk).update(last_seen_at=now)
        learner.last_seen_at = now
    return learner


def learner_start_guest(request: HttpRequest, display_name: str) -> Learner:
    """A new guest learner for this browser (or the one it already is, renamed)."""
    if not settings.GUESTS_ALLOWED and not request.user.is_authenticated:
        raise LearnerError("This site asks you to log in before you start.")
    name = clean_display_name(display_name)
    learner = learner_of(request.session, request.user)
    if learner is not None:
        learner.display_name = name
        learner.save(update_fields=["display_name"])
        return learner
    learner = Learner.objects.create(sandbox_id=_new_sandbox_id("g"), display_name=name)
    # A new session key on starting, as at login: a planted session id is worth nothing.
    request.session.cycle_key()
    request.session[SESSION_KEY] = learner.pk
    return learner


class PruneError(RuntimeError):
    """Guests could not be pruned; the message says why, and what was done before."""


@dataclass
class PruneReport:
    pruned: list[str] = field(default_factory=list)  # sandbox ids, files and rows deleted
    kept_in_classes: int = 0  # stale guests kept: their class's record holds them


def guests_prune(idle: timedelta, *, dry_run: bool = False) -> PruneReport:
    """Delete the guests nobody has seen for `idle`: their files, id block and recorded
    sessions in sandboxd, then their row (progress with it).

    A guest is a browser session, which ends after SESSION_COOKIE_AGE: past that nobody can
    come back as them, and what they left would fill the host's disk and, at some 32,000
    learners, its blocks of user ids. Accounts are kept (their person can log in again), and
    so are members of a classroom, which the instructor's record holds: deleting the class
    lets them go. Files first: a row is deleted only once sandboxd has deleted its files, so
    a failure midway leaves nothing that cannot be pruned again.
    """
    stale = Learner.objects.filter(user=None, last_seen_at__lt=timezone.now() - idle)
    report = PruneReport(kept_in_classes=stale.filter(member__isnull=False).distinct().count())
    # A list, not a cursor: rows are deleted as we go (SQLite isolates nothing within one
    # connection).
    for learner in list(stale.filter(member__isnull=True).order_by("last_seen_at")):
        if not dry_run:
            try:
                call_sync(
                    settings.SANDBOXD_SOCKET,
                    "reset",
                    reply_timeout=60,
                    learner=learner.sandbox_id,
                    keep_files=False,
                    recordings=True,
                )
            except (Refused, SandboxdError) as exc:
                raise PruneError(
                    f"sandboxd could not delete the files of {learner.sandbox_id}: {exc}. "
                    f"{len(report.pruned)} guests were pruned before it; run again later."
                ) from exc
            learner.delete()
            log.info("pruned guest %s, last seen %s", learner.sandbox_id, learner.last_seen_at)
        report.pruned.append(learner.sandbox_id)
    return report
