"""The instructor's form for a classroom, with a clear message on every field."""

from __future__ import annotations

from django import forms
from django.conf import settings

from classroom.models import Classroom
from lessons.models import Lesson
from sandboxapp.runtime.spec import parse_size

MIB = 1024 * 1024


class ClassroomForm(forms.ModelForm):
    lessons = forms.ModelMultipleChoiceField(
        queryset=Lesson.objects.order_by("number"),
        widget=forms.CheckboxSelectMultiple,
        help_text="The class takes them in lesson order.",
        error_messages={"required": "Pick at least one lesson."},
    )

    class Meta:
        model = Classroom
        # `lessons` is saved by classroom_create, with each lesson's position.
        fields = [
            "name",
            "starts_at",
            "ends_at",
            "capacity",
            "guests_allowed",
            "record_sessions",
            "leaderboard",
            "memory_mb",
            "cpus",
            "pids",
            "disk_mb",
        ]
        widgets = {
            "starts_at": forms.DateTimeInput(
                attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"
            ),
            "ends_at": forms.DateTimeInput(
                attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"
            ),
        }
        labels = {
            "guests_allowed": "Learners may join without an account",
            "record_sessions": "Record terminal sessions for replay",
            "leaderboard": "Show learners a leaderboard with names and scores",
            "memory_mb": "Memory per learner (MiB)",
            "cpus": "CPUs per learner",
            "pids": "Processes per learner",
            "disk_mb": "Disk per learner (MiB)",
        }

    def clean(self) -> dict:
        data = super().clean()
        starts, ends = data.get("starts_at"), data.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "The class must end after it starts.")
        ceiling = settings.SANDBOX_MAX_LIMITS
        caps = {
            "memory_mb": (parse_size(ceiling["memory"]) // MIB, "MiB of memory"),
            "disk_mb": (parse_size(ceiling["disk"]) // MIB, "MiB of disk"),
            "pids": (ceiling["pids"], "processes"),
            "cpus": (ceiling["cpus"], "CPUs"),
        }
        for field, (cap, unit) in caps.items():
            value = data.get(field)
            if value is not None and value > cap:
                self.add_error(field, f"This host allows at most {cap:g} {unit} per learner.")
        for field, low in (("memory_mb", 32), ("disk_mb", 16), ("pids", 16)):
            value = data.get(field)
            if value is not None and value < low:
                self.add_error(field, f"Lessons need at least {low}.")
        if data.get("cpus") is not None and data["cpus"] < 0.1:
            self.add_error("cpus", "Lessons need at least 0.1 CPU.")
        if data.get("capacity") is not None and data["capacity"] < 1:
            self.add_error("capacity", "A classroom holds at least one learner.")
        return data
