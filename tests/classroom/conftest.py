"""Classrooms with real lessons and steps in the test database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import Group, User
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from classroom.access import INSTRUCTORS_GROUP
from classroom.models import Classroom, ClassroomLesson
from lessons.models import Lesson, Step


def _make_lesson(number: int, steps: int = 2) -> Lesson:
    lesson = Lesson.objects.create(
        slug=f"lesson-{number}",
        number=number,
        title=f"Lesson {number}",
        summary="s",
        minutes=10,
        body_markdown="text",
    )
    for n in range(1, steps + 1):
        Step.objects.create(
            lesson=lesson,
            number=n,
            slug=f"step-{n}",
            title=f"Step {n}",
            body_markdown="do it",
            checks=[{"check": "long_running_process", "params": {}}],
        )
    return lesson


@pytest.fixture
def instructor(db) -> User:
    user = User.objects.create_user("teacher", password="pw-teacher-1")
    user.groups.add(Group.objects.get_or_create(name=INSTRUCTORS_GROUP)[0])
    return user


@pytest.fixture
def other_instructor(db) -> User:
    user = User.objects.create_user("colleague", password="pw-colleague-1")
    user.groups.add(Group.objects.get_or_create(name=INSTRUCTORS_GROUP)[0])
    return user


@pytest.fixture
def make_classroom(db):
    def make(instructor: User, lessons: int = 1, **fields: object) -> Classroom:
        now = timezone.now()
        values = {
            "name": "Containers 101",
            "starts_at": now - timedelta(minutes=5),
            "ends_at": now + timedelta(hours=2),
            **fields,
        }
        classroom = Classroom.objects.create(instructor=instructor, **values)
        for position in range(1, lessons + 1):
            lesson = Lesson.objects.filter(number=position).first() or _make_lesson(position)
            ClassroomLesson.objects.create(classroom=classroom, lesson=lesson, position=position)
        return classroom

    return make


@pytest.fixture
def join(client):
    """join(code, name, client=client) -> the response of the join form's POST."""

    def post(code: str, name: str, browser=None):
        return (browser or client).post("/join/", {"code": code, "display_name": name})

    return post


@pytest.fixture
def cookie_of():
    """await cookie_of(user): a session cookie logged in as `user` (None: anonymous)."""

    @database_sync_to_async
    def make(user: User | None) -> bytes:
        session = SessionStore()
        if user is not None:
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        return f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}".encode()

    return make


@pytest.fixture
def joined():
    """await joined(classroom, name) -> (member, session cookie of their browser)."""
    from django.test import Client

    from classroom.models import Member

    @database_sync_to_async
    def join(classroom: Classroom, name: str):
        browser = Client()
        browser.post("/join/", {"code": classroom.join_code, "display_name": name})
        cookie = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
        member = Member.objects.select_related("learner").get(
            classroom=classroom, display_name=name
        )
        return member, f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()

    return join
