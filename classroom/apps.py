from django.apps import AppConfig


class ClassroomConfig(AppConfig):
    """Instructor sessions, dashboard and shadowing: empty until the classroom issue."""

    name = "classroom"
