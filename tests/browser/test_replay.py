"""A recorded session replayed in Chromium with the vendored player, under the page's CSP."""

from __future__ import annotations

import pytest


@pytest.fixture
def site_daemon(start_sandboxd, tmp_path):
    # This module's site records every session it may.
    return start_sandboxd(recordings_dir=tmp_path / "casts")


def test_a_recorded_session_replays_in_the_browser(live_site, start_class, join_class):
    teacher, code = start_class("Taped lab", record=True)
    learner = join_class(code, "Ada")
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
