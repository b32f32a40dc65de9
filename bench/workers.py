"""Several Daphne workers behind nginx on this machine, as docs/operations.md describes.

`workers_running` is what tests/web/test_several_workers.py runs; `python -m bench.workers`
runs the same for `bench/load.py` to measure against, with sandboxd, until Ctrl-C:

    DATABASE_URL=postgres://... REDIS_URL=redis://... sudo -E .venv/bin/python -m bench.workers \\
        --workers 2 --port 8080

It prints each process's pid, so a fault can kill one (`kill -9 <pid>` of a worker).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sandboxapp.daphne_on_uvloop import daphne_argv
from sandboxapp.runtime import ids, runstate

REPO = Path(__file__).resolve().parent.parent
SITE_CONF = REPO / "deploy" / "nginx" / "contained.conf"


@dataclass
class Site:
    proxy: str
    workers: list[str]
    processes: dict[str, subprocess.Popen]
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{process.args[0]} did not listen on {port}:\n{log.read_text()}"
                ) from None
            time.sleep(0.1)


def nginx_config(workdir: Path, listen: int, workers: list[int]) -> Path:
    """The shipped site file, on these ports, inside a main config of its own."""
    # The shipped upstream, one line per worker: its first server line with our address.
    shipped = SITE_CONF.read_text()
    line = re.search(r"^\s*server 127\.0\.0\.1:\d+(.*)$", shipped, re.M)
    servers = "".join(f"    server 127.0.0.1:{port}{line.group(1)}\n" for port in workers)
    upstream = r"(upstream contained_workers \{\n)(?:.*\n)*?(\})"
    site = re.sub(upstream, rf"\1{servers}\2", shipped, count=1)
    site = site.replace("listen 8000;", f"listen 127.0.0.1:{listen};")
    (workdir / "site.conf").write_text(site)
    temp_paths = "".join(
        f"  {kind}_temp_path {workdir}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = workdir / "nginx.conf"
    main.write_text(
        f"daemon off;\npid {workdir}/nginx.pid;\nerror_log {workdir}/nginx-error.log;\n"
        f"events {{}}\nhttp {{\n  access_log off;\n{temp_paths}  include {workdir}/site.conf;\n}}\n"
    )
    return main


def start_daphne(env: dict[str, str], port: int, log: Path, repo: Path = REPO) -> subprocess.Popen:
    """Daphne serving the checkout at `repo` (another revision's, for a paired comparison)."""
    argv = daphne_argv("127.0.0.1", port)
    with log.open("a") as out:
        process = subprocess.Popen(argv, cwd=repo, env=env, stdout=out, stderr=out)
    wait_listening(port, process, log)
    return process


@contextlib.contextmanager
def workers_running(
    env: dict[str, str], workdir: Path, count: int = 2, listen: int | None = None
) -> Iterator[Site]:
    """`count` Daphne workers with `env` (DATABASE_URL, REDIS_URL, SANDBOXD_SOCKET, ...) and
    nginx in front; all stopped on the way out."""
    processes: dict[str, subprocess.Popen] = {}
    try:
        ports = [free_port() for _ in range(count)]
        for index, port in enumerate(ports, 1):
            processes[f"daphne-{index}"] = start_daphne(env, port, workdir / f"daphne-{index}.log")
        listen = listen or free_port()
        config = nginx_config(workdir, listen, ports)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        processes["nginx"] = subprocess.Popen([nginx, "-c", str(config)], stderr=subprocess.DEVNULL)
        wait_listening(listen, processes["nginx"], workdir / "nginx-error.log")
        yield Site(
            proxy=f"http://127.0.0.1:{listen}",
            workers=[f"http://127.0.0.1:{port}" for port in ports],
            processes=processes,
            env=env,
        )
    finally:
        for process in reversed(processes.values()):
            process_stop(process)


def process_stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Ask a server to stop; one still running after `timeout` seconds is killed. A bench
    that failed halfway must leave nothing behind: a Daphne that would not stop with 200
    sockets open once stayed up for an hour, its port and memory with it."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def sandboxd_running(
    env: dict[str, str], workdir: Path, repo: Path = REPO
) -> Iterator[subprocess.Popen]:
    """`manage.py sandboxd` of the checkout at `repo` with `env`, its log in `workdir`, until
    its socket answers; stopped (and its sandboxes ended) on the way out."""
    log = workdir / "sandboxd.log"
    with log.open("w") as out:
        sandboxd = subprocess.Popen(
            [sys.executable, "manage.py", "sandboxd"], cwd=repo, env=env, stdout=out, stderr=out
        )
    try:
        while not Path(env["SANDBOXD_SOCKET"]).exists():
            if sandboxd.poll() is not None:
                raise RuntimeError(f"sandboxd exited:\n{log.read_text()}")
            time.sleep(0.1)
        yield sandboxd
    finally:
        process_stop(sandboxd, 60)  # it ends its sandboxes first
        if state := env.get("CONTAINED_STATE_DIR"):
            ids.host_claims_release(Path(state))
            runstate.run_dir_unmount(Path(state))


def manage(env: dict[str, str], *args: str, repo: Path = REPO) -> str:
    """`manage.py ARGS` with `env`; its output, or CalledProcessError with its stderr."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout


def site_prepare(env: dict[str, str], repo: Path = REPO) -> None:
    """What a site needs before its workers start, as `make run` and the image do."""
    manage(env, "migrate", "--noinput", "-v", "0", repo=repo)
    manage(env, "lessons", "load", repo=repo)
    manage(env, "collectstatic", "--noinput", "-v", "0", repo=repo)  # production: hashed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        parser.error("several workers need DATABASE_URL and REDIS_URL")
    workdir = Path(tempfile.mkdtemp(prefix="contained-workers-"))
    env = {
        **os.environ,
        "ALLOWED_HOSTS": os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost"),
        "CONTAINED_HTTPS": os.environ.get("CONTAINED_HTTPS", "0"),
        "SANDBOXD_SOCKET": str(workdir / "run" / "sandboxd.sock"),  # a directory of its own
    }
    site_prepare(env)
    with sandboxd_running(env, workdir) as sandboxd:
        with workers_running(env, workdir, args.workers, args.port) as site:
            print(f"Serving {site.proxy} (logs in {workdir})")
            print(f"  sandboxd pid {sandboxd.pid}")
            for name, process in site.processes.items():
                print(f"  {name} pid {process.pid}")
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            while not stop.wait(0.5):
                pass


if __name__ == "__main__":
    main(sys.argv[1:])
