"""Joining with a code and a name: who gets in, who is told why not, and coming back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from classroom.models import Classroom, Member
from sandboxapp.learners import SESSION_KEY

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


@pytest.fixture
def classroom(instructor, make_classroom):
    return make_classroom(instructor, capacity=2)


def test_a_guest_joins_with_the_code_and_a_name(client, classroom, join):
    response = join(f" {classroom.join_code.lower()[:3]}-{classroom.join_code.lower()[3:]} ", "Ada")
    assert response.status_code == 302 and response["Location"] == f"/c/{classroom.join_code}/"
    member = Member.objects.get()
    assert member.display_name == "Ada" and member.learner.pk == client.session[SESSION_KEY]
    page = client.get(response["Location"])
    assert b"Welcome, Ada" in page.content and b"Lesson 1" in page.content


def test_the_same_browser_coming_back_is_the_same_learner(client, classroom, join):
    join(classroom.join_code, "Ada")
    again = client.get(f"/join/{classroom.join_code}/")
    assert again.status_code == 302 and again["Location"] == f"/c/{classroom.join_code}/"
    join(classroom.join_code, "Someone Else")
    assert Member.objects.count() == 1 and Member.objects.get().display_name == "Ada"


@pytest.mark.parametrize(
    ("code", "message"),
    [("", "six characters"), ("ABC", "six characters"), ("AAAAAA", "No classroom has the code")],
)
def test_a_bad_code_is_explained(classroom, join, code, message):
    response = join(code, "Ada")
    assert response.status_code == 400
    assert message.replace("six characters", "6 letters and digits").encode() in response.content
    assert not Member.objects.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": Classroom.State.ENDED}, "has ended"),
        ({"ends_at": timezone.now() - timedelta(minutes=1)}, "has ended"),
        ({"starts_at": timezone.now() + timedelta(hours=1)}, "opens at"),
    ],
)
def test_a_classroom_that_is_not_open_says_so(classroom, join, change, message):
    Classroom.objects.filter(pk=classroom.pk).update(**change)
    response = join(classroom.join_code, "Ada")
    assert response.status_code == 400 and message.encode() in response.content
    assert Client().get(f"/join/{classroom.join_code}/").status_code == 404


def test_a_full_classroom_turns_the_next_learner_away(classroom, join):
    for name in ("Ada", "Grace"):
        assert join(classroom.join_code, name, browser=Client()).status_code == 302
    response = join(classroom.join_code, "Linus", browser=Client())
    assert response.status_code == 400 and b"is full (2 learners)" in response.content


def test_a_name_taken_in_the_room_must_be_changed(classroom, join):
    join(classroom.join_code, "Ada Lovelace", browser=Client())
    response = join(classroom.join_code, "  ada   LOVELACE ", browser=Client())
    assert response.status_code == 400 and b"already called" in response.content
    assert b'value="  ada   LOVELACE "' in response.content  # the form keeps what was typed


def test_a_classroom_for_accounts_only_refuses_guests(classroom, join, django_user_model):
    Classroom.objects.filter(pk=classroom.pk).update(guests_allowed=False)
    response = join(classroom.join_code, "Ada")
    assert response.status_code == 400 and b"log in before you join" in response.content
    browser = Client()
    browser.force_login(django_user_model.objects.create_user("ada"))
    assert join(classroom.join_code, "Ada", browser=browser).status_code == 302
    assert Member.objects.get().learner.user.username == "ada"


def test_an_empty_or_overlong_name_is_refused(classroom, join):
    assert b"what to call you" in join(classroom.join_code, "   ").content
    assert b"under 40 characters" in join(classroom.join_code, "x" * 41).content


def test_the_home_page_of_a_classroom_is_for_members_only(classroom, client):
    response = client.get(f"/c/{classroom.join_code}/")
    assert response.status_code == 302 and response["Location"] == f"/join/{classroom.join_code}/"
