from django.conf import settings
from django.http import HttpRequest

from classroom.access import is_instructor


def site(request: HttpRequest) -> dict[str, object]:
    """Settings the templates need on every page, and whether to show instructors' links."""
    return {
        "settings_guests_allowed": settings.GUESTS_ALLOWED,
        "is_instructor": is_instructor(request.user) if hasattr(request, "user") else False,
    }
