"""``manage.py ensure_instructor``: make sure someone can log in as an instructor.

The first run creates user ``instructor`` in group ``instructors`` with a random password and
prints it once; only its hash is stored. Later runs change nothing. ``--reset`` sets and prints
a new password, for when the first one was lost.
"""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from classroom.access import INSTRUCTORS_GROUP

DEFAULT_USERNAME = "instructor"


class Command(BaseCommand):
    help = "Create an instructor login if there is none, printing its password once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help=f"give user {DEFAULT_USERNAME!r} a new password and print it",
        )

    def handle(self, *args: object, reset: bool, **options: object) -> None:
        User = get_user_model()
        with transaction.atomic():
            group, _ = Group.objects.get_or_create(name=INSTRUCTORS_GROUP)
            existing = group.user_set.order_by("pk").first()
            if existing and not reset:
                self.stdout.write(
                    f"Instructor login: {existing.get_username()} (its password was printed when "
                    "it was created; `python manage.py ensure_instructor --reset` makes a new one)"
                )
                return
            user, created = User.objects.get_or_create(username=DEFAULT_USERNAME)
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save()
            user.groups.add(group)

        verb = "Created" if created else "Reset"
        self.stdout.write(
            self.style.SUCCESS(f"{verb} the instructor login (shown once, note it now):")
            + f"\n  user:     {user.get_username()}\n  password: {password}"
        )
