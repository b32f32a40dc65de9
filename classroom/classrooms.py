"""Making classrooms and reading their results out."""

from __future__ import annotations

import csv
import io

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from classroom.forms import ClassroomForm
from classroom.models import Classroom, ClassroomLesson
from classroom.progress import classroom_progress


def classroom_create(form: ClassroomForm, instructor: AbstractBaseUser) -> Classroom:
    """Save a valid form as a new classroom of `instructor`'s, lessons in lesson order."""
    with transaction.atomic():
        classroom = form.save(commit=False)
        classroom.instructor = instructor
        classroom.save()
        lessons = sorted(form.cleaned_data["lessons"], key=lambda lesson: lesson.number)
        ClassroomLesson.objects.bulk_create(
            ClassroomLesson(classroom=classroom, lesson=lesson, position=i)
            for i, lesson in enumerate(lessons, start=1)
        )
    return classroom


def classroom_results(classroom: Classroom) -> dict:
    """The export: every learner's state on every step, and a score (steps passed)."""
    progress = classroom_progress(classroom)
    total = len(progress["steps"])
    for row in progress["members"]:
        row["score"] = sum(c["state"] == "passed" for c in row["cells"].values())
        row["out_of"] = total
    return progress


def results_csv(results: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    steps = results["steps"]
    header = ["learner", "score", "out_of"]
    for step in steps:
        header += [f"{step['label']} state", f"{step['label']} attempts", f"{step['label']} hints"]
        header.append(f"{step['label']} minutes")
    writer.writerow(header)
    for row in results["members"]:
        line = [_safe(row["name"]), row["score"], row["out_of"]]
        for step in steps:
            cell = row["cells"][str(step["id"])]
            line += [cell["state"], cell["attempts"], cell["hints"], cell["minutes"] or ""]
        writer.writerow(line)
    return out.getvalue()


def _safe(text: str) -> str:
    # A display name is the learner's to choose: never let a spreadsheet run it as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
