"""Guest learners, the playground and lesson pages, and the headers every page carries."""

from __future__ import annotations

import pytest

from lessons.models import Lesson
from sandboxapp.learners import SESSION_KEY
from sandboxapp.models import Learner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def test_a_visitor_is_asked_for_a_name_before_a_terminal(client):
    page = client.get("/terminal/")
    assert page.status_code == 200
    assert b'name="display_name"' in page.content
    assert b"data-terminal" not in page.content


def test_starting_as_a_guest_opens_the_terminal_and_cycles_the_session(client):
    client.get("/terminal/")
    before = client.session.session_key
    response = client.post("/start/", {"display_name": "  Ada   Lovelace ", "next": "/terminal/"})
    assert response.status_code == 302 and response["Location"] == "/terminal/"
    learner = Learner.objects.get()
    assert learner.display_name == "Ada Lovelace" and learner.user is None
    assert learner.sandbox_id.startswith("g") and len(learner.sandbox_id) == 13
    assert client.session[SESSION_KEY] == learner.pk
    assert client.session.session_key != before
    page = client.get("/terminal/")
    assert b"data-terminal" in page.content and b"terminal.js" in page.content


def test_the_same_browser_stays_the_same_learner(client):
    client.post("/start/", {"display_name": "Ada"})
    client.post("/start/", {"display_name": "Ada L."})
    assert Learner.objects.count() == 1
    assert Learner.objects.get().display_name == "Ada L."


@pytest.mark.parametrize(
    ("name", "message"),
    [("", b"what to call you"), ("x" * 41, b"under 40"), ("a\x07b", b"printable")],
)
def test_a_bad_name_is_explained_and_nothing_is_created(client, name, message):
    response = client.post("/start/", {"display_name": name})
    assert response.status_code == 400
    assert message in response.content
    assert b'aria-invalid="true"' in response.content
    assert Learner.objects.count() == 0


def test_a_refused_name_keeps_where_the_form_was_going(client):
    # Not to /start/ itself, which only takes a POST: the fixed name goes to the lesson.
    response = client.post("/start/", {"display_name": " ", "next": "/lessons/pid/"})
    assert response.status_code == 400
    assert b'name="next" value="/lessons/pid/"' in response.content


def test_next_never_leaves_the_site(client):
    response = client.post("/start/", {"display_name": "Ada", "next": "https://evil.example/"})
    assert response["Location"] == "/terminal/"


def test_starting_needs_the_csrf_token():
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/start/", {"display_name": "Ada"}).status_code == 403
    assert Learner.objects.count() == 0


def test_an_account_is_a_learner_too(client, django_user_model):
    user = django_user_model.objects.create_user("teacher", password="pw-long-enough-1")
    client.force_login(user)
    page = client.get("/terminal/")
    assert b"data-terminal" in page.content
    assert Learner.objects.get(user=user).sandbox_id.startswith("u")


def test_a_lesson_page_puts_the_text_beside_the_terminal(client):
    Lesson.objects.create(
        slug="pid",
        number=2,
        title="PID namespaces",
        summary="Become PID 1.",
        minutes=10,
        body_markdown="Run this:\n\n```\nunshare -pf --mount-proc sh\n```\n",
    )
    visitor = client.get("/lessons/pid/")
    assert b"Become PID 1." in visitor.content and b'name="display_name"' in visitor.content
    client.post("/start/", {"display_name": "Ada"})
    page = client.get("/lessons/pid/")
    assert b"data-lesson" in page.content and b"data-terminal" in page.content
    assert b"<code>unshare -pf --mount-proc sh" in page.content
    assert client.get("/lessons/nope/").status_code == 404


def test_every_page_allows_only_our_own_scripts(client):
    policy = client.get("/terminal/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    home = client.get("/")
    assert "Content-Security-Policy" in home
    assert b"<script>" not in home.content


def test_an_instructor_can_require_accounts(client, settings):
    settings.GUESTS_ALLOWED = False
    page = client.get("/terminal/")
    assert b"Log in to start" in page.content and b'name="display_name"' not in page.content
    refused = client.post("/start/", {"display_name": "Ada"})
    assert refused.status_code == 403 and b"log in before you start" in refused.content
    assert Learner.objects.count() == 0


def test_a_lesson_diagram_is_served_as_an_inert_svg(client, settings, tmp_path):
    folder = tmp_path / "02-pid"
    folder.mkdir()
    (folder / "tree.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    settings.LESSONS_CONTENT_DIR = tmp_path
    Lesson.objects.create(
        slug="pid", number=2, title="T", summary="S", minutes=5, body_markdown="![t](tree.svg)"
    )
    response = client.get("/lessons/pid/tree.svg")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert response["Content-Security-Policy"].startswith("default-src 'none'")
    for bad in ("missing.svg", "lesson.md", "..%2Fsecret.svg", "TREE.svg"):
        assert client.get(f"/lessons/pid/{bad}").status_code == 404, bad


def test_a_lesson_page_names_the_tools_this_host_lacks(client):
    Lesson.objects.create(
        slug="t",
        number=3,
        title="T",
        summary="S",
        minutes=5,
        body_markdown="B",
        tools=["unshare", "no-such-tool-xyz"],
    )
    client.post("/start/", {"display_name": "Ada"})
    page = client.get("/lessons/t/").content.decode()
    assert "This host lacks no-such-tool-xyz" in page and "lacks unshare" not in page
