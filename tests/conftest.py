"""Shared test set-up.

Markers (declared in pyproject.toml):

* ``root``: the test needs root. It fails, never skips, when not root, so a run without root
  cannot pass by quietly skipping the runtime tests. CI runs as root.
* ``services``: the test needs the real Redis and PostgreSQL that ``make test`` starts and
  describes in ``TEST_REDIS_URL`` and ``TEST_DATABASE_URL``. See ``service_urls``.

``tests/compose`` builds and runs the docker compose stack: ``make test-compose`` runs it
(with ``CONTAINED_COMPOSE_TEST=1``), ``make test`` leaves it out.
"""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
collect_ignore = [] if os.environ.get("CONTAINED_COMPOSE_TEST") == "1" else ["compose"]

# The guard cgroup, the runtime config and a real sandboxd, for any test that needs them.
pytest_plugins = ["tests.sandboxes"]


def require_root() -> None:
    """Fail the calling test, clearly, unless it runs as root."""
    if os.geteuid() != 0:
        pytest.fail(
            "this test needs root (real namespaces, cgroups and mounts): run `make test` as root",
            pytrace=False,
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root"):
        require_root()


@pytest.fixture
def requires_root() -> None:
    require_root()


@pytest.fixture
def service_urls() -> dict[str, str]:
    """The real services' URLs, as ``make test`` exports them.

    Under ``make test`` and CI (``CI=true``) they must be set and reachable: a missing service
    fails the test. A bare ``pytest`` outside CI skips these tests instead, since only
    ``make test`` starts the services.
    """
    urls = {
        "DATABASE_URL": os.environ.get("TEST_DATABASE_URL", ""),
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", ""),
    }
    missing = [f"TEST_{name}" for name, url in urls.items() if not url]
    if missing:
        message = f"{' and '.join(missing)} not set: run the suite with `make test`"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return urls


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    # Production settings use hashed static names, which need collectstatic first.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def plain_http(settings) -> None:
    """Pages without production's HTTP-to-HTTPS redirect, for tests of what lies behind it."""
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(autouse=True)
def _no_sandboxd_of_the_host(settings, tmp_path: Path) -> None:
    # A sandboxd the developer runs must not answer the tests: those that need one start it.
    settings.SANDBOXD_SOCKET = tmp_path / "no-sandboxd.sock"


@pytest.fixture
def fresh_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """Make the environment of a fresh process, with its own data dir under tmp_path.

    None of the settings' variables leak in from the environment the tests run in.
    """

    def make(**overrides: str) -> dict[str, str]:
        keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
        env = {name: value for name, value in os.environ.items() if name in keep}
        env["CONTAINED_DATA_DIR"] = str(tmp_path / "data")
        env["DJANGO_SETTINGS_MODULE"] = "sandboxapp.settings"
        env.update(overrides)
        return env

    return make


@pytest.fixture
def run_python() -> Callable[..., subprocess.CompletedProcess]:
    """Run Python code in a new interpreter in the repository, as manage.py would."""

    def run(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
