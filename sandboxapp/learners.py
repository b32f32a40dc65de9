"""Who is learning: a guest (by browser session) or an account, as a `Learner`.

The session holds only the learner's primary key; the websocket consumer reads it once per
connection, never per keystroke.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

from sandboxapp.models import Learner

SESSION_KEY = "learner_id"
DISPLAY_NAME_MAX = 40


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
        return learner
    learner_id = session.get(SESSION_KEY)
    if learner_id is None:
        return None
    return Learner.objects.filter(pk=learner_id, user=None).first()


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
