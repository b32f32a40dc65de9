"""`python -m bench.load`: many simulated learners against a running site, with faults.

Each learner starts as a guest, opens a lesson and its terminal over a real websocket, and
types at human speed; the time from a keystroke to its echo is measured. A few learners flood
their terminal (`yes`), some close and resume their terminal now and then, as a page reload
does. A learner whose connection breaks reconnects as static/js/terminal.js does (resuming
at its offset, backing off from 0.5 s to 10 s); a learner with no terminal for
`--give-up` seconds counts as a dropped session.

Faults are shell commands run at a time into the run, e.g. against the compose stack:

    python -m bench.load --url http://127.0.0.1:8000 --learners 200 --seconds 120 \\
        --fault "40:docker-compose restart redis" --fault "80:docker-compose restart sandboxd"

The report (text, or JSON with --json) gives echo p50/p99, errors, reconnects and dropped
sessions per phase between faults, the memory of sandboxd and the web workers, and the
sandboxes running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.learner import LiveLearner

LESSON = "pid-namespaces"
ECHO_TIMEOUT = 5.0
BACKOFF = (0.5, 10.0)
# What a learner types, one key at a time; each word then Enter.
WORDS = ["echo", "hello", "ls", "pwd", "id", "hostname", "date", "uname"]


@dataclass
class Phase:
    """What happened between two faults (or from the start, or to the end)."""

    name: str
    started: float
    echoes_ms: list[float] = field(default_factory=list)
    interrupts_ms: list[float] = field(default_factory=list)
    # Seconds each learner cut off in this phase went without a terminal.
    outages_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    screens_kept: int = 0

    def summary(self) -> dict:
        echoes = sorted(self.echoes_ms)
        return {
            "phase": self.name,
            "keystrokes": len(echoes),
            "echo_p50_ms": round(_percentile(echoes, 50), 2) if echoes else None,
            "echo_p99_ms": round(_percentile(echoes, 99), 2) if echoes else None,
            "ctrl_c_to_prompt_p50_ms": _p(self.interrupts_ms, 50),
            "ctrl_c_to_prompt_max_ms": _p(self.interrupts_ms, 100),
            "terminals_cut": len(self.outages_s),
            "outage_p50_s": _p(self.outages_s, 50),
            "outage_max_s": _p(self.outages_s, 100),
            "errors": len(self.errors),
            "first_errors": sorted(set(self.errors))[:5],
            "reconnects": self.reconnects,
            "screens_kept": self.screens_kept,
        }


def _p(values: list[float], pct: float) -> float | None:
    return round(_percentile(sorted(values), pct), 1) if values else None


def _percentile(values: list[float], pct: float) -> float:
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values)) - 1))
    return values[index]


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.phases = [Phase("ramp (learners starting)", time.monotonic())]
        self.ready = 0
        self.dropped: list[str] = []
        self.stop = asyncio.Event()

    @property
    def phase(self) -> Phase:
        return self.phases[-1]

    async def learner(self, index: int) -> None:
        rng = random.Random(index)
        learner = LiveLearner(self.args.url)
        name = f"load-{index}"
        flooder = index < self.args.flooders
        reloader = self.args.flooders <= index < self.args.flooders + self.args.reloaders
        try:
            await learner.start(f"Load {index}")
            await learner.get(f"/lessons/{LESSON}/")
            await self._connect(learner, resume=False)
            self.ready += 1
        except Exception as error:  # noqa: BLE001 (a learner's failure is data, not a crash)
            self.phase.errors.append(f"start: {type(error).__name__}: {error}"[:200])
            self.dropped.append(name)
            return
        next_reload = time.monotonic() + rng.uniform(10, 30)
        while not self.stop.is_set():
            try:
                if flooder:
                    await self._flood(learner)
                else:
                    await self._type_a_word(learner, rng)
                if reloader and time.monotonic() > next_reload:
                    next_reload = time.monotonic() + rng.uniform(10, 30)
                    await learner.close()
                    await self._connect(learner, resume=True)
            except Exception as error:  # noqa: BLE001 (any failure is counted, then reconnected)
                self.phase.errors.append(f"{type(error).__name__}: {error}"[:200])
                if not await self._reconnect(learner, self.phase):
                    self.dropped.append(name)
                    return
        await learner.close()

    async def _connect(self, learner: LiveLearner, resume: bool) -> dict:
        hello = await learner.open_terminal(resume=resume)
        # The prompt, so the first keystroke is read by the shell's line editor.
        await learner.expect(re.compile(rb"[#$] $"), timeout=30)
        return hello

    async def _reconnect(self, learner: LiveLearner, lost: Phase) -> bool:
        """As the page does; what it takes is counted against the phase it was `lost` in."""
        lost_at = time.monotonic()
        delay = BACKOFF[0]
        deadline = time.monotonic() + self.args.give_up
        while time.monotonic() < deadline and not self.stop.is_set():
            await asyncio.sleep(delay)
            try:
                await learner.close()
            except Exception:  # noqa: BLE001 (already broken)
                learner.ws = None
            try:
                hello = await self._connect(learner, resume=True)
                lost.reconnects += 1
                # The same terminal, resumed where the page had drawn: the screen is kept.
                lost.screens_kept += not hello["reset"]
                lost.outages_s.append(time.monotonic() - lost_at)
                return True
            except Exception as error:  # noqa: BLE001
                lost.errors.append(f"reconnect: {type(error).__name__}: {error}"[:200])
                delay = min(BACKOFF[1], delay * 2)
        return self.stop.is_set()

    async def _type_a_word(self, learner: LiveLearner, rng: random.Random) -> None:
        for char in rng.choice(WORDS):
            await asyncio.sleep(rng.uniform(0.1, 0.3))  # 3-10 keys a second
            before = len(learner.screen)
            began = time.perf_counter()
            await learner.type(char)
            async with asyncio.timeout(ECHO_TIMEOUT):
                while char.encode() not in learner.screen[before:]:
                    await learner.read_frame()
            self.phase.echoes_ms.append((time.perf_counter() - began) * 1000)
        learner.screen.clear()
        await learner.type("\r")
        await learner.expect(re.compile(rb"[#$] $"), timeout=ECHO_TIMEOUT)
        await asyncio.sleep(rng.uniform(0.5, 1.5) * self.args.think)  # reading the lesson

    async def _flood(self, learner: LiveLearner) -> None:
        """`yes` for a few seconds, drawn as fast as it comes, then Ctrl-C."""
        await learner.type("yes\r")
        end = time.monotonic() + 3
        while time.monotonic() < end:
            await learner.read_frame()
        learner.screen.clear()
        await learner.type("\x03")
        took = await learner.expect(re.compile(rb"\^C.*[#$] $", re.S), timeout=ECHO_TIMEOUT)
        self.phase.interrupts_ms.append(took * 1000)
        await asyncio.sleep(1)

    async def faults(self) -> None:
        """Each at its time, counted from the steady state."""
        began = self.phase.started
        for at, command in sorted(self.args.fault):
            await asyncio.sleep(max(0, began + at - time.monotonic()))
            if self.stop.is_set():
                return
            self.phases.append(Phase(command, time.monotonic()))
            done = await asyncio.to_thread(
                subprocess.run, command, shell=True, capture_output=True, text=True
            )
            if done.returncode != 0:
                self.phase.errors.append(f"fault command failed: {done.stderr.strip()[:200]}")


def _fault(value: str) -> tuple[float, str]:
    at, _, command = value.partition(":")
    if not command:
        raise argparse.ArgumentTypeError("a fault is SECONDS:COMMAND")
    return float(at), command


def rss_mib(pids: list[int]) -> float:
    """The summed resident memory of these processes (those gone are skipped)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0])
    return round(total / 1024, 1)


def cpu_seconds(pids: list[int]) -> float:
    """Seconds of CPU these processes' threads have used, as the scheduler counts them (in
    nanoseconds: /proc's utime and stime count ticks of 10 ms); children and threads that
    have ended are not counted."""
    total = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += int(stat.read_text().split()[0])
    return total / 1e9


def _rss_mib(pattern: str) -> float:
    """The summed resident memory of processes whose command line matches `pattern`."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if re.search(pattern, cmdline):
                pids.append(int(proc.name))
    return rss_mib(pids)


def _sandboxes_running(url: str) -> str:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            return json.load(response)["checks"]["sandboxd"]["detail"]
    except Exception as error:  # noqa: BLE001 (reported, not fatal)
        return f"unknown ({error})"


async def run(args: argparse.Namespace) -> dict:
    load = Run(args)
    tasks = []
    for index in range(args.learners):
        tasks.append(asyncio.create_task(load.learner(index)))
        await asyncio.sleep(args.ramp / max(1, args.learners))
    # Steady state: every learner has its terminal (or has given up).
    while load.ready + len(load.dropped) < args.learners:
        await asyncio.sleep(0.2)
    load.phases.append(Phase("steady", time.monotonic()))
    faults = asyncio.create_task(load.faults())
    await asyncio.sleep(max(0, load.phase.started + args.seconds - time.monotonic()))
    sandboxes = _sandboxes_running(args.url)
    memory = {
        "sandboxd_mib": _rss_mib(r"sandboxapp\.runtime\.daemon|manage\.py sandboxd"),
        "web_mib": _rss_mib(r"daphne"),
    }
    load.stop.set()
    faults.cancel()
    await asyncio.wait(tasks, timeout=30)
    return {
        "learners": args.learners,
        "flooders": args.flooders,
        "seconds": args.seconds,
        "phases": [phase.summary() for phase in load.phases],
        "all": Phase(
            "all",
            0,
            echoes_ms=[ms for phase in load.phases for ms in phase.echoes_ms],
            interrupts_ms=[ms for phase in load.phases for ms in phase.interrupts_ms],
            errors=[e for phase in load.phases for e in phase.errors],
            reconnects=sum(phase.reconnects for phase in load.phases),
            outages_s=[s for phase in load.phases for s in phase.outages_s],
            screens_kept=sum(phase.screens_kept for phase in load.phases),
        ).summary(),
        "dropped_sessions": len(load.dropped),
        "sandboxes": sandboxes,
        **memory,
    }


def parser() -> argparse.ArgumentParser:
    summary = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=summary)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60, help="of steady state")
    parser.add_argument("--ramp", type=float, default=20, help="seconds to start them all")
    parser.add_argument("--think", type=float, default=5, help="mean seconds between commands")
    parser.add_argument("--flooders", type=int, default=3)
    parser.add_argument("--reloaders", type=int, default=10)
    parser.add_argument("--give-up", type=float, default=60, help="seconds without a terminal")
    parser.add_argument("--fault", type=_fault, action="append", default=[])
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    _print(report)


def _print(report: dict) -> None:
    r = report
    print(
        f"{r['learners']} learners ({r['flooders']} flooding) for {r['seconds']:.0f} s: "
        f"{r['dropped_sessions']} dropped sessions; sandboxd {r['sandboxd_mib']} MiB, "
        f"web {r['web_mib']} MiB; {r['sandboxes']}"
    )
    for p in [*r["phases"], r["all"]]:
        print(
            f"  {p['phase']:<40} keys {p['keystrokes']:>6}  echo p50 {p['echo_p50_ms']} ms"
            f"  p99 {p['echo_p99_ms']} ms  errors {p['errors']}  reconnects {p['reconnects']}"
        )
        if p["terminals_cut"]:
            print(
                f"  {'':<40} {p['terminals_cut']} terminals cut off, back after"
                f" p50 {p['outage_p50_s']} s, max {p['outage_max_s']} s;"
                f" {p['screens_kept']} with their screen as it was"
            )
        if p["ctrl_c_to_prompt_p50_ms"] is not None:
            print(
                f"  {'':<40} Ctrl-C to prompt during yes: p50 {p['ctrl_c_to_prompt_p50_ms']} ms,"
                f" max {p['ctrl_c_to_prompt_max_ms']} ms"
            )
        for error in p["first_errors"]:
            print(f"      {error}")


if __name__ == "__main__":
    main(sys.argv[1:])
