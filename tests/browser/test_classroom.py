"""A class in two real Chromium contexts: the dashboard follows a learner live, the instructor
watches their terminal without being able to type in it, and ends the class."""

from __future__ import annotations

import re
import time


def test_a_class_from_join_to_end_in_two_browsers(live_site, start_class, join_class):
    teacher, code = start_class("Friday lab")
    assert re.fullmatch(r"[A-Z0-9]{6}", code)
    learner = join_class(code, "Ada")
    teacher.locator("tr", has_text="Ada").wait_for(timeout=5000)  # joined, shown live
    # The class's lessons open in place, as the home page's do: the class's own script,
    # run on the class page, must then tell the lesson's page what the instructor says.
    learner.evaluate("window.classPageHere = true")
    learner.wait_for_function("!!(window.Terminal && window.containedSwap)")
    learner.click("text=PID namespaces")
    learner.wait_for_function("window.contained && window.contained.text().includes('# ')")
    assert learner.evaluate("window.classPageHere === true")
    assert learner.url.endswith("/lessons/pid-namespaces/")
    step = learner.locator("#step-become-pid-1")
    step.locator("pre button", has_text="Run in terminal").click()
    learner.locator("#step-become-pid-1.step-passed").wait_for(timeout=20000)
    passed_at = time.monotonic()
    cell = teacher.locator("tr", has_text="Ada").locator("td").first
    cell.locator("xpath=self::*[@data-state='passed']").wait_for(timeout=2000)
    assert time.monotonic() - passed_at < 2
    assert "passed" in cell.get_attribute("aria-label")

    # Watching Ada's terminal, read-only.
    teacher.locator("tr", has_text="Ada").locator("summary").click()
    teacher.click("text=Watch terminal")
    teacher.locator("[data-terminal-status]", has_text="read-only").wait_for()
    learner.evaluate("window.contained.type('echo watched-$((6*7))')")
    teacher.wait_for_function("window.contained.text().includes('watched-42')", timeout=10000)
    teacher.locator("[data-terminal-screen]").click()
    teacher.keyboard.type("touch /root/viewer-was-here\n")
    teacher.locator("[data-terminal-status]", has_text="refuses your keys").wait_for()
    learner.evaluate("window.contained.type('ls /root/viewer-was-here || echo nothing-$((2+2))')")
    learner.wait_for_function("window.contained.text().includes('nothing-4')", timeout=10000)

    # Ending the class closes the learner's terminal with a clear notice; the results stay.
    teacher.go_back()
    teacher.on("dialog", lambda dialog: dialog.accept())
    teacher.click("text=End the class")
    teacher.locator(".notice", has_text="The class has ended").wait_for()
    learner.locator(".class-banner", has_text="ended the class").wait_for(timeout=5000)
    learner.locator("[data-terminal-status]", has_text="The class has ended.").wait_for()
    results = teacher.request.get(teacher.url.rstrip("/") + "/results.csv").text()
    ada = next(line for line in results.splitlines() if line.startswith("Ada,"))
    assert ada.startswith("Ada,1,3,passed")
