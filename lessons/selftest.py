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


def _outcomes(sandbox: Sandbox, checks: list[dict], answer: str | None = None) -> list:
    extra = {} if answer is None else {"answer": answer}
    return [check_run(sandbox, c["check"], {**c["params"], **extra}) for c in checks]


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


# Answers a learner might try on a quiz without looking: none may pass.
FAKE_ANSWERS = ["PASS", "", "1", "4026531836", "user,pid,mnt,net,uts,ipc,cgroup,time"]


def _quiz(lesson: str, step, config: RuntimeConfig) -> Iterator[Case]:
    """A quiz's solution prints the right answer from inside the sandbox; that answer passes
    and the blind guesses fail, in that same sandbox (answers differ between sandboxes)."""
    with _sandbox(config) as sandbox:
        code, out = sandbox.run(["/bin/bash", "-c", step.solution])
        answer = out.decode(errors="replace").strip()
        outcomes = _outcomes(sandbox, step.checks, answer)
        ok = code == 0 and all(o.passed for o in outcomes)
        yield Case(
            lesson,
            step.slug,
            "solution",
            ok,
            f"answer {answer!r}: " + "; ".join(o.observed for o in outcomes),
        )
        wrong = [
            a for a in FAKE_ANSWERS if all(o.passed for o in _outcomes(sandbox, step.checks, a))
        ]
        yield Case(
            lesson,
            step.slug,
            "fakes",
            not wrong,
            f"passed: {wrong}" if wrong else "failed, as they should",
        )


def selftest(lessons: list[LessonSource], config: RuntimeConfig) -> Iterator[Case]:
    for lesson in lessons:
        for step in lesson.steps:
            if not step.checks:
                continue
            if step.quiz is not None:
                yield from _quiz(lesson.slug, step, config)
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
