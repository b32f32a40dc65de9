"""A classroom: an instructor's live session of lessons, and the learners who joined it."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

# No 0/O, 1/I/L, 5/S, 8/B: a code read off a projector is typed right the first time.
JOIN_CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY234679"
JOIN_CODE_LENGTH = 6


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


class Classroom(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "open"
        PAUSED = "paused", "paused"
        ENDED = "ended", "ended"

    instructor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="classrooms"
    )
    name = models.CharField(max_length=100)
    lessons = models.ManyToManyField("lessons.Lesson", through="ClassroomLesson")
    join_code = models.CharField(max_length=JOIN_CODE_LENGTH, unique=True, default=new_join_code)
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    capacity = models.PositiveIntegerField(default=30)
    guests_allowed = models.BooleanField(default=True)
    record_sessions = models.BooleanField(default=False)
    leaderboard = models.BooleanField(default=False)
    # Each learner's sandbox in this classroom; sandboxd caps them at the host's maximum.
    memory_mb = models.PositiveIntegerField(default=256)
    cpus = models.FloatField(default=1.0)
    pids = models.PositiveIntegerField(default=256)
    disk_mb = models.PositiveIntegerField(default=512)
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at"]

    def __str__(self) -> str:
        return self.name

    def ordered_lessons(self) -> models.QuerySet:
        return self.lessons.order_by("classroomlesson__position")

    def sandbox_limits(self) -> dict[str, float]:
        """As sandboxd's `limits` parameter takes them."""
        return {
            "memory": self.memory_mb * 1024 * 1024,
            "cpus": self.cpus,
            "pids": self.pids,
            "disk": self.disk_mb * 1024 * 1024,
        }


class ClassroomLesson(models.Model):
    classroom = models.ForeignKey(Classroom, on_delete=models.CASCADE)
    lesson = models.ForeignKey("lessons.Lesson", on_delete=models.CASCADE)
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["classroom", "lesson"], name="lesson_once_per_class")
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.lesson} in {self.classroom}"


class Member(models.Model):
    """A learner in a classroom, under the display name they gave when joining."""

    classroom = models.ForeignKey(Classroom, on_delete=models.CASCADE, related_name="members")
    learner = models.ForeignKey("sandboxapp.Learner", on_delete=models.CASCADE)
    display_name = models.CharField(max_length=40)
    # Lower-cased, spaces collapsed: "Ada" and "ada " are one name in a room.
    name_key = models.CharField(max_length=40)
    joined_at = models.DateTimeField(auto_now_add=True)
    extra_minutes = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(fields=["classroom", "learner"], name="join_once"),
            models.UniqueConstraint(fields=["classroom", "name_key"], name="names_unique_in_class"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} in {self.classroom}"
