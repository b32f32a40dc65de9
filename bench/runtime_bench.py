"""Sandbox start-up against named peers, measured side by side in one run.

* contained: create a sandbox with /bin/true as its first process, as `sandbox run` does,
             wait for its exit, destroy it (in-process, as sandboxd does).
* unshare:   util-linux `unshare` with the same namespaces, running /bin/true.
* bwrap:     bubblewrap with every namespace and a minimal root, running /bin/true.

Each peer's figure is one full cycle (create, first exec, teardown), in milliseconds; ours
is timed both to /bin/true's exit ("first exec", what a learner waits for) and to the end
of the teardown (the like-for-like figure). The runtimes take turns, a cycle each per round
(the order rotated every round), so that noise from the host falls on all of them alike;
our first exec is also divided by bwrap's cycle of the same round, and the quartiles of
those ratios reported. Cycles are `pause_ms` apart, as learners arrive: back to back, each
of our creates would also wait for the spare the previous one asked for to finish joining
its cgroups, which a learner arriving later never does (`--pause-ms 0` measures that).
Idle memory is the host's used memory (MemTotal - MemAvailable) added per idle sandbox
while N are up.
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

from bench.host import steal_ms, turns
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


def _time_side_by_side(
    runs: int, cycles: dict[str, Callable[[int], None]], pause_ms: float
) -> dict[str, Timing]:
    """Each runtime's cycle in turn, round after round, the order rotated every round.
    On a VM the host takes time back in stretches of seconds (steal): runtimes timed one
    block after another got the noise of their own stretch, and their ratio moved by a
    fifth from run to run. Side by side, a stretch falls on all of them alike."""
    for once in cycles.values():
        once(-1)  # warm caches (the image, the page cache, the seccomp filter)
    samples: dict[str, list[float]] = {name: [] for name in cycles}
    for i, name in turns(list(cycles), runs):
        time.sleep(pause_ms / 1000)
        started = time.perf_counter()
        cycles[name](i)
        samples[name].append((time.perf_counter() - started) * 1000)
    return {name: Timing(times) for name, times in samples.items()}


def _quartiles(values: list[float]) -> dict[str, float]:
    low, middle, high = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return {"p25": round(low, 3), "p50": round(middle, 3), "p75": round(high, 3)}


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
    cycles = {"contained": _contained_once(config, first_exec)}
    results: dict[str, object] = {}
    for name, argv in (("bwrap", BWRAP), ("unshare", UNSHARE)):
        if shutil.which(argv[0]):
            cycles[name] = _command_once(argv)
        else:
            results[name] = {"error": f"{argv[0]} is not installed"}
    steal = steal_ms()
    timings = _time_side_by_side(runs, cycles, pause_ms)
    results["host_steal_ms"] = round(steal_ms() - steal, 1)
    contained = timings["contained"].summary()
    start = Timing(first_exec).summary()
    contained.update(first_exec_p50_ms=start["p50_ms"], first_exec_p90_ms=start["p90_ms"])
    results["contained"] = contained
    for name, timing in timings.items():
        if name != "contained":
            results[name] = timing.summary()
    if "bwrap" in timings:
        # Round by round: our first exec against bwrap's cycle a moment before or after it.
        paired = [
            ours / peer for ours, peer in zip(first_exec, timings["bwrap"].samples, strict=True)
        ]
        results["first_exec_per_bwrap_cycle"] = _quartiles(paired)
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
    if "first_exec_per_bwrap_cycle" in results:
        paired = results["first_exec_per_bwrap_cycle"]
        lines.append(
            f"our first exec / bwrap's cycle, round by round: {paired['p50']:.2f}"  # type: ignore[index]
            f" (middle half {paired['p25']:.2f}-{paired['p75']:.2f})"  # type: ignore[index]
        )
    lines.append(f"host steal during the cycles: {results['host_steal_ms']} ms")
    lines.append(
        f"idle memory: {results['idle_memory_kib_per_sandbox']} KiB per sandbox "
        f"({results['idle_sandboxes']} sandboxes up); cycles {results['pause_ms']:g} ms apart"
    )
    return "\n".join(lines)
