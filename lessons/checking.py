"""Checking a learner's step: ask sandboxd for each check's outcome, record the progress.

The outcome is read by sandboxd from the host side (sandboxapp/runtime/checks.py); this
module only relays it and stores how far the learner got. Nothing here reads what the
learner typed or printed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from lessons.models import Step, StepProgress
from sandboxapp.models import Learner
from sandboxapp.runtime.client import Refused, SandboxdError, call_sync

CHECK_TIMEOUT = 10.0


class CheckUnavailable(Exception):
    """The step cannot be checked now; the message says why, for the learner."""


def _ask(op: str, learner: Learner, not_running: str, reply_timeout: float, **params) -> dict:
    """One sandboxd request for the learner; every failure becomes a sentence for them."""
    try:
        return call_sync(
            settings.SANDBOXD_SOCKET,
            op,
            reply_timeout=reply_timeout,
            learner=learner.sandbox_id,
            **params,
        )
    except Refused as refusal:
        raise CheckUnavailable(
            not_running if refusal.code == "not_running" else refusal.message
        ) from None
    except SandboxdError:
        raise CheckUnavailable("The sandbox service is not answering; try again.") from None


@dataclass(frozen=True)
class StepOutcome:
    passed: bool
    results: list[dict]
    progress: StepProgress


def step_check(
    learner: Learner, step: Step, *, counted: bool = True, answer: str | None = None
) -> StepOutcome:
    """Run every check of `step` in the learner's sandbox. A counted check is an attempt
    (the learner pressed Check); the page's own background checks are not. A quiz step's
    checks also get the learner's `answer`, judged by sandboxd against their own sandbox."""
    results = []
    for check in step.checks:
        params = check["params"]
        if step.quiz is not None:
            params = {**params, "answer": answer or ""}
        reply = _ask(
            "check",
            learner,
            "Your sandbox is not running: open the terminal, then check again.",
            CHECK_TIMEOUT,
            check=check["check"],
            params=params,
            node=check.get("node"),
        )
        results.append(
            {
                "passed": reply["passed"],
                "observed": reply["observed"],
                "expected": reply["expected"],
            }
        )
    passed = bool(results) and all(r["passed"] for r in results)
    progress, _ = StepProgress.objects.get_or_create(learner=learner, step=step)
    changed = counted or (passed and progress.passed_at is None)
    if counted:
        progress.attempts += 1
    if passed and progress.passed_at is None:
        progress.passed_at = timezone.now()
    progress.checks_passed = sum(r["passed"] for r in results)
    progress.last_observed = "; ".join(r["observed"] for r in results)
    if changed:
        progress.save()
    return StepOutcome(passed, results, progress)


def hint_next(learner: Learner, step: Step) -> tuple[str | None, int]:
    """The next hint of `step` for this learner (None when all are shown), and how many
    they have now seen."""
    progress, _ = StepProgress.objects.get_or_create(learner=learner, step=step)
    if progress.hints_used >= len(step.hints):
        return None, progress.hints_used
    hint = step.hints[progress.hints_used]
    progress.hints_used += 1
    progress.save(update_fields=["hints_used", "updated_at"])
    return hint, progress.hints_used


def step_prepare(learner: Learner, step: Step) -> None:
    """Run the step's setup in the learner's sandbox (on the node of its first check)."""
    if not step.setup:
        return
    node = step.checks[0].get("node") if step.checks else None
    reply = _ask(
        "exec",
        learner,
        "Your sandbox is not running yet: open the terminal.",
        CHECK_TIMEOUT + 5,
        node=node,
        argv=["/bin/bash", "-c", step.setup],
        timeout=CHECK_TIMEOUT,
    )
    if reply["code"] != 0:
        raise CheckUnavailable("This step's preparation failed in your sandbox; reload the page.")
