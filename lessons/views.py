import markdown
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from lessons.models import Lesson
from sandboxapp.learners import learner_of


def lesson_detail(request: HttpRequest, slug: str) -> HttpResponse:
    lesson = get_object_or_404(Lesson, slug=slug)
    # Lesson files are reviewed like code: their Markdown (and its HTML) is trusted.
    body = markdown.markdown(lesson.body_markdown, extensions=["fenced_code", "tables"])
    context = {"lesson": lesson, "body": body, "learner": learner_of(request.session, request.user)}
    return render(request, "lessons/lesson.html", context)
