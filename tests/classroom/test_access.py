"""The authorization matrix: every classroom page and socket, for every kind of visitor."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from tests.websockets import closed_with, ws_open

pytestmark = pytest.mark.usefixtures("plain_http")

ACTIONS = [
    "/classrooms/{pk}/members/{member}/reset",
    "/classrooms/{pk}/members/{member}/extend",
    "/classrooms/{pk}/broadcast",
    "/classrooms/{pk}/state",
]
PAGES = [
    "/classrooms/{pk}/",
    "/classrooms/{pk}/progress.json",
    "/classrooms/{pk}/qr.svg",
    "/classrooms/{pk}/results.csv",
    "/classrooms/{pk}/results.json",
]


@pytest.fixture
def classroom(instructor, make_classroom):
    return make_classroom(instructor)


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/classrooms/", "/classrooms/new/", *PAGES])
def test_anonymous_visitors_are_sent_to_log_in(client, classroom, page):
    response = client.get(page.format(pk=classroom.pk))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/classrooms/", "/classrooms/new/", *PAGES])
def test_an_account_that_is_not_an_instructor_is_refused(client, classroom, page):
    client.force_login(User.objects.create_user("student"))
    assert client.get(page.format(pk=classroom.pk)).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES)
def test_an_instructor_never_reaches_another_instructors_classroom(
    client, classroom, other_instructor, page
):
    client.force_login(other_instructor)
    assert client.get(page.format(pk=classroom.pk)).status_code == 404
    listing = client.get("/classrooms/")
    assert classroom.join_code.encode() not in listing.content


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES)
def test_the_owner_and_a_superuser_reach_every_page(client, classroom, instructor, page):
    for user in (instructor, User.objects.create_superuser("root", password="pw")):
        client.force_login(user)
        assert client.get(page.format(pk=classroom.pk)).status_code == 200
    assert classroom.join_code.encode() in client.get("/classrooms/").content


@pytest.fixture
def member(classroom, join):
    from django.test import Client

    join(classroom.join_code, "Ada", browser=Client())
    return classroom.members.get()


@pytest.mark.django_db
def test_the_watch_page_and_every_action_follow_the_same_rules(
    client, classroom, member, instructor, other_instructor
):
    watch = f"/classrooms/{classroom.pk}/watch/{member.pk}/"
    member_pages = [
        watch,
        f"/classrooms/{classroom.pk}/members/{member.pk}/recordings/",
        f"/classrooms/{classroom.pk}/members/{member.pk}/recordings/x-20260101T000000.cast",
        f"/classrooms/{classroom.pk}/members/{member.pk}/replay/x-20260101T000000.cast",
    ]
    actions = [a.format(pk=classroom.pk, member=member.pk) for a in ACTIONS]
    for page in member_pages:
        assert client.get(page)["Location"].startswith("/accounts/login/")
    for action in actions:
        assert client.post(action, {"state": "ended"})["Location"].startswith("/accounts/login/")
    client.force_login(User.objects.create_user("student"))
    assert all(client.get(page).status_code == 403 for page in member_pages)
    assert all(client.post(a, {"state": "ended"}).status_code == 403 for a in actions)
    client.force_login(other_instructor)
    assert all(client.get(page).status_code == 404 for page in member_pages)
    assert all(client.post(a, {"state": "ended"}).status_code == 404 for a in actions)
    classroom.refresh_from_db()
    member.refresh_from_db()
    assert classroom.state == "open" and member.extra_minutes == 0  # nothing happened
    client.force_login(instructor)
    page = client.get(watch)
    assert page.status_code == 200 and b"read-only" in page.content
    assert (
        f'data-ws-path="/ws/classrooms/{classroom.pk}/watch/{member.pk}/"'.encode() in page.content
    )
    # Actions are POST only: a link or an image cannot trigger them.
    assert all(client.get(a).status_code == 405 for a in actions)


@pytest.mark.django_db
def test_a_member_of_another_class_cannot_be_watched_through_mine(
    client, instructor, make_classroom, join
):
    from django.test import Client

    mine = make_classroom(instructor)
    other = make_classroom(instructor, name="Other")
    join(other.join_code, "Grace", browser=Client())
    stranger = other.members.get()
    client.force_login(instructor)
    assert client.get(f"/classrooms/{mine.pk}/watch/{stranger.pk}/").status_code == 404


@pytest.mark.django_db
def test_a_joined_learner_cannot_open_the_dashboard(client, classroom, join):
    join(classroom.join_code, "Ada")
    for page in PAGES:
        assert client.get(page.format(pk=classroom.pk)).status_code == 302


@pytest.mark.django_db
def test_a_learner_never_sees_other_learners_unless_the_leaderboard_is_on(
    client, classroom, join, django_user_model
):
    from django.test import Client

    other = Client()
    join(classroom.join_code, "Grace", browser=other)
    join(classroom.join_code, "Ada")
    page = client.get(f"/c/{classroom.join_code}/")
    assert page.status_code == 200 and b"Ada" in page.content and b"Grace" not in page.content
    classroom.leaderboard = True
    classroom.save()
    assert b"Grace" in client.get(f"/c/{classroom.join_code}/").content


async def _dashboard(pk: int, cookie: bytes, origin: bytes = b"http://localhost"):
    ws, connected, code = await ws_open(f"/ws/classrooms/{pk}/dashboard/", cookie, origin)
    return ws, (connected, code)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_dashboard_socket_admits_only_the_owner(
    instructor, other_instructor, make_classroom, cookie_of
):
    classroom = await database_sync_to_async(make_classroom)(instructor)
    student = await database_sync_to_async(User.objects.create_user)("student")
    for user in (None, student, other_instructor):
        ws, (connected, _) = await _dashboard(classroom.pk, await cookie_of(user))
        assert connected and await closed_with(ws) == 4403, user
    ws, (connected, _) = await _dashboard(classroom.pk, await cookie_of(instructor))
    assert connected
    await ws.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_watch_socket_admits_only_the_owner(
    instructor, other_instructor, make_classroom, cookie_of
):
    classroom = await database_sync_to_async(make_classroom)(instructor)
    student = await database_sync_to_async(User.objects.create_user)("student")
    for user in (None, student, other_instructor):
        path = f"/ws/classrooms/{classroom.pk}/watch/1/"
        ws, connected, _ = await ws_open(path, await cookie_of(user))
        # Nothing is sent before the close.
        assert connected and await closed_with(ws) == 4403, user


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_dashboard_socket_refuses_another_origin(instructor, make_classroom, cookie_of):
    classroom = await database_sync_to_async(make_classroom)(instructor)
    cookie = await cookie_of(instructor)
    ws, (connected, _) = await _dashboard(classroom.pk, cookie, origin=b"https://evil.example")
    assert not connected
