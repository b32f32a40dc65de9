"""The instructor's view of a classroom: learners × steps, and what stands out."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from django.utils import timezone

from classroom.models import Classroom, Member
from lessons.models import Step, StepProgress

# No step opened, checked or hinted for this long: the dashboard marks the learner idle.
IDLE_AFTER = timedelta(minutes=5)


def cell_of(progress: StepProgress | None, now: datetime) -> dict:
    """One learner on one step: its state, attempts, hints and minutes spent so far."""
    if progress is None:
        return {"state": "not_started", "attempts": 0, "hints": 0, "minutes": None}
    if progress.passed_at is not None:
        state, until = "passed", progress.passed_at
    else:
        state, until = ("failed" if progress.attempts else "in_progress"), now
    return {
        "state": state,
        "attempts": progress.attempts,
        "hints": progress.hints_used,
        "minutes": round((until - progress.started_at).total_seconds() / 60, 1),
    }


def classroom_steps(classroom: Classroom) -> list[Step]:
    """The checked steps of the classroom's lessons, in the order the class takes them."""
    steps = (
        Step.objects.filter(lesson__classroomlesson__classroom=classroom)
        .exclude(checks=[])
        .select_related("lesson")
        .order_by("lesson__classroomlesson__position", "number")
    )
    return list(steps)


def classroom_progress(classroom: Classroom, now: datetime | None = None) -> dict:
    """Everything the dashboard draws, as JSON-ready data."""
    now = now or timezone.now()
    steps = classroom_steps(classroom)
    members = list(classroom.members.select_related("learner"))
    records = StepProgress.objects.filter(step__in=steps, learner__in=[m.learner for m in members])
    by_pair = {(p.learner_id, p.step_id): p for p in records}
    rows = []
    for member in members:
        mine = [
            by_pair[(member.learner_id, s.pk)]
            for s in steps
            if (member.learner_id, s.pk) in by_pair
        ]
        last = max([p.updated_at for p in mine] + [member.joined_at])
        rows.append(
            {
                "id": member.pk,
                "name": member.display_name,
                "idle": now - last >= IDLE_AFTER,
                "last_active": last.isoformat(),
                "cells": {
                    str(s.pk): cell_of(by_pair.get((member.learner_id, s.pk)), now) for s in steps
                },
            }
        )
    return {
        "classroom": {"id": classroom.pk, "name": classroom.name, "state": classroom.state},
        "steps": [
            {
                "id": s.pk,
                "lesson": s.lesson.number,
                "label": f"{s.lesson.number}.{s.number}",
                "title": f"{s.lesson.title}: {s.title}",
            }
            for s in steps
        ],
        "members": rows,
        "summary": summary(steps, rows),
    }


def summary(steps: list[Step], rows: list[dict]) -> dict:
    """Per step: the share of learners who passed and the median minutes it took them; and
    the learner stuck longest on a step they have not passed."""
    per_step = []
    for step in steps:
        cells = [row["cells"][str(step.pk)] for row in rows]
        passed = [c for c in cells if c["state"] == "passed"]
        per_step.append(
            {
                "id": step.pk,
                "passed": len(passed),
                "of": len(cells),
                "median_minutes": round(statistics.median(c["minutes"] for c in passed), 1)
                if passed
                else None,
            }
        )
    stuck = None
    for row in rows:
        for step in steps:
            cell = row["cells"][str(step.pk)]
            if cell["state"] in ("in_progress", "failed") and (
                stuck is None or cell["minutes"] > stuck["minutes"]
            ):
                stuck = {
                    "member": row["id"],
                    "name": row["name"],
                    "step": step.pk,
                    "minutes": cell["minutes"],
                }
    return {"steps": per_step, "stuck": stuck}


def members_following(progress: StepProgress) -> list[Member]:
    """The memberships whose dashboards show this learner on this step (open classes)."""
    return list(
        Member.objects.filter(
            learner_id=progress.learner_id,
            classroom__classroomlesson__lesson_id=progress.step.lesson_id,
        ).exclude(classroom__state=Classroom.State.ENDED)
    )
