"""A learner's first minute, in a real Chromium: start as a guest, type, resize, reload."""

from __future__ import annotations

import http.server
import re
import threading

from playwright.sync_api import Page


def submit_start(page: Page, site: str, name: str, path: str = "/terminal/") -> None:
    """Open the page, mark its document (`window.startedHere`), give a name, submit."""
    page.goto(f"{site}{path}")
    page.evaluate("window.startedHere = true")
    page.fill("#display-name", name)
    page.click("text=Open my terminal")


def start_as_guest(page: Page, site: str, name: str = "Ada") -> str:
    """Start as a guest and wait for the prompt; return the sandbox hostname."""
    submit_start(page, site, name)
    page.wait_for_function("window.contained && window.contained.text().includes('# ')")
    return page.locator("[data-terminal]").get_attribute("data-hostname")


# How many times this document has fetched xterm.js.
XTERM_LOADS = (
    "performance.getEntriesByType('resource').map(e => e.name)"
    ".filter(name => /vendor\\/xterm\\/xterm\\.[^/]*js$/.test(name)).length"
)


def test_a_guest_starts_in_place_without_loading_a_new_page(live_site, new_page):
    page = new_page()
    start_as_guest(page, live_site)
    # The same document, at the same address: no navigation happened.
    assert page.evaluate("window.startedHere === true")
    assert page.url == f"{live_site}/terminal/"
    assert page.title() == "Your terminal · Contained"
    # xterm.js was loaded and run once, by the start page, not again for the terminal.
    assert page.evaluate(XTERM_LOADS) == 1


def test_a_start_page_whose_xterm_did_not_load_opens_the_terminal_as_a_new_page(
    live_site, new_page
):
    # xterm.js lost on the way to the start page: started in place, the terminal would
    # have no xterm. The form posts the plain way, and the page it loads brings its own.
    page = new_page()
    fetched = []

    def first_fails(route):
        fetched.append(route.request.url)
        if len(fetched) == 1:
            route.abort()
        else:
            route.continue_()

    page.route(re.compile(r"/vendor/xterm/xterm\.[^/]*js$"), first_fails)
    start_as_guest(page, live_site)
    assert page.evaluate("window.startedHere") is None  # a new document
    assert page.url == f"{live_site}/terminal/" and len(fetched) == 2


def test_the_lessons_list_runs_the_terminals_libraries_after_it_has_loaded(live_site, new_page):
    # Run there while the visitor reads, xterm.js has its compiled code kept by the time a
    # lesson's terminal needs it (static/js/terminal-warm.js); never before the list is up.
    page = new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_site}/")
    page.wait_for_function(
        "window.Terminal && window.FitAddon && window.Unicode11Addon && window.WebLinksAddon"
    )
    started, loaded = page.evaluate(
        "[performance.getEntriesByType('resource').find(e => /vendor\\/xterm\\/xterm\\./"
        ".test(e.name)).startTime, performance.getEntriesByType('navigation')[0].loadEventEnd]"
    )
    assert loaded > 0 and started >= loaded
    assert errors == [] and page.locator(".lesson-card").count() > 0


def test_a_lesson_opened_from_the_list_comes_in_place_and_back_returns_to_the_list(
    live_site, new_page
):
    page = new_page(1400, 900)
    start_as_guest(page, live_site)
    page.goto(f"{live_site}/")
    page.evaluate("window.listHere = true")
    page.wait_for_function("!!(window.Terminal && window.containedSwap)")
    page.dblclick("a[href='/lessons/pid-namespaces/']")  # one page comes, not two
    page.wait_for_function("window.contained && window.contained.text().includes('# ')")
    # The same document, now at the lesson's address, with its title, steps and terminal.
    assert page.evaluate("window.listHere === true")
    assert page.url == f"{live_site}/lessons/pid-namespaces/"
    assert page.title().startswith("PID namespaces")
    assert page.locator("[data-step]").count() > 0
    page.wait_for_selector("[data-terminal][data-state=connected]")  # the one on screen
    assert page.evaluate(XTERM_LOADS) == 1  # run by the list, not again for the lesson
    page.evaluate("window.contained.type('echo $((6*7))')")
    page.wait_for_function("window.contained.text().includes('42')")
    # Back: the list again, as a page of its own.
    page.go_back()
    page.locator(".lesson-card").first.wait_for()
    assert page.url == f"{live_site}/" and page.evaluate("window.listHere") is None


def test_a_lesson_link_followed_before_xterm_has_run_loads_the_lesson_as_a_new_page(
    live_site, new_page
):
    page = new_page()
    start_as_guest(page, live_site)
    page.route(re.compile(r"/vendor/xterm/xterm\.[^/]*js$"), lambda route: route.abort())
    page.goto(f"{live_site}/")
    page.evaluate("window.listHere = true")
    page.wait_for_load_state("load")
    page.click("a[href='/lessons/pid-namespaces/']")
    page.wait_for_url(f"{live_site}/lessons/pid-namespaces/")
    page.locator("[data-step]").first.wait_for()
    assert page.evaluate("window.listHere") is None  # a new document


def test_a_name_refused_in_place_is_said_on_the_same_page(live_site, new_page):
    page = new_page(1400, 900)
    lesson = f"{live_site}/lessons/pid-namespaces/"
    submit_start(page, live_site, "   ", path="/lessons/pid-namespaces/")
    error = page.locator("#start-error")
    error.wait_for()
    assert "what to call you" in error.inner_text() and error.get_attribute("role") == "alert"
    # Only the form changed: the lesson's introduction, its address and title stay.
    assert page.locator(".lesson-intro").count() == 1
    assert page.url == lesson and "Contained" in page.title() and "terminal" not in page.title()
    assert page.evaluate("document.activeElement.id") == "display-name"
    # Corrected, it starts, still in place, into the lesson with its steps.
    page.fill("#display-name", "Ada")
    page.click("text=Open my terminal")
    page.wait_for_function("window.contained && window.contained.text().includes('# ')")
    assert page.evaluate("window.startedHere === true")
    assert page.url == lesson and page.locator("[data-step]").count() > 0


def test_a_learner_in_no_class_opens_the_class_socket_once(live_site, new_page):
    # The page asks once whether its learner is in a running class; told no (4404), it
    # stays quiet rather than asking again every few seconds.
    page = new_page()
    opened = []
    page.on("websocket", lambda ws: opened.append(ws.url) if "/ws/classroom/" in ws.url else None)
    start_as_guest(page, live_site)
    page.wait_for_timeout(4000)
    assert len(opened) == 1, opened


def test_without_javascript_the_start_form_still_opens_the_terminal_page(live_site, browser):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{live_site}/terminal/")
        page.fill("#display-name", "Ada")
        page.click("text=Open my terminal")
        page.wait_for_load_state()
        assert page.url == f"{live_site}/terminal/"
        assert page.locator("[data-terminal]").count() == 1
        assert page.locator("#display-name").count() == 0
    finally:
        context.close()


def run(page: Page, command: str, expect: str, timeout: float = 15000) -> str:
    page.evaluate("command => window.contained.type(command)", command)
    page.wait_for_function(
        "text => window.contained.text().includes(text)", arg=expect, timeout=timeout
    )
    return page.evaluate("window.contained.text()")


def test_a_guest_types_and_sees_their_own_sandbox(live_site, new_page):
    page = new_page()
    hostname = start_as_guest(page, live_site)
    assert hostname
    assert "started in" in page.locator("[data-terminal-status]").inner_text()
    run(page, "hostname", f"\n{hostname}\n")
    run(page, "echo $((6*7))", "\n42\n")
    # Typed keys, not only injected commands, reach the shell.
    page.locator("[data-terminal-screen]").click()
    page.keyboard.type("echo typed-$((5+5))")
    page.keyboard.press("Enter")
    page.wait_for_function("window.contained.text().includes('typed-10')")


def stty_size(page: Page) -> tuple[int, int]:
    """Ask the shell for its size; the answer is told apart from the echoed command by `=`."""
    page.evaluate("window.contained.type('stty size | sed s/^/SIZE=/')")
    page.wait_for_function(r"/SIZE=\d+ \d+/.test(window.contained.text())")
    text = page.evaluate("window.contained.text()")
    rows, cols = re.findall(r"SIZE=(\d+) (\d+)", text)[-1]
    page.evaluate("window.contained.term.clear()")
    return int(rows), int(cols)


def test_resizing_the_window_changes_stty_size(live_site, new_page):
    page = new_page(1200, 800)
    start_as_guest(page, live_site)
    # A page started in place may refit once its new layout settles (the refit waits 50 ms):
    # let that size reach the shell, as after the resize below.
    page.wait_for_timeout(400)
    before = stty_size(page)
    # The socket opened before xterm.js was loaded, at 24x80: the shell has the page's size.
    assert before == tuple(
        page.evaluate("[window.contained.term.rows, window.contained.term.cols]")
    )
    page.set_viewport_size({"width": 800, "height": 600})
    page.wait_for_timeout(400)
    after = stty_size(page)
    assert after != before
    assert after == tuple(page.evaluate("[window.contained.term.rows, window.contained.term.cols]"))


def test_a_reload_restores_the_earlier_output(live_site, new_page):
    page = new_page()
    start_as_guest(page, live_site)
    run(page, "echo remember-$((40+2))", "remember-42")
    page.reload()
    page.wait_for_function("window.contained && window.contained.text().includes('remember-42')")


def test_another_learner_cannot_reach_the_first_ones_terminal(live_site, new_page):
    ada, bob = new_page(), new_page()
    ada_host = start_as_guest(ada, live_site, "Ada")
    run(ada, "echo ada-only-$((3*3)) > /root/mine; cat /root/mine", "ada-only-9")
    bob_host = start_as_guest(bob, live_site, "Bob")
    assert bob_host != ada_host
    text = run(bob, "cat /root/mine; hostname", f"\n{bob_host}\n")
    assert "ada-only-9" not in text
    # Even a websocket naming Ada's session lands in Bob's own sandbox.
    result = bob.evaluate(
        """host => new Promise(resolve => {
            const ws = new WebSocket(`ws://${location.host}/ws/terminal/?learner=${host}`);
            ws.onmessage = e => {
                if (typeof e.data === 'string') { resolve(JSON.parse(e.data)); ws.close(); }
            };
            ws.onclose = e => resolve({closed: e.code});
        })""",
        ada_host,
    )
    assert result.get("hostname") == bob_host


def test_a_page_from_another_origin_cannot_open_the_websocket(live_site, new_page):
    page = new_page()
    start_as_guest(page, live_site)  # the browser holds a valid session cookie for the site

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>evil</title>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        target = live_site.replace("http://", "ws://") + "/ws/terminal/"
        outcome = page.evaluate(
            """url => new Promise(resolve => {
                const ws = new WebSocket(url);
                ws.onopen = () => resolve('opened');
                ws.onclose = () => resolve('refused');
            })""",
            target,
        )
    finally:
        server.shutdown()
    assert outcome == "refused"


def test_run_in_terminal_then_the_step_turns_green_by_itself(live_site, new_page):
    page = new_page(1400, 900)
    response = page.goto(f"{live_site}/lessons/pid-namespaces/")
    assert response.status == 200, page.content()[:2000]
    page.fill("#display-name", "Ada")
    page.click("text=Open my terminal")
    page.wait_for_function("window.contained && window.contained.text().includes('# ')")
    step = page.locator("#step-become-pid-1")
    step.locator("[data-step-check]").click()
    step.locator(".not-yet").wait_for()
    assert "PID 1 of a new pid namespace" in step.locator("[data-step-result]").inner_text()
    step.locator("pre button", has_text="Run in terminal").click()
    # No click on Check: the page checks the open step every few seconds.
    page.locator("#step-become-pid-1.step-passed").wait_for(timeout=20000)
    assert "is PID 1 of its own pid namespace" in step.locator("[data-step-result]").inner_text()


def test_the_namespace_explorer_draws_a_new_box_for_unshare(live_site, new_page):
    page = new_page(1280, 1000)
    start_as_guest(page, live_site)
    page.click("[data-explorer] summary")
    page.locator("[data-pidns='sandbox']").wait_for()
    assert page.locator("[data-pidns^='new']").count() == 0
    page.evaluate("window.contained.type('unshare -pf --mount-proc -u sh')")
    box = page.locator("[data-pidns^='new']")
    box.wait_for(timeout=10000)
    assert "uts: new" in box.inner_text() and "sh" in box.inner_text()


def test_a_lesson_with_two_machines_has_a_terminal_for_each(live_site, new_page):
    page = new_page(1400, 900)
    page.goto(f"{live_site}/lessons/containers-vs-vms/")
    page.fill("#display-name", "Ada")
    page.click("text=Open my terminal")
    page.wait_for_function("window.contained && window.contained.text().includes('# ')")
    assert page.locator("[data-terminal-nodes] button").all_inner_texts() == ["web", "db"]
    run(page, "hostname; ping -c1 -W2 10.77.0.2 | grep -c ' 0% packet loss'", "\nweb\n1\n")
    page.click("[data-terminal-nodes] button:has-text('db')")
    page.wait_for_function("window.contained.text().includes('root@db')")
    run(page, "echo on-$(hostname)", "on-db")
    # Back to web: its screen comes back as it was.
    page.click("[data-terminal-nodes] button:has-text('web')")
    page.wait_for_function("window.contained.text().includes('10.77.0.2 | grep')")
