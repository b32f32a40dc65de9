"""The docker compose stack, built and run for real (`make test-compose`).

`scripts/compose-prepare.sh` has made the base image and ./wheels; the image builds here with
no network. A guest does what a learner does; then `down` and `up` must keep their progress
(in PostgreSQL) and their files (in the sandboxes volume).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.learner import LiveLearner
from bench.workers import free_port

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
PROJECT = "contained-compose-test"
BASE_IMAGE = "contained-test/bookworm"
UP_TIMEOUT = 300


class Stack:
    def __init__(self, env_file: Path, port: int) -> None:
        self.env_file = env_file
        self.url = f"http://127.0.0.1:{port}"
        self.command = [
            "docker-compose",
            "--project-name",
            PROJECT,
            "--env-file",
            str(env_file),
            "-f",
            "docker-compose.yml",
            "-f",
            "deploy/test/docker-compose.test.yml",
        ]

    def compose(self, *args: str, timeout: float = UP_TIMEOUT) -> str:
        done = subprocess.run(
            [*self.command, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"compose {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def up(self) -> None:
        self.compose("up", "-d", "--build")
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5):
                    return
            except OSError:
                time.sleep(1)
        logs = self.compose("logs", "--tail", "40")
        pytest.fail(f"the stack did not become healthy in {UP_TIMEOUT}s:\n{logs}")

    def psql(self, sql: str) -> str:
        return self.compose(
            "exec", "-T", "postgres", "psql", "-U", "contained", "-d", "contained", "-tA", "-c", sql
        ).strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    env_file = tmp_path_factory.mktemp("compose") / "env"
    port = free_port()
    env_file.write_text(
        "\n".join(
            [
                f"BASE_IMAGE={BASE_IMAGE}",
                "CONTAINED_IMAGE=contained-test/app",
                f"CONTAINED_ENV_FILE={env_file}",
                f"POSTGRES_PASSWORD={secrets.token_urlsafe(16)}",
                f"CONTAINED_PORT={port}",
                "CONTAINED_HTTPS=0",
                # Apart from any sandboxd the host's own tests run.
                f"CONTAINED_CGROUP_PARENT={PROJECT}",
                "",
            ]
        )
    )
    stack = Stack(env_file, port)
    stack.compose("down", "-v", "--remove-orphans")  # whatever a killed run left
    try:
        stack.up()
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans")


def test_every_part_answers_and_only_sandboxd_runs_as_root(stack):
    with urllib.request.urlopen(stack.url + "/healthz", timeout=10) as response:
        health = json.load(response)
    assert health["status"] == "ok", health
    assert health["checks"]["database"]["detail"] == "postgresql answered"
    assert health["checks"]["sandboxd"]["ok"] is True
    web_uid = stack.compose("exec", "-T", "web", "id", "-u").strip()
    sandboxd_uid = stack.compose("exec", "-T", "sandboxd", "id", "-u").strip()
    maintenance_uid = stack.compose("exec", "-T", "maintenance", "id", "-u").strip()
    assert (web_uid, sandboxd_uid, maintenance_uid) == ("10001", "0", "10001")
    # Its first daily pass, as soon as the web tier is up; then a guest gone for 40 days, whom
    # it deletes through sandboxd's socket.
    deadline = time.monotonic() + 60
    while "pruned 0 guests not seen for 30 days" not in stack.compose("logs", "maintenance"):
        assert time.monotonic() < deadline, stack.compose("logs", "maintenance")
        time.sleep(1)
    stack.psql(
        "INSERT INTO sandboxapp_learner (sandbox_id, display_name, created_at, last_seen_at) "
        "VALUES ('gcomposeold01', 'Old', now() - interval '40 days', now() - interval '40 days')"
    )
    pruned = stack.compose("exec", "-T", "maintenance", "python", "manage.py", "prune_guests")
    assert "pruned 1 guests" in pruned and "gcomposeold01" in pruned
    assert stack.psql("SELECT count(*) FROM sandboxapp_learner") == "0"


@pytest.mark.asyncio
async def test_a_guests_progress_and_files_survive_down_and_up(stack):
    learner = LiveLearner(stack.url)
    home = await learner.get("/")
    assert "PID namespaces" in home
    await learner.start("Compose Ada")
    assert "become-pid-1" in await learner.get("/lessons/pid-namespaces/")

    hello = await learner.open_terminal()
    assert hello["created"] is True
    await learner.type("echo $((6*7))\r")
    await learner.expect(b"42")
    # Lesson 6 in a container too: a named netns needs a new, writable sysfs inside.
    await learner.type("ip netns add lab && ip netns exec lab ip -br link && echo NETNS-$((2+3))\r")
    await learner.expect(b"NETNS-5")
    token = secrets.token_hex(8)
    await learner.type(f"echo {token} > ~/kept.txt && unshare -pf sleep 600 >/dev/null 2>&1 &\r")
    deadline = time.monotonic() + 20
    while not (answer := await learner.check("pid-namespaces", "become-pid-1"))["passed"]:
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.3)
    await learner.close()
    passed = "SELECT count(*) FROM lessons_stepprogress WHERE passed_at IS NOT NULL"
    assert stack.psql(passed) == "1"

    stack.compose("down")
    stack.up()

    assert stack.psql(passed) == "1"
    assert "step-passed" in await learner.get("/lessons/pid-namespaces/")
    hello = await learner.open_terminal()
    assert hello["created"] is True  # a fresh sandbox ...
    await learner.type("cat ~/kept.txt\r")
    await learner.expect(token.encode() + b"\r\n")  # ... over the learner's own files
    await learner.close()
