"""``manage.py prune_guests``: delete guests nobody has seen for a while, with their files.

Meant to run daily: compose's ``maintenance`` service does, elsewhere cron or a systemd
timer (docs/operations.md). ``--dry-run`` says who would go and changes nothing.
"""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandboxapp.learners import PruneError, guests_prune


class Command(BaseCommand):
    help = "Delete guest learners not seen for --days (their files too); accounts are kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=settings.GUEST_RETENTION_DAYS,
            help="not seen for this many days (default: CONTAINED_GUEST_RETENTION_DAYS, "
            f"{settings.GUEST_RETENTION_DAYS})",
        )
        parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")

    def handle(self, *args: object, days: int, dry_run: bool, **options: object) -> None:
        session_days = settings.SESSION_COOKIE_AGE / 86400
        if days < session_days:
            raise CommandError(
                f"--days {days} is shorter than a guest's session ({session_days:g} days): "
                "guests who can still come back would lose their files."
            )
        try:
            report = guests_prune(timedelta(days=days), dry_run=dry_run)
        except PruneError as exc:
            raise CommandError(str(exc)) from None
        verb = "would prune" if dry_run else "pruned"
        self.stdout.write(f"{verb} {len(report.pruned)} guests not seen for {days} days")
        for sandbox_id in report.pruned:
            self.stdout.write(f"  {sandbox_id}")
        if report.kept_in_classes:
            self.stdout.write(
                f"kept {report.kept_in_classes} such guests who are in a classroom "
                "(deleting the classroom lets them go)"
            )
