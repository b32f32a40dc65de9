"""ASGI entry point: Django for HTTP, Channels for websockets. Daphne serves ``application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sandboxapp.settings")
# Set up Django before importing anything that may touch models (Channels' auth does).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from sandboxapp.consumers import ServerSendInScope  # noqa: E402
from sandboxapp.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Terminals send past anything inside ServerSendInScope that wraps `send`.
        "websocket": ServerSendInScope(
            AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)
