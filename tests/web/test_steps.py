"""Checking a step from the lesson page, against a real sandboxd, and its hints."""

from __future__ import annotations

import base64
import time

import pytest

from lessons.loader import read_lesson, save
from lessons.models import Step, StepProgress
from sandboxapp.models import Learner

pytestmark = [pytest.mark.root, pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


@pytest.fixture
def lesson(settings):
    save([read_lesson(settings.LESSONS_CONTENT_DIR / "02-pid-namespaces")])
    return Step.objects.get(slug="become-pid-1")


def start(client) -> Learner:
    client.post("/start/", {"display_name": "Ada"})
    return Learner.objects.get()


URL = "/lessons/pid-namespaces/steps/become-pid-1/"


def test_a_step_fails_then_passes_when_the_sandbox_really_changed(client, lesson, sandboxd):
    learner = start(client)
    assert client.post(URL + "check").status_code == 409  # no sandbox yet: open the terminal
    sandboxd.call("ensure", learner=learner.sandbox_id)
    sandboxd.call("exec", learner=learner.sandbox_id, argv=["sh", "-c", "echo PASS"])
    first = client.post(URL + "check").json()
    assert first["passed"] is False and first["attempts"] == 1
    assert "pid namespace" in first["results"][0]["expected"]
    sandboxd.call(
        "exec",
        learner=learner.sandbox_id,
        argv=["sh", "-c", "unshare -pf sleep 600 >/dev/null 2>&1 &"],
    )
    deadline = time.monotonic() + 10
    while not (answer := client.post(URL + "check", {"auto": "1"}).json())["passed"]:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    progress = StepProgress.objects.get(learner=learner, step=lesson)
    assert progress.passed_at is not None
    assert progress.attempts == 1  # the page's own background checks are not attempts
    page = client.get("/lessons/pid-namespaces/")
    assert b"step-passed" in page.content


def test_hints_come_one_at_a_time(client, lesson):
    start(client)
    first = client.post(URL + "hint").json()
    second = client.post(URL + "hint").json()
    third = client.post(URL + "hint").json()
    assert "unshare -p" in first["hint"] and second["used"] == 2
    assert third["hint"] is None and third["left"] == 0


def test_a_visitor_cannot_check_or_take_hints(client, lesson):
    assert client.post(URL + "check").status_code == 403
    assert client.post(URL + "hint").status_code == 403
    assert client.get(URL + "check").status_code == 405


def test_a_quiz_answer_is_judged_against_the_learners_own_sandbox(client, settings, sandboxd):
    save([read_lesson(settings.LESSONS_CONTENT_DIR / "01-no-such-thing")])
    learner = start(client)
    sandboxd.call("ensure", learner=learner.sandbox_id)
    url = "/lessons/no-such-thing/steps/your-inode/check"
    wrong = client.post(url, {"answer": "4026531836"}).json()
    assert wrong["passed"] is False and "is not the inode" in wrong["results"][0]["observed"]
    reply = sandboxd.call(
        "exec", learner=learner.sandbox_id, argv=["readlink", "/proc/self/ns/pid"]
    )
    mine = base64.b64decode(reply["output"]).decode().strip()  # "pid:[N]", pasted as is
    right = client.post(url, {"answer": mine}).json()
    assert right["passed"] is True and right["attempts"] == 2
    assert client.post(url, {"auto": "1"}).status_code == 400  # quizzes are not polled
    choices = "/lessons/no-such-thing/steps/which-namespaces/check"
    partial = client.post(choices, {"answer": ["pid", "net"]}).json()
    assert partial["passed"] is False and "more namespace" in partial["results"][0]["observed"]
    full = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
    assert client.post(choices, {"answer": full}).json()["passed"] is True


def test_a_steps_setup_runs_in_the_learners_sandbox(client, settings, sandboxd):
    save([read_lesson(settings.LESSONS_CONTENT_DIR / "10-images")])
    learner = start(client)
    url = "/lessons/images/steps/enter-an-overlay/prepare"
    assert client.post(url).status_code == 409  # no sandbox yet
    sandboxd.call("ensure", learner=learner.sandbox_id)
    assert client.post(url).json() == {"prepared": True}
    check = ["test", "-d", "/tmp/img/work"]
    assert sandboxd.call("exec", learner=learner.sandbox_id, argv=check)["code"] == 0
    assert client.post(url).json() == {"prepared": True}  # again: setups are idempotent
