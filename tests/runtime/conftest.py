"""Real sandboxes, as root, under the outer cgroup guard of tests/sandboxes.py.

Every test here attacks or uses a real sandbox; each is marked `root`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxapp.runtime.sandbox import RuntimeConfig, Sandbox, sandbox_create
from sandboxapp.runtime.spec import Limits, SandboxSpec

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.root)


@pytest.fixture
def manage(config: RuntimeConfig):
    """manage(*args, **popen_kwargs): run `manage.py` with this session's runtime settings."""
    env = {
        **os.environ,
        "CONTAINED_STATE_DIR": str(config.state_dir),
        "CONTAINED_CGROUP_PARENT": config.cgroup_parent,
    }

    def run(*args: str, popen: bool = False, **kwargs: object):
        argv = [sys.executable, "manage.py", *args]
        kwargs = {"cwd": REPO, **kwargs, "env": {**env, **kwargs.get("env", {})}}  # type: ignore[dict-item]
        if popen:
            return subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]

    return run


@pytest.fixture
def make_sandbox(config: RuntimeConfig) -> Iterator:
    made: list[Sandbox] = []

    def make(learner: str | None = None, node: str | None = None, **limits: int | float) -> Sandbox:
        name = f"t-{secrets.token_hex(4)}"
        spec = SandboxSpec(name=name, learner=learner, node=node, limits=Limits(**limits))
        sandbox = sandbox_create(spec, config)
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.destroy()


@pytest.fixture
def sandbox(make_sandbox) -> Sandbox:
    return make_sandbox()


def _sh(sandbox: Sandbox, script: str, **kwargs: object) -> tuple[int, str]:
    code, out = sandbox.run(["/bin/sh", "-c", script], **kwargs)
    return code, out.decode(errors="replace")


@pytest.fixture
def sh():
    """sh(sandbox, script, user=...) runs a shell script inside; returns (status, output)."""
    return _sh
