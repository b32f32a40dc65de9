"""A live site (Daphne + a real sandboxd) and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from bench.chromium import CHROMIUM, CHROMIUM_ARGS
from bench.workers import free_port, start_daphne

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.root)


@pytest.fixture
def site_daemon(start_sandboxd):
    return start_sandboxd()


@pytest.fixture
def site_env(site_daemon, fresh_env) -> dict[str, str]:
    return fresh_env(
        CONTAINED_DEBUG="1",
        ALLOWED_HOSTS="localhost",
        SANDBOXD_SOCKET=str(site_daemon.config.socket_path),
    )


@pytest.fixture
def site_manage(site_env):
    """site_manage(*args) -> stdout of `manage.py ARGS` against the live site's database."""

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=site_env,
            timeout=120,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@pytest.fixture
def live_site(site_env, site_manage, tmp_path: Path) -> Iterator[str]:
    """The whole lab on a free port: its URL (host `localhost`, the only allowed host)."""
    port = free_port()
    env = site_env
    # As `make run` does: the database, then the lessons.
    site_manage("migrate", "--noinput", "-v", "0")
    site_manage("lessons", "load")
    try:
        daphne = start_daphne(env, port, tmp_path / "daphne.log")
    except RuntimeError as failure:
        pytest.fail(str(failure))
    try:
        yield f"http://localhost:{port}"
    finally:
        daphne.terminate()
        daphne.wait(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API runs an event loop in this thread
    # while it is open, and the asyncio tests of later modules need the thread's loop free.
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator:
    """new_page(width=1200, height=800): a page in a fresh context (its own cookies)."""
    contexts = []

    def make(width: int = 1200, height: int = 800) -> Page:
        # The site's CSP forbids eval, which Playwright's waiting on expressions uses.
        context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def start_class(live_site, site_manage, new_page):
    """start_class(name, record=False) -> (the instructor's dashboard page, the join code):
    logged in as `make run`'s instructor, through the real form."""

    def start(name: str, record: bool = False) -> tuple[Page, str]:
        password = re.search(r"password: (\S+)", site_manage("ensure_instructor")).group(1)
        teacher = new_page(1400, 900)
        teacher.goto(f"{live_site}/accounts/login/?next=/classrooms/new/")
        teacher.fill("#id_username", "instructor")
        teacher.fill("#id_password", password)
        teacher.click("button[type=submit]")
        teacher.fill("#id_name", name)
        teacher.check("label:has-text('02 PID namespaces') >> input")
        if record:
            teacher.check("#id_record_sessions")
        teacher.fill("#id_ends_at", "2099-01-01T12:00")
        teacher.click("text=Create classroom")
        teacher.locator("#dash-status", has_text="Live").wait_for()
        return teacher, teacher.locator(".join-code").inner_text().strip()

    return start


@pytest.fixture
def join_class(live_site, new_page):
    """join_class(code, name) -> the learner's page, joined, on the class page."""

    def join(code: str, name: str) -> Page:
        learner = new_page(1400, 900)
        learner.goto(f"{live_site}/join/{code}/")
        learner.fill("#display-name", name)
        learner.click("button:has-text('Join')")
        learner.wait_for_url(f"**/c/{code}/")
        return learner

    return join
