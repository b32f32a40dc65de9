from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from lessons.models import Lesson
from sandboxapp.health import run_checks


def home(request: HttpRequest) -> HttpResponse:
    lessons = Lesson.objects.order_by("number", "slug")
    return render(request, "home.html", {"lessons": lessons})


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    ok, checks = run_checks()
    return JsonResponse(
        {"status": "ok" if ok else "degraded", "checks": checks},
        status=200 if ok else 503,
    )
