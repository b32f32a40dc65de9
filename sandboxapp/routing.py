from django.urls import path

from classroom.consumers import DashboardConsumer
from sandboxapp.consumers import TerminalConsumer

websocket_urlpatterns = [
    path("ws/terminal/", TerminalConsumer.as_asgi()),
    path("ws/classrooms/<int:pk>/dashboard/", DashboardConsumer.as_asgi()),
]
