"""Two Daphne workers behind nginx (deploy/nginx/contained.conf), with real PostgreSQL, Redis
and sandboxd: a learner's terminal works whichever worker they reach, and an instructor's
dashboard hears learners who are on the other worker."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest
import websockets

from bench.learner import LiveLearner
from bench.workers import Site, free_port, manage, site_prepare, workers_running

pytestmark = [pytest.mark.root, pytest.mark.asyncio]


def _redis(port: int) -> subprocess.Popen:
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    server = subprocess.Popen([*argv, "--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return server


@pytest.fixture
def redis_server() -> Iterator[dict]:
    """A Redis of this test's own, which it may stop and start again."""
    port = free_port()
    running = {"port": port, "server": _redis(port)}
    yield running
    running["server"].terminate()
    running["server"].wait(10)


@pytest.fixture
def site(start_sandboxd, fresh_env, service_urls, redis_server, tmp_path) -> Iterator[Site]:
    daemon = start_sandboxd()
    env = fresh_env(
        DATABASE_URL=service_urls["DATABASE_URL"],
        REDIS_URL=f"redis://127.0.0.1:{redis_server['port']}/0",
        CONTAINED_HTTPS="0",
        ALLOWED_HOSTS="127.0.0.1",
        SANDBOXD_SOCKET=str(daemon.config.socket_path),
    )
    site_prepare(env)
    with workers_running(env, tmp_path, count=2) as site:
        yield site


def _on(learner: LiveLearner, url: str) -> LiveLearner:
    """The same browser (cookies and all), now reaching the site at `url`."""
    learner.base_url = learner.origin = url
    return learner


async def test_a_terminal_resumes_on_the_other_worker_with_what_it_missed(site):
    learner = LiveLearner(site.proxy)
    await learner.start("Two-workers Ada")
    await learner.open_terminal()
    await learner.type("echo $((6*7))\r")
    await learner.expect(b"42")
    seen = learner.offset

    # Typed through worker A, whose connection then drops before the answer is read.
    _on(learner, site.workers[0])
    await learner.open_terminal(resume=True)
    token = secrets.token_hex(6)
    await learner.type(f"sleep 0.3; echo missed-{token}\r")
    await learner.close()

    _on(learner, site.workers[1])
    hello = await learner.open_terminal(resume=True)
    assert hello["created"] is False and hello["offset"] >= seen
    await learner.expect(f"missed-{token}\r\n".encode())
    await learner.type("hostname\r")
    await learner.expect(hello["hostname"].encode() + b"\r\n")
    await learner.close()


async def test_a_terminal_keeps_working_while_redis_restarts(site, redis_server):
    learner = LiveLearner(site.proxy)
    await learner.start("Redis-restart Ada")
    await learner.open_terminal()
    await learner.type("echo $((6*7))\r")
    await learner.expect(b"42")
    redis_server["server"].terminate()
    redis_server["server"].wait(10)
    await learner.type("echo $((7*8))\r")
    await learner.expect(b"56")
    redis_server["server"] = _redis(redis_server["port"])
    await learner.type("echo $((8*9))\r")
    await learner.expect(b"72")
    await learner.close()


async def test_the_dashboard_hears_a_learner_on_the_other_worker_even_after_idling(site):
    made = manage(
        site.env,
        "shell",
        "-c",
        "import json; from django.contrib.auth.models import User; "
        "from classroom.models import Classroom; from classroom.access import INSTRUCTORS_GROUP; "
        "from django.contrib.auth.models import Group; "
        f"u = User.objects.create_user('teach-{secrets.token_hex(4)}', password='pw-12345-xyz'); "
        "u.groups.add(Group.objects.get_or_create(name=INSTRUCTORS_GROUP)[0]); "
        "from django.utils import timezone; import datetime; "
        "c = Classroom.objects.create(name='Two workers', instructor=u, "
        "ends_at=timezone.now() + datetime.timedelta(hours=2)); "
        "print(json.dumps([u.username, c.pk, c.join_code]))",
    )
    username, pk, code = json.loads(made.strip().splitlines()[-1])
    teacher = LiveLearner(site.workers[0])
    await teacher.get("/accounts/login/")
    await teacher.post("/accounts/login/", {"username": username, "password": "pw-12345-xyz"})
    cookie = "; ".join(f"{c.name}={c.value}" for c in teacher.cookies)
    dashboard = site.workers[0].replace("http", "ws") + f"/ws/classrooms/{pk}/dashboard/"
    async with websockets.connect(
        dashboard, origin=site.workers[0], additional_headers={"Cookie": cookie}
    ) as ws:
        # redis-py 8 timed out channels-redis's blocking reads after a few idle seconds and
        # killed the consumer (requirements.txt pins redis-py 7 for this).
        await asyncio.sleep(12)
        learner = LiveLearner(site.workers[1])
        await learner.get(f"/join/{code}/")
        await learner.post(f"/join/{code}/", {"display_name": "Grace"})
        event = json.loads(await ws.recv())
    assert event["event"] == "joined"


async def test_the_load_bench_drives_typists_a_flood_and_a_reload_through_the_proxy(site, tmp_path):
    from bench import load

    args = load.parser().parse_args(
        ["--url", site.proxy, "--learners", "3", "--flooders", "1", "--reloaders", "1"]
        + ["--seconds", "6", "--ramp", "1", "--think", "0.5", "--give-up", "10"]
    )
    report = await load.run(args)
    daemon_log = (tmp_path / "sandboxd.log").read_text()[-3000:]
    assert report["dropped_sessions"] == 0, (report["all"]["first_errors"], daemon_log)
    assert report["all"]["errors"] == 0, report
    assert report["all"]["keystrokes"] > 10
    assert report["all"]["ctrl_c_to_prompt_p50_ms"] is not None
    assert re.match(r"\d+ of \d+ sandboxes", report["sandboxes"])
