"""Measuring on a busy host: what it took back, and turns so that it falls on all alike."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def steal_ms() -> float:
    """Time the host has taken back from this VM since boot (0 on bare metal): a VM's
    neighbours take it in stretches of seconds, and whatever runs then is slower."""
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    ticks = int(cpu[8]) if len(cpu) > 8 else 0
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def turns(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name) for every name once a round, the order rotated each round: timed in
    blocks, each of several peers would get the noise of its own stretch of the hour."""
    for turn in range(rounds):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            yield turn, name
