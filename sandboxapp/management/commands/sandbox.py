"""``manage.py sandbox``: the namespace runtime from the command line, as root, no daemon.

sandbox run [--learner ID] [--name N] [--memory 256M] [--pids 256] [--cpus 1] [--disk 512M]
            [--json-status] -- CMD...
sandbox list | destroy NAME | reconcile | bench | bench-sandboxd | reset --learner ID [--node N]
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bench import runtime_bench, sandboxd_bench
from sandboxapp.runtime import console, volumes
from sandboxapp.runtime.client import SandboxdError
from sandboxapp.runtime.reconcile import kill_recorded, reconcile, reconcile_one
from sandboxapp.runtime.sandbox import (
    FirstProcess,
    RuntimeConfig,
    SandboxError,
    is_recorded_process,
    sandbox_create,
    sandbox_names,
    state_read,
)
from sandboxapp.runtime.spec import Limits, SandboxSpec, SpecError, parse_size
from sandboxapp.runtime.volumes import VolumeError


def runtime_config() -> RuntimeConfig:
    return RuntimeConfig(
        state_dir=settings.SANDBOX_STATE_DIR,
        cgroup_parent=settings.SANDBOX_CGROUP_PARENT,
        max_sandboxes=settings.SANDBOX_MAX,
    )


class Command(BaseCommand):
    help = "Run, list, destroy and reconcile sandboxes directly (as root, no daemon)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="run CMD in a fresh sandbox, then destroy it")
        run.add_argument("--learner", help="use this learner's persistent files")
        run.add_argument("--name", help="sandbox name (default: generated)")
        run.add_argument("--memory", default="256M")
        run.add_argument("--pids", type=int, default=256)
        run.add_argument("--cpus", type=float, default=1.0)
        run.add_argument("--disk", default="512M")
        run.add_argument(
            "--json-status",
            action="store_true",
            help="print the sandbox's status as JSON on stderr before running",
        )
        run.add_argument("command", nargs="*", help="command to run (default: a login shell)")
        sub.add_parser("list", help="the sandboxes on this host")
        destroy = sub.add_parser("destroy", help="kill a sandbox left by a crashed run")
        destroy.add_argument("name")
        sub.add_parser("reconcile", help="remove what crashed runs left behind")
        reset = sub.add_parser("reset", help="delete a learner's files for good")
        reset.add_argument("--learner", required=True)
        reset.add_argument("--node", help="one of the learner's nodes")
        bench = sub.add_parser("bench", help="start-up and idle memory against bwrap and unshare")
        bench.add_argument("--runs", type=int, default=50)
        bench.add_argument(
            "--idle", type=int, default=100, help="sandboxes up for the memory figure"
        )
        bench.add_argument(
            "--pause-ms", type=float, default=50, help="between cycles, as learners arrive"
        )
        bench.add_argument("--json", action="store_true")
        daemon_bench = sub.add_parser(
            "bench-sandboxd", help="attach-to-prompt, echo and memory against a local pty"
        )
        daemon_bench.add_argument("--runs", type=int, default=20)
        daemon_bench.add_argument("--terminals", type=int, default=200)
        daemon_bench.add_argument("--seconds", type=float, default=10.0)
        daemon_bench.add_argument("--json", action="store_true")

    def handle(self, *args: object, action: str, **options: object) -> None:
        if os.geteuid() != 0:
            raise CommandError("the sandbox runtime needs root (it creates namespaces and cgroups)")
        config = runtime_config()
        if action == "run":
            sys.exit(self._run(config, **options))
        elif action == "bench":
            try:
                results = runtime_bench.run(
                    config, runs=options["runs"], idle=options["idle"], pause_ms=options["pause_ms"]
                )
            except (SandboxError, VolumeError) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                json.dumps(results) if options["json"] else runtime_bench.table(results)
            )
        elif action == "bench-sandboxd":
            from .sandboxd import daemon_config

            try:
                results = sandboxd_bench.run(
                    daemon_config(),
                    runs=options["runs"],
                    terminals=options["terminals"],
                    seconds=options["seconds"],
                )
            except SandboxdError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                json.dumps(results) if options["json"] else sandboxd_bench.table(results)
            )
        elif action == "list":
            self._list(config)
        elif action == "destroy":
            self._kill(config, str(options["name"]))
            reconcile_one(config, str(options["name"]))
            self.stdout.write(f"destroyed {options['name']}")
        elif action == "reset":
            spec = SandboxSpec(name="reset", learner=options["learner"], node=options["node"])
            try:
                spec.validate()
                volumes.volume_delete(config.state_dir, str(spec.volume))
            except (SpecError, VolumeError) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"deleted the files of {spec.volume}")
        elif action == "reconcile":
            self.stdout.write(json.dumps(reconcile(config).__dict__, indent=2))

    def _run(
        self,
        config: RuntimeConfig,
        *,
        learner: str | None,
        name: str | None,
        memory: str,
        pids: int,
        cpus: float,
        disk: str,
        json_status: bool,
        command: list[str],
        **_: object,
    ) -> int:
        name = name or f"{learner or 'run'}-{secrets.token_hex(3)}"
        argv = command or ["/bin/bash", "--login"]
        # Asked for with the sandbox: it starts the moment the sandbox is up.
        if os.isatty(0):
            size = os.get_terminal_size(0)
            first = FirstProcess(argv, terminal=(size.lines, size.columns))
        else:
            first = FirstProcess(argv, stdio=(0, 1, 2))
        try:
            limits = Limits(parse_size(memory), pids, cpus, parse_size(disk))
            spec = SandboxSpec(name=name, learner=learner, limits=limits)
            sandbox = sandbox_create(spec, config, first=first)
        except (SpecError, SandboxError, VolumeError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        with sandbox:
            if json_status:
                self.stderr.write(json.dumps(sandbox.status()))
            process, sandbox.first = sandbox.first, None
            assert process is not None  # sandbox_create started it, or raised
            if first.terminal is not None:
                return console.relay(process)
            return process.wait()

    def _kill(self, config: RuntimeConfig, name: str) -> None:
        state = state_read(config, name)
        if state is None:
            raise CommandError(f"no sandbox named {name!r}")
        kill_recorded(state.init_pid, state.init_start_time)

    def _list(self, config: RuntimeConfig) -> None:
        rows = []
        for name in sandbox_names(config):
            state = state_read(config, name)
            if state is None:
                rows.append((name, "-", "starting or broken", "-"))
                continue
            alive = is_recorded_process(state.init_pid, state.init_start_time)
            rows.append(
                (
                    state.name,
                    state.learner or "-",
                    "running" if alive else "dead",
                    f"up {_duration(time.time() - state.created_at)}",
                )
            )
        if not rows:
            self.stdout.write("no sandboxes")
        for row in rows:
            self.stdout.write("{:<32} {:<20} {:<20} {}".format(*row))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
