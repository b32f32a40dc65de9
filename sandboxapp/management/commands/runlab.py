"""``manage.py runlab``: run the whole lab on one machine, as ``make run`` does.

Starts sandboxd and Daphne as child processes, waits until both answer, prints where to go,
and on Ctrl-C or SIGTERM stops them in reverse order: terminate, wait, then kill what is
left (sandboxd ends every sandbox on its way out; learners' files stay).
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandboxapp.daphne_on_uvloop import daphne_argv
from sandboxapp.runtime.client import SandboxdError, call_sync

STOP_TIMEOUT = 10.0
START_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child: if runlab is killed outright, the kernel still stops its children."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


@dataclass
class Child:
    name: str
    process: subprocess.Popen

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.process.poll() is not None:
            return
        # Each child leads its own process group, so this reaches anything it started too.
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


class Command(BaseCommand):
    help = "Start sandboxd and Daphne; Ctrl-C stops both."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))

    def handle(self, *args: object, host: str, port: int, **options: object) -> None:
        self.stop_requested = False
        self.failure = ""
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)

        _check_port_free(host, port)
        children: list[Child] = []
        try:
            if os.geteuid() == 0:
                manage = str(Path(settings.BASE_DIR) / "manage.py")
                children.append(self._start("sandboxd", [sys.executable, manage, "sandboxd"]))
            else:
                self._say(
                    "sandboxd needs root (namespaces, cgroups, mounts): starting the web app "
                    "alone, without terminals. Run `make run` as root for the whole lab."
                )
            children.append(self._start("daphne", daphne_argv(host, port)))
            if self._wait_until_ready(children, host, port):
                self._print_welcome(host, port)
                self._watch(children)
        finally:
            for child in reversed(children):
                self._say(f"Stopping {child.name} (pid {child.process.pid})")
                child.stop()
        if self.failure:
            raise CommandError(self.failure)
        self._say("Stopped.")

    def _say(self, message: str) -> None:
        # Flushed at once so the lines keep their order with the children's output in a pipe.
        self.stdout.write(message)
        self.stdout.flush()

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def _start(self, name: str, command: list[str]) -> Child:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches runlab alone, which stops children in order
            preexec_fn=_die_with_parent,
        )
        self._say(f"Started {name} (pid {process.pid})")
        return Child(name, process)

    def _wait_until_ready(self, children: list[Child], host: str, port: int) -> bool:
        """Until Daphne listens and sandboxd (if started) answers, or a child exits."""
        probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)

        def daphne_listens() -> None:
            socket.create_connection((probe_host, port), timeout=0.5).close()

        def sandboxd_answers() -> None:
            call_sync(settings.SANDBOXD_SOCKET, "ping", reply_timeout=1)

        waits = [(daphne_listens, f"daphne did not listen on {host}:{port}")]
        if any(child.name == "sandboxd" for child in children):
            waits.append((sandboxd_answers, "sandboxd did not answer"))
        deadline = time.monotonic() + START_TIMEOUT
        for probe, failure in waits:
            while True:
                if self.stop_requested or self._exited(children):
                    return False
                try:
                    probe()
                    break
                except (OSError, SandboxdError):
                    if time.monotonic() > deadline:
                        self.failure = f"{failure} within {START_TIMEOUT:.0f}s"
                        return False
                    time.sleep(0.1)
        return True

    def _exited(self, children: list[Child]) -> bool:
        for child in children:
            if child.process.poll() is not None:
                self.failure = f"{child.name} exited with {child.process.returncode}"
                return True
        return False

    def _watch(self, children: list[Child]) -> None:
        while not self.stop_requested and not self._exited(children):
            time.sleep(0.2)

    def _print_welcome(self, host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/"
        lines = [f"Contained is running at {url}"]
        if host in ("0.0.0.0", "::"):
            lines.append(
                "  (listening on every interface: use this machine's name, and add it to "
                "ALLOWED_HOSTS)"
            )
        lines += [
            f"Instructors log in at {url}accounts/login/ as user 'instructor' with the password "
            "printed when that login was created",
            "Press Ctrl-C to stop.",
        ]
        self._say(self.style.SUCCESS(lines[0]))
        for line in lines[1:]:
            self._say(line)


def _check_port_free(host: str, port: int) -> None:
    """Say so plainly, before starting anything, when another program has the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise CommandError(
                f"cannot listen on {host}:{port} ({error.strerror}): stop what uses it, or "
                "choose another port, e.g. `make run PORT=8001`"
            ) from None
