from django.contrib.auth import views as auth_views
from django.urls import path

from lessons.views import lesson_detail
from sandboxapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("terminal/", views.playground, name="playground"),
    path("start/", views.guest_start, name="guest_start"),
    path("lessons/<slug:slug>/", lesson_detail, name="lesson"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
