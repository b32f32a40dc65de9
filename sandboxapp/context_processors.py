from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    """Settings the templates need on every page."""
    return {"settings_guests_allowed": settings.GUESTS_ALLOWED}
