from django.db import models
from django.utils import timezone


class Lesson(models.Model):
    """A lesson as last loaded from ``lessons/content/NN-slug/lesson.md``: the file is the truth."""

    slug = models.SlugField(unique=True)
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    summary = models.TextField()
    minutes = models.PositiveIntegerField()
    body_markdown = models.TextField()
    # Commands the exercises run (the `tools` of the front matter).
    tools = models.JSONField(default=list)
    # The lesson's own machines and the veth links between them, e.g. ["web", "db"] and
    # [["web", "db"]]; empty for the learner's one sandbox.
    nodes = models.JSONField(default=list)
    links = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["number", "slug"]

    def __str__(self) -> str:
        return f"{self.number:02d} {self.title}"


class Step(models.Model):
    """One step of a lesson, from ``steps/NN-slug.md``: its text, checks, hints, solution."""

    lesson = models.ForeignKey(Lesson, on_delete=models.CASCADE, related_name="steps")
    number = models.PositiveIntegerField()
    slug = models.SlugField()
    title = models.CharField(max_length=200)
    body_markdown = models.TextField()
    # [{"check": name, "params": {...}}]: evaluated by sandboxd from the host side.
    checks = models.JSONField(default=list)
    hints = models.JSONField(default=list)
    solution = models.TextField(blank=True)
    # A question whose answer the step's checks judge: {"question", "choices"?}.
    quiz = models.JSONField(null=True, blank=True)
    # Run as root in the learner's sandbox when the step opens; written to be idempotent.
    setup = models.TextField(blank=True)

    class Meta:
        ordering = ["lesson", "number"]
        constraints = [
            models.UniqueConstraint(fields=["lesson", "slug"], name="step_slug_unique_in_lesson")
        ]

    def __str__(self) -> str:
        return f"{self.lesson.slug}/{self.slug}"


class StepProgress(models.Model):
    """How far one learner is with one step. Written on a check or a hint, never per key."""

    learner = models.ForeignKey("sandboxapp.Learner", on_delete=models.CASCADE)
    step = models.ForeignKey(Step, on_delete=models.CASCADE)
    # When the learner first had the step open (its first check, counted or not).
    started_at = models.DateTimeField(default=timezone.now)
    passed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    hints_used = models.PositiveIntegerField(default=0)
    # The checks passed at the last attempt, for partial credit.
    checks_passed = models.PositiveIntegerField(default=0)
    last_observed = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["learner", "step"], name="one_progress_per_step")
        ]

    def __str__(self) -> str:
        state = "passed" if self.passed_at else f"{self.attempts} attempt(s)"
        return f"{self.learner} on {self.step}: {state}"
