"""The namespace explorer's data: the learner's own processes and namespaces, from sandboxd."""

from __future__ import annotations

import time

import pytest

from sandboxapp.models import Learner

pytestmark = [pytest.mark.root, pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def test_the_explorer_shows_a_new_pid_namespace_when_the_learner_makes_one(
    client, start_sandboxd, settings
):
    daemon = start_sandboxd()
    settings.SANDBOXD_SOCKET = daemon.config.socket_path
    assert client.get("/explorer.json").status_code == 403
    client.post("/start/", {"display_name": "Ada"})
    learner = Learner.objects.get()
    assert client.get("/explorer.json").status_code == 409  # no sandbox yet
    daemon.call("ensure", learner=learner.sandbox_id)
    before = client.get("/explorer.json").json()
    assert {p["namespaces"]["pid"]["is"] for p in before["processes"]} == {"sandbox"}
    script = "unshare -pf --mount-proc sleep 600 >/dev/null 2>&1 &"
    daemon.call("exec", learner=learner.sandbox_id, argv=["sh", "-c", script])
    deadline = time.monotonic() + 10
    while True:
        after = client.get("/explorer.json").json()
        nested = [p for p in after["processes"] if p["namespaces"]["pid"]["is"] != "sandbox"]
        if nested or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert nested and nested[0]["pid"] != 1 and nested[0]["nspid"][-1] == 1
    assert nested[0]["namespaces"]["mnt"]["is"].startswith("new")
    # Host pids are there for the curious, but nothing of anyone else's sandbox.
    assert all(p["cgroup"].find(learner.sandbox_id) >= 0 for p in after["processes"])
