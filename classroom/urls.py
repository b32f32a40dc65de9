from django.urls import path

from classroom import views

urlpatterns = [
    path("classrooms/", views.classroom_list, name="classroom_list"),
    path("classrooms/new/", views.classroom_new, name="classroom_new"),
    path("classrooms/<int:pk>/", views.classroom_dashboard, name="classroom_dashboard"),
    path(
        "classrooms/<int:pk>/progress.json",
        views.classroom_progress_json,
        name="classroom_progress",
    ),
    path("classrooms/<int:pk>/qr.svg", views.classroom_qr, name="classroom_qr"),
    path(
        "classrooms/<int:pk>/results.csv",
        views.classroom_export,
        {"fmt": "csv"},
        name="classroom_csv",
    ),
    path(
        "classrooms/<int:pk>/results.json",
        views.classroom_export,
        {"fmt": "json"},
        name="classroom_json",
    ),
    path("classrooms/<int:pk>/watch/<int:member>/", views.member_watch, name="member_watch"),
    path(
        "classrooms/<int:pk>/members/<int:member>/reset",
        views.member_reset_view,
        name="member_reset",
    ),
    path(
        "classrooms/<int:pk>/members/<int:member>/extend",
        views.member_extend_view,
        name="member_extend",
    ),
    path(
        "classrooms/<int:pk>/members/<int:member>/recordings/",
        views.member_recordings_page,
        name="member_recordings",
    ),
    path(
        "classrooms/<int:pk>/members/<int:member>/recordings/<str:name>",
        views.member_recording_cast,
        name="member_recording_cast",
    ),
    path(
        "classrooms/<int:pk>/members/<int:member>/replay/<str:name>",
        views.member_replay,
        name="member_replay",
    ),
    path("classrooms/<int:pk>/broadcast", views.broadcast_view, name="classroom_broadcast"),
    path("classrooms/<int:pk>/state", views.state_view, name="classroom_state"),
    path("join/", views.join, name="classroom_join"),
    path("join/<str:code>/", views.join, name="classroom_join_code"),
    path("c/<str:code>/", views.classroom_home, name="classroom_home"),
]
