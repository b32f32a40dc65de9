"""What the dashboard computes: each cell, idle learners, who is stuck, per-step summaries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from classroom.progress import IDLE_AFTER, classroom_progress
from lessons.models import Step, StepProgress

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def test_cells_follow_each_learners_progress(instructor, make_classroom, join):
    classroom = make_classroom(instructor, lessons=2)
    for name in ("Ada", "Grace", "Linus"):
        join(classroom.join_code, name, browser=Client())
    ada, grace, linus = (m.learner for m in classroom.members.order_by("display_name"))
    first, second, third, _ = Step.objects.order_by("lesson__number", "number")
    now = timezone.now()
    StepProgress.objects.create(
        learner=ada,
        step=first,
        started_at=now - timedelta(minutes=6),
        passed_at=now - timedelta(minutes=2),
        attempts=2,
        hints_used=1,
    )
    StepProgress.objects.create(
        learner=ada, step=second, attempts=3, started_at=now - timedelta(minutes=30)
    )
    StepProgress.objects.create(
        learner=grace, step=first, started_at=now - timedelta(minutes=3), passed_at=now
    )
    StepProgress.objects.create(learner=grace, step=third, started_at=now - timedelta(minutes=1))
    data = classroom_progress(classroom, now=now)

    assert [s["label"] for s in data["steps"]] == ["1.1", "1.2", "2.1", "2.2"]
    rows = {row["name"]: row for row in data["members"]}
    cells = {
        name: [row["cells"][str(s["id"])] for s in data["steps"]] for name, row in rows.items()
    }
    assert [c["state"] for c in cells["Ada"]] == ["passed", "failed", "not_started", "not_started"]
    assert cells["Ada"][0] == {"state": "passed", "attempts": 2, "hints": 1, "minutes": 4.0}
    assert [c["state"] for c in cells["Grace"]] == [
        "passed",
        "not_started",
        "in_progress",
        "not_started",
    ]
    assert all(c["state"] == "not_started" for c in cells["Linus"])
    first_summary = data["summary"]["steps"][0]
    assert (first_summary["passed"], first_summary["of"], first_summary["median_minutes"]) == (
        2,
        3,
        3.5,
    )
    assert data["summary"]["stuck"]["name"] == "Ada" and data["summary"]["stuck"]["minutes"] == 30.0
    # Activity is a join or a progress write: nobody is idle now, everyone once IDLE_AFTER passed.
    assert not any(r["idle"] for r in data["members"])
    later = classroom_progress(classroom, now=now + IDLE_AFTER + timedelta(minutes=1))
    assert all(r["idle"] for r in later["members"])


def test_steps_without_checks_are_not_columns(instructor, make_classroom):
    classroom = make_classroom(instructor)
    Step.objects.filter(number=2).update(checks=[])
    assert [s["label"] for s in classroom_progress(classroom)["steps"]] == ["1.1"]
