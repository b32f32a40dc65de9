"""Sandbox start-up against named peers, measured side by side in one run.

* contained: create a sandbox with /bin/true as its first process, as `sandbox run` does,
             wait for its exit, destroy it (in-process, as sandboxd does).
* unshare:   util-linux `unshare` with the same namespaces, running /bin/true.
* bwrap:     bubblewrap with every namespace and a minimal root, running /bin/true.

Each peer's figure is one full cycle (create, first exec, teardown), in milliseconds; ours
is timed both to /bin/true's exit ("first exec", what a learner waits for) and to the end
of the teardown (the like-for-like figure). Cycles are `pause_ms` apart for every runtime,
as learners arrive: back to back, each of our creates would also wait for the spare the
previous one asked for to finish joining its cgroups, which a learner arriving later never
does (`--pause-ms 0` measures that). Idle memory is
the host's used memory (MemTotal - MemAvailable) added per idle sandbox while N are up.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandboxapp.runtime.sandbox import FirstProcess, RuntimeConfig, Sandbox, sandbox_create
from sandboxapp.runtime.spec import SandboxSpec

UNSHARE = [
    "unshare",
    "--user",
    "--map-root-user",
    "--pid",
    "--fork",
    "--mount",
    "--uts",
    "--ipc",
    "--net",
    "--cgroup",
    "--mount-proc",
    "/bin/true",
]
BWRAP = [
    "bwrap",
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/bin",
    "/bin",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
    "/bin/true",
]


@dataclass
class Timing:
    samples: list[float]

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        return {
            "p50_ms": round(statistics.median(ordered), 2),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 2),
            "runs": len(ordered),
        }


def _time(runs: int, once: Callable[[int], None], pause_ms: float) -> Timing:
    once(-1)  # warm caches (the image, the page cache, the seccomp filter)
    samples = []
    for i in range(runs):
        time.sleep(pause_ms / 1000)
        started = time.perf_counter()
        once(i)
        samples.append((time.perf_counter() - started) * 1000)
    return Timing(samples)


def _contained_once(config: RuntimeConfig, first_exec: list[float]) -> Callable[[int], None]:
    """One full cycle, as `manage.py sandbox run -- /bin/true` makes it (the command asked
    for with the sandbox, its output to /dev/null as the peers'); the time from the start
    to /bin/true's exit goes to `first_exec`."""

    def once(i: int) -> None:
        name = f"bench-{i + 1}"
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        started = time.perf_counter()
        try:
            first = FirstProcess(["/bin/true"], stdio=(null, null, null))
            sandbox = sandbox_create(SandboxSpec(name=name), config, first=first)
        finally:
            os.close(null)
        try:
            process, sandbox.first = sandbox.first, None
            assert process is not None and process.wait() == 0
            if i >= 0:
                first_exec.append((time.perf_counter() - started) * 1000)
        finally:
            sandbox.destroy()

    return once


def _command_once(argv: list[str]) -> Callable[[int], None]:
    def once(_: int) -> None:
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)

    return once


def _used_kib() -> int:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return int(fields["MemTotal"].split()[0]) - int(fields["MemAvailable"].split()[0])


def idle_memory_kib(config: RuntimeConfig, count: int) -> float:
    sandboxes: list[Sandbox] = []
    before = _used_kib()
    try:
        for i in range(count):
            name = f"idle-{i}"
            sandboxes.append(sandbox_create(SandboxSpec(name=name), config))
        time.sleep(0.5)
        return (_used_kib() - before) / max(count, 1)
    finally:
        for sandbox in sandboxes:
            sandbox.destroy()


def run(
    config: RuntimeConfig, runs: int = 50, idle: int = 100, pause_ms: float = 50
) -> dict[str, object]:
    first_exec: list[float] = []
    contained = _time(runs, _contained_once(config, first_exec), pause_ms).summary()
    start = Timing(first_exec).summary()
    contained.update(first_exec_p50_ms=start["p50_ms"], first_exec_p90_ms=start["p90_ms"])
    results: dict[str, object] = {"contained": contained}
    for name, argv in (("bwrap", BWRAP), ("unshare", UNSHARE)):
        if shutil.which(argv[0]):
            results[name] = _time(runs, _command_once(argv), pause_ms).summary()
        else:
            results[name] = {"error": f"{argv[0]} is not installed"}
    results["idle_memory_kib_per_sandbox"] = round(idle_memory_kib(config, idle), 1)
    results["idle_sandboxes"] = idle
    results["pause_ms"] = pause_ms
    return results


def table(results: dict[str, object]) -> str:
    ours = results["contained"]["p50_ms"]  # type: ignore[index]
    lines = [
        f"{'runtime':<10} {'first exec p50':>15} {'p90':>6} {'full cycle p50':>15} {'p90':>6}"
        f" {'full p50 / ours':>16}"
    ]
    for name in ("contained", "bwrap", "unshare"):
        row = results[name]
        if "error" in row:  # type: ignore[operator]
            lines.append(f"{name:<10} {row['error']}")  # type: ignore[index]
            continue
        # A peer's one command is its whole cycle: there is no first exec to time apart.
        first = (row.get("first_exec_p50_ms", "-"), row.get("first_exec_p90_ms", "-"))  # type: ignore[union-attr]
        ratio = row["p50_ms"] / ours  # type: ignore[index]
        lines.append(
            f"{name:<10} {first[0]:>15} {first[1]:>6} {row['p50_ms']:>15} {row['p90_ms']:>6}"  # type: ignore[index]
            f" {ratio:>15.2f}x"
        )
    lines.append(
        f"idle memory: {results['idle_memory_kib_per_sandbox']} KiB per sandbox "
        f"({results['idle_sandboxes']} sandboxes up); cycles {results['pause_ms']:g} ms apart"
    )
    return "\n".join(lines)
