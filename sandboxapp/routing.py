from django.urls import path

from sandboxapp.consumers import TerminalConsumer

websocket_urlpatterns = [
    path("ws/terminal/", TerminalConsumer.as_asgi()),
]
