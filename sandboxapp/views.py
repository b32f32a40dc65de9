from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from lessons.models import Lesson
from sandboxapp.health import run_checks
from sandboxapp.learners import LearnerError, learner_of, learner_start_guest
from sandboxapp.runtime.client import Refused, SandboxdError, call_sync


def home(request: HttpRequest) -> HttpResponse:
    lessons = Lesson.objects.order_by("number", "slug")
    return render(request, "home.html", {"lessons": lessons})


def playground(request: HttpRequest) -> HttpResponse:
    return render(
        request, "playground.html", {"learner": learner_of(request.session, request.user)}
    )


@require_POST
def guest_start(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = "/terminal/"
    try:
        learner_start_guest(request, request.POST.get("display_name", ""))
    except LearnerError as error:
        # The page the form came from, with the form again and what to fix.
        context = {
            "start_error": str(error),
            "display_name": request.POST.get("display_name"),
            "start_next": target,  # where the form goes once the name is fixed, not /start/
        }
        status = 400 if settings.GUESTS_ALLOWED else 403
        return render(request, "playground.html", context, status=status)
    return redirect(target)


@never_cache
def explorer(request: HttpRequest) -> JsonResponse:
    """The learner's process tree with each process's namespaces, read by sandboxd."""
    learner = learner_of(request.session, request.user)
    if learner is None:
        return JsonResponse({"error": "Start as a learner first."}, status=403)
    try:
        reply = call_sync(
            settings.SANDBOXD_SOCKET,
            "probe",
            reply_timeout=5,
            learner=learner.sandbox_id,
            probe="snapshot",
        )
    except Refused as refusal:
        message = (
            "Your sandbox is not running yet." if refusal.code == "not_running" else refusal.message
        )
        return JsonResponse({"error": message}, status=409)
    except SandboxdError:
        return JsonResponse({"error": "The sandbox service is not answering."}, status=503)
    return JsonResponse(reply["result"])


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    ok, checks = run_checks()
    return JsonResponse(
        {"status": "ok" if ok else "degraded", "checks": checks},
        status=200 if ok else 503,
    )
