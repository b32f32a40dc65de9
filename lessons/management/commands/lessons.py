"""``manage.py lessons validate|load|selftest``: check lesson files, load the good ones, and
prove every check against a real sandbox (as root).

``validate`` is the gate for review and CI: it fails when any lesson has a problem. ``load``
refuses broken lessons (their previous version stays in the database) but loads the others and
succeeds, so one typo never keeps the site from starting.
"""

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from lessons import loader
from lessons.selftest import selftest
from sandboxapp.management.commands.sandbox import runtime_config


class Command(BaseCommand):
    help = "Validate the lesson files, or load them into the database."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="{validate,load,selftest}"
        )
        for name, text in (
            ("validate", "check every lesson; fail if any has a problem"),
            ("load", "save the valid lessons; report and skip the others"),
            ("selftest", "run each solution and the fakes in real sandboxes (root)"),
        ):
            action = actions.add_parser(name, help=text)
            action.add_argument(
                "--content-dir",
                type=Path,
                default=None,
                help="folder of NN-slug lesson folders (default: lessons/content)",
            )

    def handle(self, *args: object, action: str, content_dir: Path | None, **options: object):
        folder = content_dir or Path(settings.LESSONS_CONTENT_DIR)
        result = loader.scan(folder)
        for problem in result.problems:
            self.stderr.write(str(problem))
        refused = ", ".join(path.name for path in result.refused)

        if action == "selftest":
            self._selftest(result.lessons, failed=bool(result.problems))
            return

        if action == "validate":
            if result.problems:
                raise CommandError(
                    f"{len(result.problems)} problem(s) in lessons: {refused or folder}"
                )
            self.stdout.write(f"{len(result.lessons)} lesson(s) valid in {folder}")
            return

        for lesson in result.lessons:
            missing = loader.missing_tools(lesson.tools)
            if missing:
                self.stderr.write(
                    self.style.WARNING(
                        f"{lesson.path.parent.name} uses {', '.join(missing)}, which this host "
                        "lacks: scripts/install-system-deps.sh installs them"
                    )
                )
        saved = loader.save(result.lessons)
        self.stdout.write(
            f"Loaded {len(result.lessons)} lesson(s): {saved.created} new, {saved.updated} "
            f"updated, {saved.unchanged} unchanged"
        )
        if result.refused:
            self.stderr.write(
                self.style.WARNING(f"Refused {len(result.refused)} lesson(s): {refused}")
            )

    def _selftest(self, lessons: list[loader.LessonSource], failed: bool) -> None:
        if os.geteuid() != 0:
            raise CommandError("selftest creates sandboxes: run it as root")
        failures = 0
        for case in selftest(lessons, runtime_config()):
            mark = "ok  " if case.ok else "FAIL"
            self.stdout.write(f"{mark} {case.lesson}/{case.step} {case.attempt}: {case.detail}")
            failures += not case.ok
        if failures or failed:
            raise CommandError(f"{failures} selftest case(s) failed")
