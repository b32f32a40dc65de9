"""sandboxd's terminals against a bare local PTY, measured side by side in one run.

* attach to prompt: a new learner attaches (sandbox created, shell started) until the
  shell's prompt arrives; the peer starts bash on a local PTY (no sandbox, no daemon).
* echo: N terminals attached at once, each typing one key every ~100 ms; the time from
  sending a key to seeing it echoed. The peer is N bash shells on local PTYs read by the
  same event loop, so the ratio is what the daemon and the sandbox add.
* memory: the daemon's RSS added per attached idle terminal.
* check: a lesson check through the daemon (request, host-side read of the sandbox, reply),
  with a nested pid namespace running; the figure the lessons' goal is about (p95).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from bench.workers import process_stop
from sandboxapp.runtime.client import Output, SandboxdClient
from sandboxapp.runtime.daemon import DaemonConfig, daemon_spawn

PROMPT = b"# "
KEY_INTERVAL = 0.1


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "samples": len(values),
    }


class Shell:
    """One interactive shell, whichever side it is on: send bytes, await output."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self.send = send
        self.seen = bytearray()
        self.changed = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self.seen += data
        self.changed.set()

    async def wait_for(self, pattern: bytes, since: int = 0, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while self.seen.find(pattern, since) < 0:
                # Only what arrives next is searched: a flood's megabytes are read once.
                since = max(since, len(self.seen) - len(pattern) + 1)
                self.changed.clear()
                await self.changed.wait()


async def daemon_shell(client: SandboxdClient, learner: str) -> tuple[Shell, Callable]:
    terminal = await client.attach(learner)
    shell = Shell(terminal.send_input)

    async def pump() -> None:
        while (item := await terminal.receive()) is not None:
            if isinstance(item, Output):
                shell.feed(item.data)
                await terminal.ack(item.end)

    task = asyncio.create_task(pump())

    async def close() -> None:
        task.cancel()
        await terminal.close()

    return shell, close


async def local_shell() -> tuple[Shell, Callable]:
    master, slave = os.openpty()
    env = {"PATH": os.environ["PATH"], "PS1": "# ", "TERM": "xterm-256color", "HOME": "/root"}
    process = subprocess.Popen(
        ["bash", "--norc", "--noprofile", "-i"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()

    async def send(data: bytes) -> None:
        os.write(master, data)

    shell = Shell(send)

    def readable() -> None:
        try:
            shell.feed(os.read(master, 65536))
        except OSError:
            loop.remove_reader(master)

    loop.add_reader(master, readable)

    async def close() -> None:
        loop.remove_reader(master)
        process.kill()
        process.wait()
        os.close(master)

    return shell, close


async def time_to_prompt(start: Callable[[], Awaitable[tuple[Shell, Callable]]]) -> float:
    began = time.perf_counter()
    shell, close = await start()
    await shell.wait_for(PROMPT)
    elapsed = (time.perf_counter() - began) * 1000
    await close()
    return elapsed


async def echo_latencies(
    shells: list[Shell], seconds: float, interval: float = KEY_INTERVAL
) -> list[float]:
    """Every shell types a letter every `interval` (jittered by half) for `seconds`."""
    samples: list[float] = []

    async def typist(shell: Shell) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            key = random.choice(b"abcdefghijklmnopqrstuvwxyz")
            since = len(shell.seen)
            began = time.perf_counter()
            await shell.send(bytes([key]))
            await shell.wait_for(bytes([key]), since)
            samples.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))
        await shell.send(b"\x15")  # Ctrl-U: the line typed is discarded

    await asyncio.gather(*(typist(shell) for shell in shells))
    return samples


async def check_latency(client: SandboxdClient, learner: str, samples: int) -> dict:
    await client.call("ensure", learner=learner)
    script = "unshare -pf --mount-proc sleep 600 >/dev/null 2>&1 &"
    await client.exec(learner, ["sh", "-c", script])
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        await client.call("check", learner=learner, check="nested_pid_namespace_with_own_proc")
        times.append((time.perf_counter() - began) * 1000)
    await client.call("reset", learner=learner, keep_files=False)
    return {**summary(times), "p95_ms": round(percentile(times, 95), 3)}


async def measure(client: SandboxdClient, runs: int, terminals: int, seconds: float) -> dict:
    prefix = f"bench{secrets.token_hex(2)}"
    ours, peer = [], []
    for i in range(runs):
        learner = f"{prefix}-a{i}"
        ours.append(await time_to_prompt(lambda learner=learner: daemon_shell(client, learner)))
        await client.call("reset", learner=learner, keep_files=False)
        peer.append(await time_to_prompt(local_shell))
    results: dict = {"attach_to_prompt": {"contained": summary(ours), "local_pty": summary(peer)}}
    results["check"] = await check_latency(client, f"{prefix}-c", runs * 10)

    before = (await client.call("stats"))["rss_bytes"]
    opened = []
    for i in range(terminals):
        shell, close = await daemon_shell(client, f"{prefix}-t{i}")
        await shell.wait_for(PROMPT)
        opened.append((shell, close))
    await asyncio.sleep(1)
    after = (await client.call("stats"))["rss_bytes"]
    results["memory_per_idle_terminal_kib"] = round((after - before) / terminals / 1024, 1)
    ours_echo = await echo_latencies([s for s, _ in opened], seconds)
    for i, (_, close) in enumerate(opened):
        await close()
        await client.call("reset", learner=f"{prefix}-t{i}", keep_files=False)

    local = [await local_shell() for _ in range(terminals)]
    for shell, _ in local:
        await shell.wait_for(PROMPT)
    peer_echo = await echo_latencies([s for s, _ in local], seconds)
    for _, close in local:
        await close()
    results["echo"] = {
        "terminals": terminals,
        "contained": summary(ours_echo),
        "local_pty": summary(peer_echo),
    }
    for figure in ("attach_to_prompt", "echo"):
        f = results[figure]
        f["ratio_p50"] = round(f["contained"]["p50_ms"] / f["local_pty"]["p50_ms"], 2)
    return results


def run(config: DaemonConfig, *, runs: int, terminals: int, seconds: float) -> dict:
    """Start a private sandboxd on `config` (its own socket), measure, stop it."""
    socket_dir = Path(tempfile.mkdtemp(prefix="sandboxd-bench-"))
    config = replace(
        config,
        socket_path=socket_dir / "sandboxd.sock",
        runtime=replace(config.runtime, max_sandboxes=max(config.runtime.max_sandboxes, terminals)),
        creates_per_minute=max(config.creates_per_minute, runs + 1),
    )
    daemon = daemon_spawn(config, log_level="WARNING")
    try:
        client = SandboxdClient(config.socket_path, timeout=60)
        return asyncio.run(measure(client, runs, terminals, seconds))
    finally:
        process_stop(daemon, 60)
        shutil.rmtree(socket_dir, ignore_errors=True)


def table(results: dict) -> str:
    lines = []
    for figure in ("attach_to_prompt", "echo"):
        f = results[figure]
        title = figure.replace("_", " ")
        if figure == "echo":
            title += f" ({f['terminals']} terminals)"
        lines.append(f"{title}:")
        for who in ("contained", "local_pty"):
            lines.append(
                f"  {who:<10} p50 {f[who]['p50_ms']:8.2f} ms   p99 {f[who]['p99_ms']:8.2f} ms"
                f"   ({f[who]['samples']} samples)"
            )
        lines.append(f"  ratio p50 contained/local_pty: {f['ratio_p50']}")
    lines.append(f"daemon memory per idle terminal: {results['memory_per_idle_terminal_kib']} KiB")
    check = results["check"]
    lines.append(
        f"lesson check through sandboxd: p50 {check['p50_ms']} ms, p95 {check['p95_ms']} ms, "
        f"p99 {check['p99_ms']} ms ({check['samples']} samples)"
    )
    return "\n".join(lines)
