"""``manage.py sandboxd``: run the sandbox daemon with this site's settings.

The settings become a DaemonConfig, then this process execs the daemon module itself: the
daemon (and every sandbox init it forks) then carries no Django, which keeps each init
small and each fork fast. ``--print-config`` shows the configuration instead.
"""

from __future__ import annotations

import grp
import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandboxapp.runtime.daemon import DaemonConfig, daemon_argv
from sandboxapp.runtime.spec import Limits, SpecError, parse_size
from sandboxapp.runtime.terminal import FlowLimits

from .sandbox import runtime_config


def _limits(values: dict) -> Limits:
    limits = Limits(
        memory_bytes=parse_size(str(values["memory"])),
        pids=int(values["pids"]),
        cpus=float(values["cpus"]),
        disk_bytes=parse_size(str(values["disk"])),
    )
    limits.validate()
    return limits


def _group(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise CommandError(f"SANDBOXD_SOCKET_GROUP: no group named {value!r}") from None


def daemon_config() -> DaemonConfig:
    ring = settings.SANDBOXD_RING_BYTES
    try:
        flow = FlowLimits(
            ring=ring, high=ring // 2, low=ring // 8, flood_rate=settings.SANDBOXD_FLOOD_RATE
        )
        flow.validate()
        return DaemonConfig(
            socket_path=Path(settings.SANDBOXD_SOCKET),
            runtime=runtime_config(),
            allowed_uids=frozenset(settings.SANDBOXD_ALLOWED_UIDS),
            socket_group=_group(settings.SANDBOXD_SOCKET_GROUP),
            limits=_limits(settings.SANDBOX_LIMITS),
            max_limits=_limits(settings.SANDBOX_MAX_LIMITS),
            max_nodes_per_learner=settings.SANDBOXD_MAX_PER_LEARNER,
            idle_timeout=settings.SANDBOXD_IDLE_TIMEOUT,
            creates_per_minute=settings.SANDBOXD_CREATES_PER_MINUTE,
            spare_volumes=settings.SANDBOXD_SPARE_VOLUMES,
            flow=flow,
            recordings_dir=settings.SANDBOXD_RECORDINGS_DIR,
        )
    except (SpecError, ValueError) as exc:
        raise CommandError(f"sandboxd settings: {exc}") from exc


class Command(BaseCommand):
    help = "Run sandboxd, the privileged daemon that owns every sandbox and terminal."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--print-config", action="store_true")

    def handle(self, *args: object, print_config: bool, **options: object) -> None:
        config = daemon_config()
        if print_config:
            self.stdout.write(config.to_json())
            return
        if os.geteuid() != 0:
            raise CommandError("sandboxd needs root: it creates namespaces, cgroups and mounts")
        argv = daemon_argv(config, settings.LOGGING["root"]["level"])
        sys.stdout.flush()
        os.chdir(settings.BASE_DIR)
        os.execv(sys.executable, argv)
