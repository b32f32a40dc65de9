from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from lessons import views as lesson_views
from sandboxapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("terminal/", views.playground, name="playground"),
    path("start/", views.guest_start, name="guest_start"),
    path("explorer.json", views.explorer, name="explorer"),
    path("lessons/<slug:slug>/", lesson_views.lesson_detail, name="lesson"),
    path("lessons/<slug:slug>/<str:name>", lesson_views.diagram, name="lesson_diagram"),
    path(
        "lessons/<slug:slug>/steps/<slug:step_slug>/check",
        lesson_views.check,
        name="step_check",
    ),
    path("lessons/<slug:slug>/steps/<slug:step_slug>/hint", lesson_views.hint, name="step_hint"),
    path(
        "lessons/<slug:slug>/steps/<slug:step_slug>/prepare",
        lesson_views.prepare,
        name="step_prepare",
    ),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("classroom.urls")),
]
