"""Joining a classroom with its code and a display name: no account needed."""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from classroom import events
from classroom.models import JOIN_CODE_ALPHABET, JOIN_CODE_LENGTH, Classroom, Member
from sandboxapp.learners import LearnerError, clean_display_name, learner_of, learner_start_guest
from sandboxapp.models import Learner


class JoinError(ValueError):
    """Why someone cannot join; the message is for them."""


def normalise_code(raw: str) -> str:
    return "".join(raw.split()).upper().replace("-", "")


def classroom_by_code(raw: str) -> Classroom:
    """The classroom a code names, if someone may join it now."""
    code = normalise_code(raw)
    if len(code) != JOIN_CODE_LENGTH or any(c not in JOIN_CODE_ALPHABET for c in code):
        raise JoinError(
            f"A join code is {JOIN_CODE_LENGTH} letters and digits, as your instructor shows it."
        )
    classroom = Classroom.objects.filter(join_code=code).first()
    if classroom is None:
        raise JoinError(f"No classroom has the code {code}. Check it with your instructor.")
    now = timezone.now()
    if classroom.state == Classroom.State.ENDED or classroom.ends_at <= now:
        raise JoinError(f"“{classroom.name}” has ended. Ask your instructor for a new code.")
    if classroom.state == Classroom.State.PAUSED:
        raise JoinError(f"“{classroom.name}” is paused. Try again when your instructor resumes it.")
    if classroom.starts_at > now:
        opens = timezone.localtime(classroom.starts_at).strftime("%H:%M on %d %b")
        raise JoinError(f"“{classroom.name}” opens at {opens}.")
    return classroom


def member_of(request: HttpRequest, classroom: Classroom) -> Member | None:
    learner = learner_of(request.session, request.user)
    if learner is None:
        return None
    return Member.objects.filter(classroom=classroom, learner=learner).first()


def classroom_join(request: HttpRequest, raw_code: str, display_name: str) -> Member:
    """Join (or come back to) a classroom from this browser or account."""
    classroom = classroom_by_code(raw_code)
    existing = member_of(request, classroom)
    if existing is not None:
        return existing  # the same browser coming back: the same learner, the same work
    if not classroom.guests_allowed and not request.user.is_authenticated:
        raise JoinError(f"“{classroom.name}” asks you to log in before you join.")
    try:
        name = clean_display_name(display_name)
    except LearnerError as error:
        raise JoinError(str(error)) from None
    key = " ".join(name.lower().split())
    taken = JoinError(f"Someone in “{classroom.name}” is already called {name}: pick another name.")
    with transaction.atomic():
        # Counted under a lock on the classroom row: two last seats cannot both be taken.
        locked = Classroom.objects.select_for_update().get(pk=classroom.pk)
        if locked.members.count() >= locked.capacity:
            raise JoinError(f"“{classroom.name}” is full ({locked.capacity} learners).")
        if locked.members.filter(name_key=key).exists():
            raise taken
        try:
            learner = learner_of(request.session, request.user) or learner_start_guest(
                request, name
            )
            with transaction.atomic():
                member = Member.objects.create(
                    classroom=locked, learner=learner, display_name=name, name_key=key
                )
            events.member_joined(member)
            return member
        except LearnerError as error:
            raise JoinError(str(error)) from None
        except IntegrityError:
            raise taken from None


def classroom_now(learner: Learner) -> Classroom | None:
    """The running class the learner joined last (its end moved by any time they were
    given): its limits are their sandbox's."""
    now = timezone.now()
    members = (
        Member.objects.filter(
            learner=learner,
            classroom__state=Classroom.State.OPEN,
            classroom__starts_at__lte=now,
        )
        .select_related("classroom")
        .order_by("-joined_at")
    )
    for member in members:
        if member.classroom.ends_at + timedelta(minutes=member.extra_minutes) > now:
            return member.classroom
    return None
