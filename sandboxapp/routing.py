from django.urls import path

from classroom.consumers import ClassEventsConsumer, DashboardConsumer, WatchConsumer
from sandboxapp.consumers import TerminalConsumer

websocket_urlpatterns = [
    path("ws/terminal/", TerminalConsumer.as_asgi()),
    path("ws/classrooms/<int:pk>/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/classrooms/<int:pk>/watch/<int:member>/", WatchConsumer.as_asgi()),
    path("ws/classroom/", ClassEventsConsumer.as_asgi()),
]
