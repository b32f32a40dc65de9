"""Floods yield to typing: while someone else types, a terminal's output is paced.

A flood costs far more outside its sandbox than in it. Each line `yes` writes to its
terminal is work for the kernel's tty workers (which run in no sandbox's cgroup) and for
both servers' event loops, and that is what every other learner's keystroke waits behind.
On the 2-core reference machine five learners running `yes` among 200 typing raised
everyone's echo p99 from 14 to 60-70 ms; giving the flooding sandboxes the lowest CPU
priority (`cpu.idle`) did not lower it, reading their terminals at 200 KB/s brought it to
16 ms (docs/architecture.md, "Floods yield to typing").

So while another terminal's writer has typed within `WINDOW` seconds, each terminal's
output is read at most `rate` bytes a second past a `BURST`: past that the program blocks on
its full terminal, as it would behind a slow reader, and spends no CPU meanwhile. Alone on
the host a flood runs at full speed. A terminal's own input forgives its debt and lets a
reply through at once (up to `REPLY_BYTES` over its allowance, within `REPLY` seconds), so
the prompt after Ctrl-C comes without waiting; at most once per `WINDOW`, so typing into a
flood cannot keep it unpaced. A flood never owes more than a `BURST`.
"""

from __future__ import annotations

from dataclasses import dataclass

# Output read at once before pacing starts: a long `ls`, a compiler's errors.
BURST = 128 * 1024
# How long a keystroke counts as someone typing: a typist's pauses are shorter.
WINDOW = 2.0
# How long, and how far past its allowance, a terminal's own input lets its output through
# (once per WINDOW): the prompt after Ctrl-C, behind what the PTY still held of the flood
# (its buffers hold about 68 KiB; at 32 KiB the prompt sometimes waited out the debt).
REPLY = 0.25
REPLY_BYTES = 96 * 1024


@dataclass
class Allowance:
    """One terminal's bytes that may still be read at once, as of `stamp`."""

    tokens: float
    stamp: float
    replied: float = float("-inf")  # when its own input last let it read freely


class Pacer:
    """Shared by every terminal of a daemon: who typed last, and each flood's allowance."""

    def __init__(self, rate: int) -> None:
        self.rate = rate  # bytes a second while others type; 0: never paced
        # The two most recent distinct typists, newest first: whoever asks, one of them
        # is the most recent other typist.
        self._typists: list[tuple[object, float]] = []

    def allowance(self, now: float) -> Allowance:
        return Allowance(BURST, now)

    def typed(self, who: object, allowance: Allowance, now: float) -> bool:
        """`who`'s writer sent input: for `WINDOW` seconds, the others' floods are paced.
        True if its debt is forgiven and a reply let through (see REPLY)."""
        others = [entry for entry in self._typists if entry[0] is not who]
        self._typists = [(who, now), *others[:1]]
        if now < allowance.replied + WINDOW:
            return False
        allowance.replied = now
        allowance.tokens, allowance.stamp = max(0.0, self._tokens(allowance, now)), now
        return True

    def gone(self, who: object) -> None:
        """`who` has no writer any more (or has ended): nobody waits for its echo."""
        self._typists = [entry for entry in self._typists if entry[0] is not who]

    def others_typing(self, who: object, now: float) -> bool:
        return any(w is not who and now - at <= WINDOW for w, at in self._typists)

    def delay(self, who: object, allowance: Allowance, read: int, now: float) -> float:
        """Seconds before `who` may read again, after reading `read` bytes at `now`."""
        if not self._paced(who, now):
            allowance.tokens, allowance.stamp = BURST, now
            return 0.0
        allowance.tokens = max(-BURST, self._tokens(allowance, now) - read)
        allowance.stamp = now
        replying = now < allowance.replied + REPLY and allowance.tokens > -REPLY_BYTES
        if allowance.tokens >= 0 or replying:
            return 0.0
        return -allowance.tokens / self.rate

    def _paced(self, who: object, now: float) -> bool:
        return self.rate > 0 and self.others_typing(who, now)

    def _tokens(self, allowance: Allowance, now: float) -> float:
        return min(BURST, allowance.tokens + (now - allowance.stamp) * self.rate)
