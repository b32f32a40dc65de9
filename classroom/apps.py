from django.apps import AppConfig


class ClassroomConfig(AppConfig):
    """Instructors' live sessions: classrooms, joining by code, the live dashboard."""

    name = "classroom"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from classroom.events import progress_saved
        from lessons.models import StepProgress

        post_save.connect(progress_saved, sender=StepProgress, dispatch_uid="classroom-progress")
