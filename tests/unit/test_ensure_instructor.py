"""``ensure_instructor`` creates one instructor login, prints its password once, stores a hash."""

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def ensure_instructor(*args: str) -> str:
    out = StringIO()
    call_command("ensure_instructor", *args, stdout=out, no_color=True)
    return out.getvalue()


def printed_password(output: str) -> str:
    match = re.search(r"password: (\S+)", output)
    assert match, output
    return match[1]


def test_first_run_creates_an_instructor_and_prints_a_working_password():
    password = printed_password(ensure_instructor())

    user = User.objects.get(username="instructor")
    assert Group.objects.get(name="instructors") in user.groups.all()
    assert authenticate(username="instructor", password=password) == user
    assert password not in user.password
    assert user.password.startswith("pbkdf2_sha256$")


def test_second_run_changes_nothing_and_prints_no_password():
    ensure_instructor()
    stored = User.objects.get(username="instructor").password

    output = ensure_instructor()

    assert "password:" not in output
    assert "Instructor login: instructor" in output
    assert User.objects.get(username="instructor").password == stored
    assert User.objects.count() == 1


def test_reset_prints_a_new_password():
    first = printed_password(ensure_instructor())

    second = printed_password(ensure_instructor("--reset"))

    assert second != first
    assert authenticate(username="instructor", password=second) is not None
    assert authenticate(username="instructor", password=first) is None
