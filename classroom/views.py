"""Classroom pages: thin; the rules are in access.py, joining.py and classrooms.py."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable

import segno
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from classroom.access import classroom_for_instructor, classrooms_of, is_instructor
from classroom.classrooms import classroom_create, classroom_results, results_csv
from classroom.forms import ClassroomForm
from classroom.joining import JoinError, classroom_by_code, classroom_join, member_of
from classroom.models import Classroom, Member
from classroom.progress import classroom_progress
from classroom.replays import member_recordings, recording_chunks, recording_first_chunk
from classroom.running import (
    ClassroomActionError,
    classroom_broadcast,
    classroom_set_state,
    member_extend,
    member_reset,
)
from lessons.models import StepProgress
from sandboxapp.middleware import POLICY


def instructor_only(view: Callable) -> Callable:
    """Anonymous visitors go to the login page; a logged-in non-instructor gets a 403."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_instructor(request.user):
            raise PermissionDenied("Only instructors run classrooms.")
        return view(request, *args, **kwargs)

    return wrapper


@instructor_only
def classroom_list(request: HttpRequest) -> HttpResponse:
    classrooms = classrooms_of(request.user).select_related("instructor")
    return render(request, "classroom/list.html", {"classrooms": classrooms})


@instructor_only
def classroom_new(request: HttpRequest) -> HttpResponse:
    form = ClassroomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        classroom = classroom_create(form, request.user)
        return redirect("classroom_dashboard", pk=classroom.pk)
    return render(
        request, "classroom/form.html", {"form": form}, status=400 if form.errors else 200
    )


def _join_url(request: HttpRequest, classroom: Classroom) -> str:
    return request.build_absolute_uri(reverse("classroom_join_code", args=[classroom.join_code]))


@instructor_only
def classroom_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    classroom = classroom_for_instructor(request.user, pk)
    context = {"classroom": classroom, "join_url": _join_url(request, classroom)}
    return render(request, "classroom/dashboard.html", context)


@never_cache
@instructor_only
def classroom_progress_json(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(classroom_progress(classroom_for_instructor(request.user, pk)))


@instructor_only
def classroom_qr(request: HttpRequest, pk: int) -> HttpResponse:
    """The join link as a QR code, for the projector."""
    classroom = classroom_for_instructor(request.user, pk)
    svg = io.BytesIO()
    segno.make(_join_url(request, classroom), error="m").save(svg, kind="svg", scale=8, border=2)
    response = HttpResponse(svg.getvalue(), content_type="image/svg+xml")
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


@never_cache
@instructor_only
def classroom_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    classroom = classroom_for_instructor(request.user, pk)
    results = classroom_results(classroom)
    filename = f"classroom-{classroom.pk}-results.{fmt}"
    if fmt == "csv":
        response = HttpResponse(results_csv(results), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(results, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def join(request: HttpRequest, code: str = "") -> HttpResponse:
    """The learner's way in: the code (from the link or typed) and a display name."""
    context: dict = {"code": request.POST.get("code", code)}
    if request.method == "POST":
        try:
            member = classroom_join(request, context["code"], request.POST.get("display_name", ""))
        except JoinError as error:
            context.update(error=str(error), display_name=request.POST.get("display_name", ""))
            return render(request, "classroom/join.html", context, status=400)
        return redirect("classroom_home", code=member.classroom.join_code)
    if code:
        try:
            classroom = classroom_by_code(code)
        except JoinError as error:
            context["error"] = str(error)
            return render(request, "classroom/join.html", context, status=404)
        if member_of(request, classroom) is not None:
            return redirect("classroom_home", code=classroom.join_code)
        context["classroom"] = classroom
    return render(request, "classroom/join.html", context)


def classroom_home(request: HttpRequest, code: str) -> HttpResponse:
    """A member's page: the class's lessons in order with their own progress."""
    classroom = Classroom.objects.filter(join_code=code).first()
    member = member_of(request, classroom) if classroom else None
    if member is None:
        return redirect("classroom_join_code", code=code)
    progress = {
        p.step_id: p
        for p in StepProgress.objects.filter(
            learner=member.learner, step__lesson__in=classroom.lessons.all()
        )
    }
    lessons = []
    for lesson in classroom.ordered_lessons().prefetch_related("steps"):
        steps = [s for s in lesson.steps.all() if s.checks]
        done = sum(1 for s in steps if progress.get(s.pk) and progress[s.pk].passed_at)
        lessons.append({"lesson": lesson, "done": done, "total": len(steps)})
    leaderboard = None
    if classroom.leaderboard:
        results = classroom_results(classroom)["members"]
        leaderboard = sorted(results, key=lambda r: (-r["score"], r["name"].lower()))
    context = {
        "classroom": classroom,
        "member": member,
        "lessons": lessons,
        "leaderboard": leaderboard,
    }
    return render(request, "classroom/home.html", context)


def _member(request: HttpRequest, pk: int, member: int) -> Member:
    classroom = classroom_for_instructor(request.user, pk)
    return get_object_or_404(
        Member.objects.select_related("learner", "classroom"), pk=member, classroom=classroom
    )


@instructor_only
def member_watch(request: HttpRequest, pk: int, member: int) -> HttpResponse:
    """A member's terminal, read-only: what they type and see, as they do it."""
    watched = _member(request, pk, member)
    context = {
        "classroom": watched.classroom,
        "member": watched,
        "terminal_ws_path": f"/ws/classrooms/{pk}/watch/{watched.pk}/",
        "terminal_label": f"{watched.display_name}'s terminal, read-only",
    }
    return render(request, "classroom/watch.html", context)


def _done(request: HttpRequest, pk: int, action: Callable[[], None], success: str) -> HttpResponse:
    try:
        action()
    except ClassroomActionError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, success)
    return redirect("classroom_dashboard", pk=pk)


@require_POST
@instructor_only
def member_reset_view(request: HttpRequest, pk: int, member: int) -> HttpResponse:
    target = _member(request, pk, member)
    keep = request.POST.get("keep_files") != "no"
    what = "with their files kept" if keep else "to a clean one, files deleted"
    return _done(
        request,
        pk,
        lambda: member_reset(target, keep),
        f"Reset {target.display_name}'s sandbox {what}.",
    )


@require_POST
@instructor_only
def member_extend_view(request: HttpRequest, pk: int, member: int) -> HttpResponse:
    target = _member(request, pk, member)
    return _done(
        request, pk, lambda: member_extend(target), f"{target.display_name} has 15 more minutes."
    )


@require_POST
@instructor_only
def broadcast_view(request: HttpRequest, pk: int) -> HttpResponse:
    classroom = classroom_for_instructor(request.user, pk)
    text = request.POST.get("message", "")
    return _done(
        request, pk, lambda: classroom_broadcast(classroom, text), "Sent to every learner's screen."
    )


@require_POST
@instructor_only
def state_view(request: HttpRequest, pk: int) -> HttpResponse:
    classroom = classroom_for_instructor(request.user, pk)
    state = request.POST.get("state", "")
    done = {
        "open": "The class is open again.",
        "paused": "The class is paused.",
        "ended": "The class has ended: every sandbox is stopped, all progress is kept.",
    }
    return _done(request, pk, lambda: classroom_set_state(classroom, state), done.get(state, ""))


@instructor_only
def member_recordings_page(request: HttpRequest, pk: int, member: int) -> HttpResponse:
    watched = _member(request, pk, member)
    try:
        recordings, error = member_recordings(watched), None
    except ClassroomActionError as failure:
        recordings, error = [], str(failure)
    context = {"classroom": watched.classroom, "member": watched, "recordings": recordings}
    return render(request, "classroom/recordings.html", {**context, "error": error})


@instructor_only
def member_recording_cast(request: HttpRequest, pk: int, member: int, name: str) -> HttpResponse:
    """The asciicast file itself, streamed from sandboxd chunk by chunk."""
    watched = _member(request, pk, member)
    try:
        first = recording_first_chunk(watched, name)
    except ClassroomActionError:
        raise Http404("No such recording.") from None
    response = StreamingHttpResponse(
        recording_chunks(watched, name, first), content_type="application/x-asciicast"
    )
    response["Content-Length"] = str(first["size"])
    return response


@instructor_only
def member_replay(request: HttpRequest, pk: int, member: int, name: str) -> HttpResponse:
    watched = _member(request, pk, member)
    cast = reverse("member_recording_cast", args=[pk, watched.pk, name])
    context = {"classroom": watched.classroom, "member": watched, "name": name, "cast_url": cast}
    response = render(request, "classroom/replay.html", context)
    # The player runs its terminal emulator as WebAssembly: this page alone allows compiling it.
    response["Content-Security-Policy"] = POLICY.replace(
        "script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'"
    )
    return response
