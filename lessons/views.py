from pathlib import Path

import markdown
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from lessons.checking import CheckUnavailable, hint_next, step_check, step_prepare
from lessons.loader import DIAGRAM_NAME, missing_tools
from lessons.models import Lesson, Step, StepProgress
from sandboxapp.learners import learner_of


def _markdown(text: str) -> str:
    # Lesson files are reviewed like code: their Markdown (and its HTML) is trusted.
    return markdown.markdown(text, extensions=["fenced_code", "tables"])


def lesson_detail(request: HttpRequest, slug: str) -> HttpResponse:
    lesson = get_object_or_404(Lesson, slug=slug)
    learner = learner_of(request.session, request.user)
    progress = {}
    if learner is not None:
        progress = {
            p.step_id: p for p in StepProgress.objects.filter(learner=learner, step__lesson=lesson)
        }
    steps = [
        {"step": step, "body": _markdown(step.body_markdown), "progress": progress.get(step.pk)}
        for step in lesson.steps.all()
    ]
    context = {
        "lesson": lesson,
        "missing_tools": missing_tools(lesson.tools),
        "body": _markdown(lesson.body_markdown),
        "steps": steps,
        "learner": learner,
    }
    return render(request, "lessons/lesson.html", context)


def diagram(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """An SVG diagram beside a lesson's text. Shown as an image, it runs nothing; opened on
    its own, its policy still forbids scripts."""
    if not DIAGRAM_NAME.fullmatch(name):
        raise Http404("no such diagram")
    lesson = get_object_or_404(Lesson, slug=slug)
    folder = Path(settings.LESSONS_CONTENT_DIR) / f"{lesson.number:02d}-{lesson.slug}"
    try:
        data = (folder / name).read_bytes()
    except FileNotFoundError:
        raise Http404("no such diagram") from None
    response = HttpResponse(data, content_type="image/svg+xml")
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["Cache-Control"] = "public, max-age=3600"
    return response


def _step_of(request: HttpRequest, slug: str, step_slug: str):
    step = get_object_or_404(Step, lesson__slug=slug, slug=step_slug)
    return learner_of(request.session, request.user), step


@require_POST
def check(request: HttpRequest, slug: str, step_slug: str) -> JsonResponse:
    learner, step = _step_of(request, slug, step_slug)
    if learner is None:
        return JsonResponse({"error": "Start as a learner first."}, status=403)
    if not step.checks:
        return JsonResponse({"error": "This step has nothing to check."}, status=400)
    answer = ",".join(request.POST.getlist("answer"))[:200] if step.quiz else None
    auto = request.POST.get("auto") == "1"
    if auto and step.quiz is not None:
        return JsonResponse({"error": "A quiz is checked when you answer it."}, status=400)
    try:
        outcome = step_check(learner, step, counted=not auto, answer=answer)
    except CheckUnavailable as reason:
        return JsonResponse({"error": str(reason)}, status=409)
    return JsonResponse(
        {
            "passed": outcome.passed,
            "results": outcome.results,
            "attempts": outcome.progress.attempts,
            "hints_left": len(step.hints) - outcome.progress.hints_used,
        }
    )


@require_POST
def prepare(request: HttpRequest, slug: str, step_slug: str) -> JsonResponse:
    learner, step = _step_of(request, slug, step_slug)
    if learner is None:
        return JsonResponse({"error": "Start as a learner first."}, status=403)
    try:
        step_prepare(learner, step)
    except CheckUnavailable as reason:
        return JsonResponse({"error": str(reason)}, status=409)
    return JsonResponse({"prepared": bool(step.setup)})


@require_POST
def hint(request: HttpRequest, slug: str, step_slug: str) -> JsonResponse:
    learner, step = _step_of(request, slug, step_slug)
    if learner is None:
        return JsonResponse({"error": "Start as a learner first."}, status=403)
    text, used = hint_next(learner, step)
    return JsonResponse(
        {"hint": text and _markdown(text), "used": used, "left": len(step.hints) - used}
    )
