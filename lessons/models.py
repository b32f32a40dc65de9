from django.db import models


class Lesson(models.Model):
    """A lesson as last loaded from ``lessons/content/NN-slug/lesson.md``: the file is the truth."""

    slug = models.SlugField(unique=True)
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    summary = models.TextField()
    minutes = models.PositiveIntegerField()
    body_markdown = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["number", "slug"]

    def __str__(self) -> str:
        return f"{self.number:02d} {self.title}"
