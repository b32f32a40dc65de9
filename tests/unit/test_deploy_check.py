"""``check --deploy`` passes with the production settings, with no warning at all."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_passes_with_production_settings(fresh_env):
    result = deploy_check(fresh_env(ALLOWED_HOSTS="contained.example"))

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNING" not in output


def test_check_deploy_fails_when_https_is_turned_off(fresh_env):
    # Shows the check above can fail: plain HTTP leaves cookies and redirects insecure.
    result = deploy_check(fresh_env(ALLOWED_HOSTS="contained.example", CONTAINED_HTTPS="0"))

    assert result.returncode != 0
    assert "security.W008" in result.stdout + result.stderr
