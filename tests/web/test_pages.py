"""The pages a visitor sees: home, login and the error pages."""

import pytest
from django.test import Client
from django.urls import path

from lessons.models import Lesson

pytestmark = pytest.mark.django_db


def get(client: Client, path: str):
    # Production settings redirect plain HTTP to HTTPS.
    return client.get(path, secure=True)


def test_home_lists_the_lessons_in_order(client):
    Lesson.objects.create(
        slug="pid-namespaces",
        number=2,
        title="PID namespaces",
        summary="Become PID 1.",
        minutes=20,
        body_markdown="# PID\n",
    )
    Lesson.objects.create(
        slug="no-such-thing",
        number=1,
        title="There is no such thing as a container",
        summary="Find your shell from the host.",
        minutes=15,
        body_markdown="# Hello\n",
    )

    response = get(client, "/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "There is no such thing as a container" in html
    assert "Find your shell from the host." in html
    assert "About 15 minutes" in html
    assert html.index("There is no such thing as a container") < html.index("PID namespaces")
    assert "No lessons are loaded yet" not in html


def test_home_says_so_when_there_are_no_lessons(client):
    html = get(client, "/").content.decode()

    assert "No lessons are loaded yet" in html


def test_home_is_accessible_and_self_contained(client):
    html = get(client, "/").content.decode()

    assert '<html lang="en">' in html
    assert 'href="#main"' in html
    assert '<main id="main"' in html
    assert "Contained" in html
    # No CDN, no external fonts: every asset comes from this server.
    assert "https://" not in html and "http://" not in html


def test_plain_http_is_redirected_to_https(client):
    response = client.get("/")

    assert response.status_code == 301
    assert response["Location"].startswith("https://")


def test_unknown_page_is_a_plain_404(client):
    response = get(client, "/no/such/page?token=secret")

    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html
    assert "no/such/page" not in html
    assert "secret" not in html


def boom(request):
    raise RuntimeError("deliberate failure with a secret inside")


class FailingUrls:
    urlpatterns = [path("boom", boom)]


def test_server_error_page_leaks_nothing(client, settings):
    settings.ROOT_URLCONF = FailingUrls
    client.raise_request_exception = False

    response = get(client, "/boom")

    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html
    assert "Traceback" not in html
    assert "secret" not in html


def test_login_page_renders_with_labelled_fields(client):
    html = get(client, "/accounts/login/").content.decode()

    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
