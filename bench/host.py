"""What the machine itself did during a measurement."""

from __future__ import annotations

import os
from pathlib import Path


def steal_ms() -> float:
    """Time the host has taken back from this VM since boot (0 on bare metal): a VM's
    neighbours take it in stretches of seconds, and whatever runs then is slower."""
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    ticks = int(cpu[8]) if len(cpu) > 8 else 0
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")
