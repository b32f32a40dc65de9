"""Creating a classroom from the form, and its results as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client
from django.utils import timezone

from classroom.models import Classroom
from lessons.models import Lesson, Step, StepProgress

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_http")]


def _form(**overrides: object) -> dict:
    values = {
        "name": "Friday lab",
        "lessons": [],
        "starts_at": "2026-12-04T09:00",
        "ends_at": "2026-12-04T12:00",
        "capacity": 20,
        "guests_allowed": "on",
        "memory_mb": 256,
        "cpus": 1.0,
        "pids": 256,
        "disk_mb": 512,
    }
    return {**values, **overrides}


def test_an_instructor_creates_a_classroom_with_lessons_in_order(
    client, instructor, make_classroom
):
    make_classroom(instructor, lessons=3)  # makes lessons 1-3
    client.force_login(instructor)
    lessons = [Lesson.objects.get(number=n).pk for n in (3, 1)]
    response = client.post("/classrooms/new/", _form(lessons=lessons))
    classroom = Classroom.objects.get(name="Friday lab")
    assert response.status_code == 302 and response["Location"] == f"/classrooms/{classroom.pk}/"
    assert [lesson.number for lesson in classroom.ordered_lessons()] == [1, 3]
    assert classroom.instructor == instructor and len(classroom.join_code) == 6
    page = client.get(response["Location"])
    assert classroom.join_code.encode() in page.content and b"dashboard.js" in page.content


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lessons": []}, "Pick at least one lesson."),
        ({"ends_at": "2026-12-04T08:00"}, "The class must end after it starts."),
        ({"memory_mb": 999999}, "This host allows at most 2048 MiB of memory per learner."),
        ({"cpus": 0.01}, "Lessons need at least 0.1 CPU."),
        ({"capacity": 0}, "A classroom holds at least one learner."),
    ],
)
def test_each_bad_field_is_named(client, instructor, make_classroom, overrides, message):
    make_classroom(instructor)
    client.force_login(instructor)
    form = _form(**{"lessons": [Lesson.objects.get().pk], **overrides})
    response = client.post("/classrooms/new/", form)
    assert response.status_code == 400 and message.encode() in response.content
    assert not Classroom.objects.filter(name="Friday lab").exists()


def test_results_export_as_csv_and_json(client, instructor, make_classroom, join):
    classroom = make_classroom(instructor)
    join(classroom.join_code, "=HYPERLINK(1)", browser=Client())
    join(classroom.join_code, "Ada", browser=Client())
    ada = classroom.members.get(display_name="Ada").learner
    first = Step.objects.get(number=1)
    StepProgress.objects.create(learner=ada, step=first, attempts=2, passed_at=timezone.now())
    client.force_login(instructor)
    response = client.get(f"/classrooms/{classroom.pk}/results.csv")
    assert response["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:4] == ["learner", "score", "out_of", "1.1 state"]
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["Ada"][1:5] == ["1", "2", "passed", "2"]
    assert "'=HYPERLINK(1)" in by_name  # never a formula in a spreadsheet
    data = json.loads(client.get(f"/classrooms/{classroom.pk}/results.json").content)
    scores = {row["name"]: row["score"] for row in data["members"]}
    assert scores == {"Ada": 1, "=HYPERLINK(1)": 0}
