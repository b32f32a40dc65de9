"""A recorded session replayed in Chromium with the vendored player, under the page's CSP."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def site_daemon(start_sandboxd, tmp_path):
    # This module's site records every session it may.
    return start_sandboxd(recordings_dir=tmp_path / "casts")


def test_a_recorded_session_replays_in_the_browser(live_site, site_manage, new_page):
    password = re.search(r"password: (\S+)", site_manage("ensure_instructor")).group(1)
    teacher = new_page(1300, 900)
    teacher.goto(f"{live_site}/accounts/login/?next=/classrooms/new/")
    teacher.fill("#id_username", "instructor")
    teacher.fill("#id_password", password)
    teacher.click("button[type=submit]")
    teacher.fill("#id_name", "Taped lab")
    teacher.check("label:has-text('02 PID namespaces') >> input")
    teacher.check("#id_record_sessions")
    teacher.fill("#id_ends_at", "2099-01-01T12:00")
    teacher.click("text=Create classroom")
    code = teacher.locator(".join-code").inner_text().strip()

    learner = new_page()
    learner.goto(f"{live_site}/join/{code}/")
    learner.fill("#display-name", "Ada")
    learner.click("button:has-text('Join')")
    learner.goto(f"{live_site}/terminal/")
    learner.wait_for_function("window.contained && window.contained.text().includes('# ')")
    learner.evaluate("window.contained.type('echo taped-$((6*7))')")
    learner.wait_for_function("window.contained.text().includes('taped-42')")

    # A reset ends the session, which closes its recording.
    row = teacher.locator("tr", has_text="Ada")
    row.locator("summary").click()
    row.locator("text=Reset sandbox, keep files").click()
    teacher.locator(".notice", has_text="Reset Ada's sandbox").wait_for()
    teacher.locator("tr", has_text="Ada").locator("summary").click()
    teacher.click("text=Recorded sessions")
    # Newest first: the learner's page has already opened a new session since the reset.
    teacher.locator("a", has_text="Replay").last.click()
    teacher.locator("[data-replay-status]", has_text="Ready").wait_for()
    teacher.evaluate("window.containedReplay.play()")
    teacher.wait_for_function(
        "document.querySelector('[data-replay]').innerText.includes('taped-42')", timeout=20000
    )
