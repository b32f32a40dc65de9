"""Two Daphne workers behind nginx (deploy/nginx/contained.conf), with real PostgreSQL, Redis
and sandboxd: a learner's terminal works whichever worker they reach, and an instructor's
dashboard hears learners who are on the other worker."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

from bench.learner import LiveLearner

pytestmark = [pytest.mark.root, pytest.mark.asyncio]

REPO = Path(__file__).resolve().parents[2]
SITE_CONF = REPO / "deploy" / "nginx" / "contained.conf"


@dataclass
class Site:
    proxy: str
    workers: list[str]
    manage: object


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{process.args[0]} did not listen on {port}:\n{log.read_text()}")
            time.sleep(0.1)


def _nginx_config(tmp: Path, listen: int, workers: list[int]) -> Path:
    """The shipped site file, on our ports, inside a main config of its own."""
    site = SITE_CONF.read_text()
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in workers)
    upstream = r"(upstream contained_workers \{\n)(?:.*\n)*?(\})"
    site = re.sub(upstream, rf"\1{servers}\2", site, count=1)
    site = site.replace("listen 8000;", f"listen 127.0.0.1:{listen};")
    (tmp / "site.conf").write_text(site)
    main = tmp / "nginx.conf"
    main.write_text(
        f"daemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-error.log;\n"
        "events {}\nhttp {\n  access_log off;\n"
        + "".join(
            f"  {kind}_temp_path {tmp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {tmp}/site.conf;\n}}\n"
    )
    return main


@pytest.fixture
def site(start_sandboxd, fresh_env, service_urls, tmp_path) -> Iterator[Site]:
    daemon = start_sandboxd()
    env = fresh_env(
        **service_urls,
        CONTAINED_HTTPS="0",
        ALLOWED_HOSTS="127.0.0.1",
        SANDBOXD_SOCKET=str(daemon.config.socket_path),
    )

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--noinput", "-v", "0")
    manage("lessons", "load")
    manage("collectstatic", "--noinput", "-v", "0")  # production settings: hashed names
    processes = []
    try:
        ports = [_free_port(), _free_port()]
        for port in ports:
            log = tmp_path / f"daphne-{port}.log"
            daphne = str(Path(sys.executable).parent / "daphne")
            argv = [daphne, "-b", "127.0.0.1", "-p", str(port), "sandboxapp.asgi:application"]
            with log.open("w") as out:
                processes.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=out))
            _wait_listening(port, processes[-1], log)
        listen = _free_port()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        config = _nginx_config(tmp_path, listen, ports)
        processes.append(subprocess.Popen([nginx, "-c", str(config)], stderr=subprocess.DEVNULL))
        _wait_listening(listen, processes[-1], tmp_path / "nginx-error.log")
        yield Site(
            proxy=f"http://127.0.0.1:{listen}",
            workers=[f"http://127.0.0.1:{port}" for port in ports],
            manage=manage,
        )
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)


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


async def test_an_idle_terminal_outlives_the_channel_layers_blocking_reads(site):
    # redis-py 8 timed out channels-redis's blocking reads after a few idle seconds, which
    # closed every terminal with an internal error (requirements.txt pins redis for this).
    learner = LiveLearner(site.proxy)
    await learner.start("Idle Ada")
    await learner.open_terminal()
    await learner.type("echo $((6*7))\r")
    await learner.expect(b"42")
    await asyncio.sleep(12)
    await learner.type("echo $((7*8))\r")
    await learner.expect(b"56")
    await learner.close()


async def test_the_dashboard_hears_a_learner_on_the_other_worker(site):
    made = site.manage(
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
        learner = LiveLearner(site.workers[1])
        await learner.get(f"/join/{code}/")
        await learner.post(f"/join/{code}/", {"display_name": "Grace"})
        event = json.loads(await ws.recv())
    assert event["event"] == "joined"
