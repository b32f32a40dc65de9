"""``/healthz`` really exercises the database and the channel layer, and says when it cannot."""

import json
import socket

import pytest

from sandboxapp import health

# Asks /healthz of a fresh Django configured by the environment, and prints what it answered.
ASK_HEALTHZ = """
import json
import django
from django.conf import settings

django.setup()
from django.test import Client

response = Client().get("/healthz")
print(json.dumps({
    "status_code": response.status_code,
    "body": response.content.decode(),
    "engine": settings.DATABASES["default"]["ENGINE"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
}))
"""


@pytest.fixture
def ask_healthz(fresh_env, run_python):
    def ask(**env: str) -> dict:
        env.setdefault("ALLOWED_HOSTS", "testserver")
        env.setdefault("SECRET_KEY", "healthz-test-" + "k" * 50)
        result = run_python(ASK_HEALTHZ, fresh_env(**env))
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        answer["json"] = json.loads(answer["body"])
        answer["log"] = result.stderr
        return answer

    return ask


def closed_port() -> int:
    """A local port nobody listens on: bound and never listened to while the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_healthz_without_sandboxd_is_degraded_and_says_why(client, settings, tmp_path):
    settings.SANDBOXD_SOCKET = tmp_path / "sandboxd.sock"
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert body["status"] == "degraded"
    assert set(body["checks"]) == {"web", "database", "channel_layer", "sandboxd"}
    for name in ("web", "database", "channel_layer"):
        assert body["checks"][name]["ok"] is True, body
    assert body["checks"]["database"]["detail"] == "sqlite answered"
    assert body["checks"]["sandboxd"] == {"ok": False, "detail": "not running"}


def test_healthz_is_degraded_when_the_channel_layer_is_unreachable(ask_healthz):
    answer = ask_healthz(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")

    assert answer["layer"] == "channels_redis.core.RedisChannelLayer"
    assert answer["status_code"] == 503
    assert answer["json"]["status"] == "degraded"
    assert answer["json"]["checks"]["channel_layer"] == {
        "ok": False,
        "detail": "send/receive failed",
    }
    assert answer["json"]["checks"]["database"]["ok"] is True
    assert "Traceback" not in answer["body"]
    assert "the channel layer check failed" in answer["log"]


def test_healthz_is_degraded_when_the_database_is_unreachable(ask_healthz):
    answer = ask_healthz(DATABASE_URL=f"postgres://nobody:nothing@127.0.0.1:{closed_port()}/none")

    assert answer["status_code"] == 503
    assert answer["json"]["checks"]["database"] == {"ok": False, "detail": "query failed"}
    assert answer["json"]["checks"]["channel_layer"]["ok"] is True
    assert "nobody" not in answer["body"]
    assert "the database check failed" in answer["log"]


def test_healthz_is_not_redirected_to_https(ask_healthz):
    # Production settings redirect to HTTPS, but health probes come over plain HTTP: the
    # answer is the report itself (degraded here, with no sandboxd), not a 301.
    answer = ask_healthz()
    assert answer["status_code"] == 503
    assert answer["json"]["checks"]["web"]["ok"] is True


@pytest.mark.services
def test_healthz_against_real_postgres_and_redis(ask_healthz, service_urls):
    answer = ask_healthz(**service_urls)

    assert answer["engine"] == "django.db.backends.postgresql"
    assert answer["layer"] == "channels_redis.core.RedisChannelLayer"
    assert answer["json"]["checks"]["database"] == {"ok": True, "detail": "postgresql answered"}
    assert answer["json"]["checks"]["channel_layer"]["ok"] is True


def test_sandboxd_probe_reports_a_missing_socket_as_not_running(tmp_path):
    assert health.probe_sandboxd(tmp_path / "sandboxd.sock") == {
        "ok": False,
        "detail": "not running",
    }


def test_sandboxd_probe_reports_a_stale_socket_as_not_answering(tmp_path):
    path = tmp_path / "sandboxd.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening: what a crashed daemon leaves behind

        assert health.probe_sandboxd(path) == {"ok": False, "detail": "not answering"}


def test_sandboxd_probe_wants_an_answer_not_just_a_connection(tmp_path):
    path = tmp_path / "sandboxd.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen()  # accepts, never answers

        assert health.probe_sandboxd(path, timeout=0.2) == {
            "ok": False,
            "detail": "not answering",
        }
