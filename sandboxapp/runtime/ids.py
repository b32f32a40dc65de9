"""Host id blocks: each sandbox's root is a different unprivileged host uid and gid.

A learner keeps one block for good (their persistent files are owned by it); a throwaway
sandbox borrows a block for its lifetime. A block is claimed by creating its file with
O_EXCL, so two processes can never hand out the same one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Container
from pathlib import Path

from .spec import ID_BLOCK

# Blocks 1..FIRST_BLOCK-1 are left to the host (systemd, rootless containers use them).
FIRST_BLOCK = 16
LAST_BLOCK = 2**31 // ID_BLOCK - 1


class IdsExhausted(RuntimeError):
    pass


def _dir(state_dir: Path) -> Path:
    path = state_dir / "ids"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _claim(directory: Path, owner: str, blocks: range, taken: Container[str] = ()) -> int:
    for block in blocks:
        if f"block-{block}" in taken:
            continue
        try:
            fd = os.open(directory / f"block-{block}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.write(fd, owner.encode())
        os.close(fd)
        return block * ID_BLOCK
    raise IdsExhausted("no free host id block is left")


def ids_for_learner(state_dir: Path, learner: str) -> int:
    """The learner's permanent block, claimed on first use."""
    directory = _dir(state_dir)
    record = directory / f"learner-{learner}"
    try:
        return int(record.read_text())
    except FileNotFoundError:
        pass
    owner = f"learner:{learner}"
    try:
        base = _claim(directory, owner, range(_end_of_learners(directory), LAST_BLOCK + 1))
    except IdsExhausted:
        # Only the holes forgotten learners left: one listing rather than one failed
        # open per block held.
        taken = set(os.listdir(directory))
        base = _claim(directory, owner, range(FIRST_BLOCK, LAST_BLOCK + 1), taken)
    tmp = record.with_name(f".{record.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(str(base))
    try:
        os.link(tmp, record)
    except FileExistsError:
        # Another process claimed one for this learner at the same time: keep theirs.
        release_ids(state_dir, base, f"learner:{learner}")
        base = int(record.read_text())
    finally:
        tmp.unlink(missing_ok=True)
    return base


def _end_of_learners(directory: Path) -> int:
    """Where the learners' blocks end, found by bisection in about fifteen stats.

    Learners fill the blocks from the bottom up and keep them for good, so a host holds
    one for every learner it ever had: listing them all took milliseconds. Borrowers
    sit at the top, and a forgotten learner leaves a hole; either may mislead the
    bisection, which then lands on another free block or, at worst, past the last one.
    """
    low, high = FIRST_BLOCK, LAST_BLOCK + 1
    while low < high:
        middle = (low + high) // 2
        if (directory / f"block-{middle}").exists():
            low = middle + 1
        else:
            high = middle
    return low


def ids_borrow(state_dir: Path, sandbox: str) -> int:
    """A block for a throwaway sandbox's lifetime. Borrowers take blocks from the top,
    where only other borrowers are, so this opens one file or a few, and lists nothing."""
    return _claim(_dir(state_dir), borrower(sandbox), range(LAST_BLOCK, FIRST_BLOCK - 1, -1))


def release_ids(state_dir: Path, base: int, owner: str | None = None) -> None:
    """Free a block; with `owner` ("sandbox:NAME"), only if that is still who holds it, so
    a second release can never free the claim of whoever took the block next."""
    path = _dir(state_dir) / f"block-{base // ID_BLOCK}"
    if owner is not None:
        try:
            if path.read_text() != owner:
                return
        except FileNotFoundError:
            return
    path.unlink(missing_ok=True)


def borrower(sandbox: str) -> str:
    return f"sandbox:{sandbox}"


def borrowed_blocks(state_dir: Path, min_age: float = 0) -> dict[str, int]:
    """sandbox name -> base of every block borrowed at least `min_age` seconds ago."""
    found = {}
    now = time.time()
    for path in _dir(state_dir).glob("block-*"):
        try:
            owner = path.read_text()
            if now - path.stat().st_mtime < min_age:
                continue
        except FileNotFoundError:
            continue
        if owner.startswith("sandbox:"):
            found[owner.removeprefix("sandbox:")] = int(path.name.removeprefix("block-")) * ID_BLOCK
    return found


def ids_forget(state_dir: Path, learner: str) -> None:
    """Free the learner's permanent block (after their files are deleted for good)."""
    record = _dir(state_dir) / f"learner-{learner}"
    try:
        base = int(record.read_text())
    except FileNotFoundError:
        return
    release_ids(state_dir, base, f"learner:{learner}")
    record.unlink(missing_ok=True)
