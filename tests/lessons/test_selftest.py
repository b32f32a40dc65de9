"""`lessons selftest` over the real lessons: every solution passes, nothing and fakes fail."""

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.root


def test_every_checked_step_of_the_real_lessons(config, settings):
    settings.SANDBOX_STATE_DIR = config.state_dir
    settings.SANDBOX_CGROUP_PARENT = config.cgroup_parent
    out = StringIO()
    call_command("lessons", "selftest", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("ok") for line in lines), out.getvalue()
    # Every checked step's solution was tried, and so were the fakes.
    assert sum(" solution: " in line for line in lines) >= 16
    assert sum(" fakes: " in line for line in lines) >= 16
