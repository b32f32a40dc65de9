"""Who may see and run which classroom: the rules every classroom view and socket applies."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from classroom.models import Classroom

INSTRUCTORS_GROUP = "instructors"


def is_instructor(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(
        user.is_authenticated
        and (user.is_superuser or user.groups.filter(name=INSTRUCTORS_GROUP).exists())
    )


def classrooms_of(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Classroom]:
    """The classrooms `user` runs: their own, or every one for a superuser."""
    if not is_instructor(user):
        return Classroom.objects.none()
    if user.is_superuser:
        return Classroom.objects.all()
    return Classroom.objects.filter(instructor=user)


def classroom_for_instructor(user: AbstractBaseUser | AnonymousUser, pk: int) -> Classroom:
    """One classroom `user` runs. Someone else's is a 404: its existence is not theirs to learn."""
    classroom = classrooms_of(user).filter(pk=pk).first()
    if classroom is None:
        raise Http404("No such classroom.")
    return classroom
