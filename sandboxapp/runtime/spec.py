"""SandboxSpec: what one sandbox is, as validated data, before anything is created."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Ids end up in cgroup names, mount paths and hostnames: keep them boring.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# Each sandbox's root maps to its own block of host ids (see docs/security-model.md).
ID_BLOCK = 65536


class SpecError(ValueError):
    """A spec that cannot describe a safe sandbox; the message says which field and why."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 256 * 1024 * 1024
    pids: int = 256
    # Fraction of one CPU the whole sandbox may use (1.0 = one full core).
    cpus: float = 1.0
    disk_bytes: int = 512 * 1024 * 1024

    def validate(self) -> None:
        if not 16 * 1024 * 1024 <= self.memory_bytes <= 64 * 1024**3:
            raise SpecError("memory must be between 16 MiB and 64 GiB")
        if not 16 <= self.pids <= 65536:
            raise SpecError("pids must be between 16 and 65536")
        if not 0.01 <= self.cpus <= 64:
            raise SpecError("cpus must be between 0.01 and 64")
        if not 1024 * 1024 <= self.disk_bytes <= 1024**4:
            raise SpecError("disk must be between 1 MiB and 1 TiB")


@dataclass(frozen=True)
class SandboxSpec:
    """One sandbox. `name` is unique on the host; `learner` (and `node`) own its files.

    Which host ids it runs as is the runtime's choice (`Sandbox.uid_base`), not the spec's.
    """

    name: str
    hostname: str = ""
    learner: str | None = None
    # One of a learner's several nodes (`web`, `db`): each node keeps files of its own.
    node: str | None = None
    limits: Limits = field(default_factory=Limits)
    image: str = "default"

    def validate(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise SpecError(f"sandbox name {self.name!r}: use a-z, 0-9 and '-', 1-63 chars")
        if self.learner is not None and not _NAME_RE.fullmatch(self.learner):
            raise SpecError(f"learner id {self.learner!r}: use a-z, 0-9 and '-', 1-63 chars")
        if self.node is not None and (self.learner is None or not _NAME_RE.fullmatch(self.node)):
            raise SpecError(f"node {self.node!r} needs a learner and a plain name")
        if not _NAME_RE.fullmatch(self.image):
            raise SpecError(f"image name {self.image!r} is not a plain name")
        if self.hostname and not _NAME_RE.fullmatch(self.hostname):
            raise SpecError(f"hostname {self.hostname!r} is not a plain name")
        self.limits.validate()

    @property
    def volume(self) -> str | None:
        """Whose persistent files this sandbox uses; '.' never occurs in a learner id."""
        if self.learner is None:
            return None
        return f"{self.learner}.{self.node}" if self.node else self.learner

    @property
    def effective_hostname(self) -> str:
        return self.hostname or self.name


def parse_size(text: str) -> int:
    """'256M' -> bytes. Accepts K, M, G, T suffixes (binary) or a plain byte count."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise SpecError(f"cannot read size {text!r}: use e.g. 512M or 2G")
    number, unit = int(match.group(1)), match.group(2).upper()
    return number * 1024 ** " KMGT".index(unit or " ")
