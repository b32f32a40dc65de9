"""`python -m bench.terminal_peers`: Contained's web terminal against terminado and wetty.

The three serve the same shell (bash with the sandbox image's bashrc, so the same prompt) over
a websocket on loopback, one after the other in one run. Ours goes through Daphne and sandboxd
into a new sandbox per session; the peers run bash on host PTYs, as they are used. Every
client is the same Python `websockets` client in one event loop, so what differs is the server.

* echo: N sessions open at once, each typing a key every 100-300 ms (human speed): the time
  from sending a key to seeing it echoed, p50 / p99.
* bulk: one session prints `--bulk-mb` MB of text to a client that does not draw (it
  acknowledges output as it arrives): MB/s received.
  Beside them, in the same rounds, the same command's PTY read directly by the bench
  (`bare_pty`): the most a terminal hands any server here, and each server's share of it.
* Ctrl-C: one session runs `yes` for 2 s while the client draws 5 MB/s and acknowledges what
  it drew, as xterm.js's write callback does; then Ctrl-C, and the time until the prompt is
  drawn.
* server memory with the N sessions open (bash itself not counted).
* browser (ours only, `--browser-runs`): Debian's Chromium, a new guest types their name
  and clicks "Open my terminal" on the playground, and later, after a second's look at the
  list, a lesson's link: the time from the click event to the prompt on screen, p50 / p95.

Peers, pinned in bench/peers/: terminado 0.18 (Jupyter's terminal server, in the tornado app it
is always used in) and wetty 3.2 (node, socket.io). `make bench-peers` installs them there.

    sudo .venv/bin/python -m bench.terminal_peers [--sessions 200] [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop
import websockets

from bench.chromium import CHROMIUM, CHROMIUM_ARGS
from bench.host import steal_ms, turns
from bench.learner import LiveLearner, TerminalClosed
from bench.load import cpu_seconds, rss_mib
from bench.sandboxd_bench import Shell, echo_latencies, percentile, summary
from bench.workers import (
    free_port,
    process_stop,
    sandboxd_running,
    site_prepare,
    start_daphne,
    wait_listening,
)
from sandboxapp.runtime.image import image_ensure

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Page

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "bench" / "peers"
PROMPT = b"# "
SIZE = (24, 80)
DRAW_RATE = 5e6  # bytes a second: a browser drawing a flood
PEER_NAMES = ("contained", "terminado", "wetty")
AGAINST = "contained@"  # and a git revision: ours as of then (--against)
# Takes its turns at bulk output beside the peers: the same command, its PTY read directly.
BARE_PTY = "bare pty"
ECHO_ROUNDS = 4  # each peer types for a quarter of --seconds at a time
LESSON = "pid-namespaces"


def bulk_command(megabytes: int) -> str:
    """Lines of 80 in large writes (`yes`, `head`): a program writing line by line to a
    terminal, as `fold` or `cat` of a text file, is slower than any of the servers."""
    return f"yes $(printf %079d 0) | head -c {megabytes}M"


class Session(ABC):
    """One terminal over a websocket. A pump reads its output, "draws" it (at `draw_rate`
    bytes a second, or at once) into `shell`, then acknowledges it as drawn."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: websockets.ClientConnection | None = None
        self.shell = Shell(self.send)
        self.draw_rate: float | None = None
        self._pump: asyncio.Task | None = None

    async def open(self) -> None:
        await self._open()
        self._pump = asyncio.create_task(self._draw())

    async def _draw(self) -> None:
        while (data := await self._receive()) is not None:
            if self.draw_rate:
                await asyncio.sleep(len(data) / self.draw_rate)
            self.shell.feed(data)
            await self._drawn(len(data))

    async def close(self) -> None:
        if self._pump:
            self._pump.cancel()
        if self.ws:
            await self.ws.close()

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def send(self, data: bytes) -> None: ...

    @abstractmethod
    async def _receive(self) -> bytes | None:
        """The next output, or None when the server has closed the terminal."""

    @abstractmethod
    async def _drawn(self, count: int) -> None:
        """`count` more bytes are on the screen: the server may send more."""


class ContainedSession(Session):
    """A guest learner in our site: a new sandbox, through Daphne and sandboxd."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.learner = LiveLearner(url)

    async def _open(self) -> None:
        await self.learner.start(f"Bench {random.getrandbits(32):08x}")
        await self.learner.open_terminal(f"rows={SIZE[0]}&cols={SIZE[1]}")
        self.ws = self.learner.ws

    async def send(self, data: bytes) -> None:
        await self.learner.type(data.decode())

    async def _receive(self) -> bytes | None:
        with contextlib.suppress(TerminalClosed):  # the site ended the terminal
            while (data := await self.learner.receive()) is None:
                pass
            return data
        return None

    async def _drawn(self, count: int) -> None:
        await self.learner.acknowledge()


class TerminadoSession(Session):
    """terminado's JSON messages: ["stdin", text] in, ["stdout", text] out; no flow control."""

    async def _open(self) -> None:
        origin = self.url.replace("ws", "http", 1)
        self.ws = await websockets.connect(self.url + "/websocket", origin=origin, max_size=None)
        await self.ws.send(json.dumps(["set_size", *SIZE]))

    async def send(self, data: bytes) -> None:
        await self.ws.send(json.dumps(["stdin", data.decode()]))

    async def _receive(self) -> bytes | None:
        async for frame in self.ws:
            kind, *rest = json.loads(frame)
            if kind == "stdout":
                return rest[0].encode()
            if kind == "disconnect":
                return None
        return None

    async def _drawn(self, count: int) -> None:
        pass  # terminado has no flow control: it sends whatever the PTY gives


class WettySession(Session):
    """wetty's socket.io events over Engine.IO 4 on a websocket: "input" in, "data" out, and
    "commit" every 256 KiB drawn (its flow control, as its own page does it). The framing is
    written here, not taken from python-socketio, so every peer has the same client stack."""

    ACK_BYTES = 262144  # wetty's FlowControlClient.ackBytes

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.undrawn = 0

    async def _open(self) -> None:
        url = self.url + "/wetty/socket.io/?EIO=4&transport=websocket"
        self.ws = await websockets.connect(url, max_size=None)
        opened = await self.ws.recv()
        if not opened.startswith("0"):
            raise RuntimeError(f"wetty: no Engine.IO open packet: {opened[:80]!r}")
        await self.ws.send("40")  # join the default namespace; events before its answer are refused
        while not (await self.ws.recv()).startswith("40"):
            pass
        await self._emit("resize", {"rows": SIZE[0], "cols": SIZE[1]})

    async def _emit(self, event: str, data: object) -> None:
        await self.ws.send("42" + json.dumps([event, data]))

    async def send(self, data: bytes) -> None:
        await self._emit("input", data.decode())

    async def _receive(self) -> bytes | None:
        async for packet in self.ws:
            if packet == "2":  # the server's ping; unanswered, it hangs up
                await self.ws.send("3")
            elif packet.startswith("42"):
                event, *args = json.loads(packet[2:])
                if event == "data":
                    return args[0].encode()
                if event == "logout":
                    return None
        return None

    async def _drawn(self, count: int) -> None:
        self.undrawn += count
        while self.undrawn >= self.ACK_BYTES:
            self.undrawn -= self.ACK_BYTES
            await self._emit("commit", self.ACK_BYTES)


SESSIONS: dict[str, Callable[[str], Session]] = {
    "contained": ContainedSession,
    "terminado": TerminadoSession,
    "wetty": WettySession,
}


# --- the figures ---------------------------------------------------------------------------


async def open_sessions(kind: str, url: str, count: int) -> list[Session]:
    """`count` sessions, each at its prompt; opened 10 at a time, as a class arriving."""
    gate = asyncio.Semaphore(10)

    async def one() -> Session:
        async with gate:
            session = SESSIONS[kind.split("@")[0]](url)
            await session.open()
            await session.shell.wait_for(PROMPT, timeout=60)
            return session

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def echo(sessions: list[Session], seconds: float) -> list[float]:
    """Each session types a key every 100-300 ms: human speed."""
    return await echo_latencies([s.shell for s in sessions], seconds, interval=0.2)


async def bulk(session: Session, megabytes: int) -> float:
    """MB/s of output to a client that acknowledges as it receives."""
    shell = session.shell
    since = len(shell.seen)
    # The marker is computed by the shell, so the echoed command line does not match it.
    command = f"{bulk_command(megabytes)}; echo BULK$((6*7))\r"
    began = time.perf_counter()
    await shell.send(command.encode())
    await shell.wait_for(b"BULK42", since, timeout=300)
    took = time.perf_counter() - began
    received = len(shell.seen) - since
    shell.seen.clear()  # megabytes nobody will search again
    return received / took / 1e6


def bare_pty(megabytes: int) -> float:
    """MB/s of the bulk command's output to a reader of its PTY's master, in this process,
    reading as fast as it can: what a terminal hands anyone who relays it, on this host.

    The PTY itself is the bulk figure's ceiling: its master hands over at most 4 KiB a
    read, and each refill waits for a kernel worker to move the next 4 KiB across."""
    master, slave = os.openpty()
    try:
        began = time.perf_counter()
        argv = ["sh", "-c", bulk_command(megabytes)]
        shell = subprocess.Popen(argv, stdout=slave, start_new_session=True)
        os.close(slave)
        received = 0
        with contextlib.suppress(OSError):  # EIO: the writer is gone and all is read
            while chunk := os.read(master, 65536):
                received += len(chunk)
        took = time.perf_counter() - began
        shell.wait()
    finally:
        os.close(master)
    return received / took / 1e6


async def interrupt(session: Session, flood_seconds: float = 2) -> float:
    """Ctrl-C during `yes`, drawn at DRAW_RATE: ms until the prompt is drawn."""
    shell = session.shell
    session.draw_rate = DRAW_RATE
    await shell.send(b"yes\r")
    await asyncio.sleep(flood_seconds)
    since = len(shell.seen)
    began = time.perf_counter()
    await shell.send(b"\x03")
    await shell.wait_for(PROMPT, since, timeout=300)
    took = (time.perf_counter() - began) * 1000
    session.draw_rate = None
    shell.seen.clear()
    return took


async def measure(servers: dict[str, tuple[str, list[int]]], args: argparse.Namespace) -> dict:
    """Every peer's figures, the peers taking turns: each types for a share of `seconds`,
    round after round in an order rotated every round, then each runs its bulk output and
    its Ctrl-C in turn. A VM's host takes time back in stretches of seconds: timed one
    after another, a peer got the noise of its own stretch (p99 moved 2-5 times between
    runs); in turns, a stretch falls on all of them alike. `servers`: name -> (url, the
    server's pids)."""
    names = list(servers)
    sessions = {}
    for name, (url, _) in servers.items():
        sessions[name] = await open_sessions(name, url, args.sessions)
    await asyncio.sleep(1)
    results: dict[str, dict] = {name: {"server_mib": rss_mib(servers[name][1])} for name in names}
    keys: dict[str, list[float]] = {name: [] for name in names}
    cpu = dict.fromkeys(names, 0.0)
    stolen = dict.fromkeys(names, 0.0)
    for _, name in turns(names, ECHO_ROUNDS):
        pids = servers[name][1]
        used, steal = cpu_seconds(pids), steal_ms()
        keys[name] += await echo(sessions[name], args.seconds / ECHO_ROUNDS)
        cpu[name] += cpu_seconds(pids) - used
        stolen[name] += steal_ms() - steal
    for name in names:
        results[name]["echo"] = summary(keys[name])
        # Two servers for ours (Daphne and sandboxd), one for each peer; the shells not counted.
        results[name]["server_cpu_ms_per_key"] = round(cpu[name] * 1000 / len(keys[name]), 3)
        results[name]["host_steal_ms_during_echo"] = round(stolen[name], 1)
        for session in sessions[name][1:]:
            await session.close()
    rates: dict[str, list[float]] = {name: [] for name in [*names, BARE_PTY]}
    for _, name in turns([*names, BARE_PTY], args.repeat):
        if name == BARE_PTY:
            rates[name].append(await asyncio.to_thread(bare_pty, args.bulk_mb))
        else:
            rates[name].append(await bulk(sessions[name][0], args.bulk_mb))
    ceiling = statistics.median(rates[BARE_PTY])
    times: dict[str, list[float]] = {name: [] for name in names}
    for _, name in turns(names, args.repeat):
        times[name].append(await interrupt(sessions[name][0]))
    for name in names:
        rate = statistics.median(rates[name])
        results[name]["bulk_mb_s"] = round(rate, 1)
        results[name]["bare_pty_mb_s"] = round(ceiling, 1)
        results[name]["bulk_of_bare_pty"] = round(rate / ceiling, 2)
        results[name]["ctrl_c_to_prompt"] = {
            "p50_ms": round(statistics.median(times[name]), 1),
            "max_ms": round(max(times[name]), 1),
            "samples": len(times[name]),
        }
        await sessions[name][0].close()
    return results


# Timed by the page itself, from the click event's own time stamp to the first animation
# frame with the prompt in the terminal, and told on the console. The click's moment is
# kept in sessionStorage, so a click that loads a new document is timed the same way. A
# clock in the harness would add Playwright's own work: its click checks (visible, stable
# over two animation frames, hit test) and, waiting on an expression, the script it injects
# into a new document: 60-120 ms here that no learner waits for.
CLICK_TO_PROMPT = """
document.addEventListener("click", (event) => sessionStorage.setItem(
  "clickedAt", String(performance.timeOrigin + event.timeStamp)), {capture: true, once: true});
(function watch() {
  if (window.contained && window.contained.text().includes("# ")) {
    const clicked = Number(sessionStorage.getItem("clickedAt"));
    const now = performance.timeOrigin + performance.now();
    if (clicked) console.log("click-to-prompt", now - clicked);
    return;
  }
  requestAnimationFrame(watch);
})();
"""
# A person types their name, or reads the list of lessons, before they click: the page has
# finished loading by then. 10 keys a second, and a second's look at the list.
TYPING_DELAY_MS = 100
READING_S = 1.0


async def _click_to_prompt(page: Page, selector: str) -> float:
    def told(message: ConsoleMessage) -> bool:
        return message.text.startswith("click-to-prompt")

    async with page.expect_console_message(told, timeout=60_000) as message:
        await page.click(selector)
    return float((await message.value).text.split()[1])


async def browser_clicks(url: str, runs: int) -> dict:
    """Click to prompt in Chromium: a new guest's "Open my terminal", then a lesson's link."""
    from playwright.async_api import async_playwright

    first, lesson = [], []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for run in range(runs):
            context = await browser.new_context()
            await context.add_init_script(CLICK_TO_PROMPT)
            page = await context.new_page()
            await page.goto(f"{url}/terminal/")
            name = page.locator("#display-name")
            await name.press_sequentially(f"Browser {run}", delay=TYPING_DELAY_MS)
            first.append(await _click_to_prompt(page, "text=Open my terminal"))
            await page.goto(f"{url}/")  # the lessons, listed
            await asyncio.sleep(READING_S)
            lesson.append(await _click_to_prompt(page, f"a[href='/lessons/{LESSON}/']"))
            await context.close()
        await browser.close()
    return {
        name: {**summary(times), "p95_ms": round(percentile(times, 95), 3)}
        for name, times in (("new_guest", first), ("lesson_link", lesson))
    }


# --- the servers ---------------------------------------------------------------------------


@contextlib.contextmanager
def contained_serving(
    workdir: Path, sessions: int, repo: Path = REPO, cgroup_parent: str = "contained-bench"
) -> Iterator[tuple[str, list[int]]]:
    """Our site as `make run` has it (SQLite, one Daphne worker) with a sandboxd of its own,
    from the checkout at `repo`."""
    env = {
        **os.environ,
        "CONTAINED_DATA_DIR": str(workdir / "data"),
        "CONTAINED_STATE_DIR": str(workdir / "state"),
        # Each sandboxd of the run its own: one reconciles away what it finds in its parent.
        "CONTAINED_CGROUP_PARENT": cgroup_parent,
        # A directory of its own: sandboxd makes its socket's directory private.
        "SANDBOXD_SOCKET": str(workdir / "run" / "sandboxd.sock"),
        "CONTAINED_MAX_SANDBOXES": str(sessions + 50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "CONTAINED_HTTPS": "0",
        "CONTAINED_LOG_LEVEL": "WARNING",
    }
    site_prepare(env, repo)
    port = free_port()
    with sandboxd_running(env, workdir, repo) as sandboxd:
        daphne = start_daphne(env, port, workdir / "daphne.log", repo)
        try:
            yield f"http://127.0.0.1:{port}", [sandboxd.pid, daphne.pid]
        finally:
            process_stop(daphne)


def shell_command(workdir: Path) -> list[str]:
    """The sandbox's bash as the peers run it on the host: the image's bashrc, no profile."""
    bashrc = image_ensure(workdir / "state") / "etc" / "bash.bashrc"
    return ["bash", "--noprofile", "--rcfile", str(bashrc), "-i"]


@contextlib.contextmanager
def peer_serving(name: str, argv: list[str], workdir: Path) -> Iterator[tuple[str, list[int]]]:
    port = free_port()
    argv = [arg.replace("{port}", str(port)) for arg in argv]
    log = workdir / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    try:
        wait_listening(port, process, log)
        yield f"ws://127.0.0.1:{port}", [process.pid]
    finally:
        process_stop(process)


@contextlib.contextmanager
def contained_at_serving(
    revision: str, workdir: Path, sessions: int
) -> Iterator[tuple[str, list[int]]]:
    """Ours as of `revision`, from a worktree of this checkout, beside ours as it is: the
    paired way to measure a change (bench/README.md, "Keystrokes straight to the PTY")."""
    tree = workdir / "tree"
    git = ["git", "-C", str(REPO)]
    subprocess.run([*git, "worktree", "add", "--detach", str(tree), revision], check=True)
    try:
        site = workdir / "site"
        site.mkdir()
        with contained_serving(site, sessions, tree, "contained-bench-against") as served:
            yield served
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)


def serving(name: str, workdir: Path, sessions: int) -> contextlib.AbstractContextManager:
    if name == "contained":
        return contained_serving(workdir, sessions)
    if name.startswith(AGAINST):
        (workdir / "against").mkdir()
        return contained_at_serving(name.removeprefix(AGAINST), workdir / "against", sessions)
    shell = shell_command(workdir)
    if name == "terminado":
        python = PEERS / ".venv" / "bin" / "python"
        argv = [str(python), str(PEERS / "terminado_server.py"), "{port}", *shell]
    else:
        wetty = PEERS / "node_modules" / ".bin" / "wetty"
        argv = [str(wetty), "--host", "127.0.0.1", "--port", "{port}", "--base", "/wetty/"]
        argv += ["--command", " ".join(shell), "--log-level", "warn"]
    if not Path(argv[0]).exists():
        raise SystemExit(f"{name} is not installed: run `make bench-peers` first")
    return peer_serving(name, argv, workdir)


# --- the run -------------------------------------------------------------------------------


async def run(args: argparse.Namespace, workdir: Path) -> dict:
    report: dict = {"sessions": args.sessions, "seconds": args.seconds}
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(serving(name, workdir, args.sessions)) for name in args.peers
        }
        print(f"measuring {', '.join(args.peers)} in turns ...", file=sys.stderr)
        report["peers"] = await measure(servers, args)
        if "contained" in servers and args.browser_runs:
            report["browser"] = await browser_clicks(servers["contained"][0], args.browser_runs)
    return report


def table(report: dict) -> str:
    peers = report["peers"]
    rows = [
        (f"echo p50 ms ({report['sessions']} sessions)", lambda r: r["echo"]["p50_ms"]),
        (f"echo p99 ms ({report['sessions']} sessions)", lambda r: r["echo"]["p99_ms"]),
        ("bulk MB/s, client not drawing", lambda r: r["bulk_mb_s"]),
        ("Ctrl-C to prompt p50 ms (5 MB/s drawn)", lambda r: r["ctrl_c_to_prompt"]["p50_ms"]),
        ("Ctrl-C to prompt max ms", lambda r: r["ctrl_c_to_prompt"]["max_ms"]),
        ("bulk / a bare PTY reader's, same rounds", lambda r: r["bulk_of_bare_pty"]),
        ("server memory MiB, sessions open", lambda r: r["server_mib"]),
        ("server CPU ms per keystroke echoed", lambda r: r["server_cpu_ms_per_key"]),
        ("host steal ms during its typing", lambda r: r["host_steal_ms_during_echo"]),
    ]
    width = max(12, *(len(name) + 2 for name in peers))
    lines = [f"{'':<42}" + "".join(f"{name:>{width}}" for name in peers)]
    for title, value in rows:
        lines.append(f"{title:<42}" + "".join(f"{value(r):>{width}}" for r in peers.values()))
    if "contained" in peers and len(peers) > 1:
        lines.append("ratios, peer / contained (above 1: contained is better, but bulk: below):")
        for title, value in rows[:5]:
            ours = value(peers["contained"]) or float("nan")
            ratios = [f"{value(r) / ours:.2f}" for r in peers.values()]
            lines.append(f"  {title:<40}" + "".join(f"{x:>{width}}" for x in ratios))
    for figure, f in report.get("browser", {}).items():
        lines.append(
            f"browser click to prompt, {figure.replace('_', ' ')}: p50 {f['p50_ms']:.0f} ms,"
            f" p95 {f['p95_ms']:.0f} ms ({f['samples']} runs)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.terminal_peers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20, help="of typing, for the echo")
    parser.add_argument("--bulk-mb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="bulk and Ctrl-C runs per peer")
    parser.add_argument("--browser-runs", type=int, default=20)
    parser.add_argument(
        "--peers", type=lambda v: v.split(","), default=list(PEER_NAMES), help="comma-separated"
    )
    parser.add_argument(
        "--against",
        metavar="REVISION",
        help="also serve ours as of this git revision, as the peer contained@REVISION, in turns"
        " with the rest: a change measured side by side with what it changes",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if unknown := set(args.peers) - set(PEER_NAMES):
        parser.error(f"unknown peers {sorted(unknown)}; known: {', '.join(PEER_NAMES)}")
    if args.against:
        args.peers.append(AGAINST + args.against)
    workdir = Path(tempfile.mkdtemp(prefix="contained-peers-"))
    workdir.chmod(0o711)  # each sandbox's own root walks through it to its image and files
    try:
        # The clients of every peer on uvloop: 200 of them in one process, on the cores the
        # servers use, should add as little of their own delay as they can. On asyncio's
        # loop, one pair of runs measured the same servers' p99 1-6 ms higher.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            report = runner.run(run(args, workdir))
    except BaseException:
        for log in sorted(workdir.glob("**/*.log")):  # what the servers said, before it goes
            print(f"--- {log.name}:\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2) if args.json else table(report))


if __name__ == "__main__":
    main(sys.argv[1:])
