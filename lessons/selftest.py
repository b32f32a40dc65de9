"""Every checked step against a real sandbox: its solution passes; nothing and fakes fail.

Runs as root with the runtime directly (no sandboxd), through the same check code sandboxd
runs. Each case gets a fresh sandbox, so one step's leftovers never help another.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lessons.loader import LessonSource
from sandboxapp.runtime import ids
from sandboxapp.runtime.checks import check_run
from sandboxapp.runtime.sandbox import RuntimeConfig, Sandbox, sandbox_create
from sandboxapp.runtime.spec import SandboxSpec

# What a learner might try instead of the exercise; none may pass any check.
FAKES = [
    "echo PASS",
    "echo 'PID 1'; echo inner; echo 'Passed.'",
    "exec -a unshare sleep 1",
    "PS1='PASS # '; hostname; echo 1 > /tmp/answer",
]
PASS_WITHIN = 10.0
FAIL_FOR = 1.5


@dataclass(frozen=True)
class Case:
    lesson: str
    step: str
    attempt: str  # "solution", "nothing" or a fake
    ok: bool
    detail: str


@contextmanager
def _sandbox(config: RuntimeConfig) -> Iterator[Sandbox]:
    name = f"selftest-{secrets.token_hex(3)}"
    uid_base = ids.ids_borrow(config.state_dir, name)
    try:
        sandbox = sandbox_create(SandboxSpec(name=name, uid_base=uid_base), config)
    except BaseException:
        ids.release_ids(config.state_dir, uid_base, ids.borrower(name))
        raise
    with sandbox:
        yield sandbox


def _start(sandbox: Sandbox, script: str) -> None:
    """As typed into the learner's shell: the shell stays, its jobs are its children."""
    sandbox.spawn(["/bin/bash", "-c", f"{script}\nwait"])


def _outcomes(sandbox: Sandbox, checks: list[dict]) -> list:
    return [check_run(sandbox, c["check"], c["params"]) for c in checks]


def _passes(sandbox: Sandbox, checks: list[dict], within: float) -> tuple[bool, str]:
    deadline = time.monotonic() + within
    while True:
        outcomes = _outcomes(sandbox, checks)
        if all(o.passed for o in outcomes):
            return True, "; ".join(o.observed for o in outcomes)
        if time.monotonic() > deadline:
            return False, "; ".join(o.observed for o in outcomes)
        time.sleep(0.2)


def _never_passes(sandbox: Sandbox, checks: list[dict], seconds: float) -> tuple[bool, str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        outcomes = _outcomes(sandbox, checks)
        if all(o.passed for o in outcomes):
            return False, "passed: " + "; ".join(o.observed for o in outcomes)
        time.sleep(0.2)
    return True, "failed, as it should"


def selftest(lessons: list[LessonSource], config: RuntimeConfig) -> Iterator[Case]:
    for lesson in lessons:
        for step in lesson.steps:
            if not step.checks:
                continue
            with _sandbox(config) as sandbox:
                _start(sandbox, step.solution)
                ok, detail = _passes(sandbox, step.checks, PASS_WITHIN)
                yield Case(lesson.slug, step.slug, "solution", ok, detail)
            with _sandbox(config) as sandbox:
                ok, detail = _never_passes(sandbox, step.checks, 0.2)
                yield Case(lesson.slug, step.slug, "nothing", ok, detail)
                for fake in FAKES:
                    _start(sandbox, fake)
                ok, detail = _never_passes(sandbox, step.checks, FAIL_FOR)
                yield Case(lesson.slug, step.slug, "fakes", ok, detail)
