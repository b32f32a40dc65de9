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
from sandboxapp.runtime import network, volumes
from sandboxapp.runtime.checks import check_run
from sandboxapp.runtime.sandbox import RuntimeConfig, Sandbox, sandbox_create, sandbox_link
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
    with sandbox_create(SandboxSpec(name=f"selftest-{secrets.token_hex(3)}"), config) as sandbox:
        yield sandbox


@contextmanager
def _machines(lesson: LessonSource, config: RuntimeConfig) -> Iterator[dict[str, Sandbox]]:
    """A lesson's nodes for a throwaway learner, linked as sandboxd links them; their
    files are deleted afterwards."""
    learner = f"selftest{secrets.token_hex(3)}"
    made: dict[str, Sandbox] = {}
    try:
        for node in lesson.nodes:
            spec = SandboxSpec(
                name=f"{learner}--{node}",
                learner=learner,
                node=node,
                hostname=node,
            )
            made[node] = sandbox_create(spec, config)
        for index, (a, b) in enumerate(lesson.links):
            sandbox_link(
                made[a],
                made[b],
                network.NodeEnd(f"to-{b}", f"10.77.{index}.1"),
                network.NodeEnd(f"to-{a}", f"10.77.{index}.2"),
            )
        yield made
    finally:
        for sandbox in made.values():
            sandbox.destroy()
        for node in lesson.nodes:
            volumes.volume_delete(config.state_dir, f"{learner}.{node}")


@contextmanager
def _where(lesson: LessonSource, config: RuntimeConfig) -> Iterator[dict[str | None, Sandbox]]:
    """Where a step's checks run: the lesson's nodes, or one sandbox."""
    if lesson.nodes:
        with _machines(lesson, config) as made:
            yield dict(made)
    else:
        with _sandbox(config) as sandbox:
            yield {None: sandbox}


def _start(sandbox: Sandbox, script: str) -> None:
    """As typed into the learner's shell: the shell stays, its jobs are its children."""
    sandbox.spawn(["/bin/bash", "-c", f"{script}\nwait"])


def _setup(sandbox: Sandbox, setup: str) -> None:
    if setup:
        code, out = sandbox.run(["/bin/bash", "-c", setup])
        if code != 0:
            raise RuntimeError(f"setup failed ({code}): {out.decode(errors='replace')}")


def _outcomes(where: dict, checks: list[dict], answer: str | None = None) -> list:
    extra = {} if answer is None else {"answer": answer}
    return [check_run(where[c.get("node")], c["check"], {**c["params"], **extra}) for c in checks]


def _passes(where: dict, checks: list[dict], within: float) -> tuple[bool, str]:
    deadline = time.monotonic() + within
    while True:
        outcomes = _outcomes(where, checks)
        if all(o.passed for o in outcomes):
            return True, "; ".join(o.observed for o in outcomes)
        if time.monotonic() > deadline:
            return False, "; ".join(o.observed for o in outcomes)
        time.sleep(0.2)


def _never_passes(where: dict, checks: list[dict], seconds: float) -> tuple[bool, str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        outcomes = _outcomes(where, checks)
        if all(o.passed for o in outcomes):
            return False, "passed: " + "; ".join(o.observed for o in outcomes)
        time.sleep(0.2)
    return True, "failed, as it should"


# Answers a learner might try on a quiz without looking: none may pass.
FAKE_ANSWERS = ["PASS", "", "1", "4026531836", "user,pid,mnt,net,uts,ipc,cgroup,time"]


def _quiz(lesson: LessonSource, step, config: RuntimeConfig) -> Iterator[Case]:
    """A quiz's solution prints the right answer from inside the sandbox; that answer passes
    and the blind guesses fail, in that same sandbox (answers differ between sandboxes)."""
    with _where(lesson, config) as where:
        code, out = where[step.checks[0].get("node")].run(["/bin/bash", "-c", step.solution])
        answer = out.decode(errors="replace").strip()
        outcomes = _outcomes(where, step.checks, answer)
        ok = code == 0 and all(o.passed for o in outcomes)
        seen = "; ".join(o.observed for o in outcomes)
        yield Case(lesson.slug, step.slug, "solution", ok, f"answer {answer!r}: {seen}")
        wrong = [a for a in FAKE_ANSWERS if all(o.passed for o in _outcomes(where, step.checks, a))]
        detail = f"passed: {wrong}" if wrong else "failed, as they should"
        yield Case(lesson.slug, step.slug, "fakes", not wrong, detail)


def selftest(lessons: list[LessonSource], config: RuntimeConfig) -> Iterator[Case]:
    for lesson in lessons:
        for step in lesson.steps:
            if not step.checks:
                continue
            if step.quiz is not None:
                yield from _quiz(lesson, step, config)
                continue
            # The solution, as typed, goes to the machine of the step's first check.
            first = step.checks[0].get("node")
            with _where(lesson, config) as where:
                _setup(where[first], step.setup)
                _start(where[first], step.solution)
                ok, detail = _passes(where, step.checks, PASS_WITHIN)
                yield Case(lesson.slug, step.slug, "solution", ok, detail)
            with _where(lesson, config) as where:
                _setup(where[first], step.setup)
                ok, detail = _never_passes(where, step.checks, 0.2)
                yield Case(lesson.slug, step.slug, "nothing", ok, detail)
                for fake in FAKES:
                    _start(where[first], fake)
                ok, detail = _never_passes(where, step.checks, FAIL_FOR)
                yield Case(lesson.slug, step.slug, "fakes", ok, detail)
