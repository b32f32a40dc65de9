"""Host id blocks: each sandbox's root is a different unprivileged host uid and gid.

Every sandbox borrows a block for its lifetime: a learner's persistent files keep the ids
they have inside (volumes.py), so they need no block of their own. A block is claimed by
creating its claim, a symlink whose target names the owner: `symlink` fails if the name
exists, so two processes can never hand out the same one, and a claim changes hands in
one rename. (Replacing a regular file by a rename makes ext4 flush the new one first:
0.26 ms here, on the path of every start, against 0.03 ms for a symlink, which has no
data block. Claims made as files by earlier versions are still read.)
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import time
from pathlib import Path

from .runstate import run_dir
from .spec import ID_BLOCK

# Blocks 1..FIRST_BLOCK-1 are left to the host (systemd, rootless containers use them).
FIRST_BLOCK = 16
LAST_BLOCK = 2**31 // ID_BLOCK - 1


class IdsExhausted(RuntimeError):
    pass


def _dir(state_dir: Path) -> Path:
    path = run_dir(state_dir) / "ids"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ids_borrow(state_dir: Path, owner: str) -> int:
    """A block for `owner` (`borrower(sandbox)`, `spare_owner(spare)`). The search starts
    at a random block: with a few hundred held out of 32,000, it makes one claim, or two,
    whatever is held where."""
    directory = _dir(state_dir)
    blocks = range(FIRST_BLOCK, LAST_BLOCK + 1)
    start = secrets.randbelow(len(blocks))
    for block in itertools.chain(blocks[start:], blocks[:start]):
        try:
            os.symlink(owner, directory / f"block-{block}")
        except FileExistsError:
            continue
        return block * ID_BLOCK
    raise IdsExhausted("no free host id block is left")


def _owner(claim: Path) -> str:
    """Who holds a claim; FileNotFoundError if nobody does."""
    try:
        return os.readlink(claim)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return claim.read_text()  # a claim made as a file by an earlier version


def release_ids(state_dir: Path, base: int, owner: str | None = None) -> None:
    """Free a block; with `owner` ("sandbox:NAME"), only if that is still who holds it, so
    a second release can never free the claim of whoever took the block next."""
    path = _dir(state_dir) / f"block-{base // ID_BLOCK}"
    if owner is not None:
        try:
            if _owner(path) != owner:
                return
        except FileNotFoundError:
            return
    path.unlink(missing_ok=True)


def ids_reown(state_dir: Path, base: int, owner: str, new_owner: str) -> None:
    """Hand `owner`'s block to `new_owner` (a spare's to the sandbox that took it). The
    claim is replaced in one rename: the block is never free meanwhile."""
    path = _dir(state_dir) / f"block-{base // ID_BLOCK}"
    try:
        held = _owner(path) == owner
    except FileNotFoundError:
        held = False
    if not held:
        raise IdsExhausted(f"host id block {base} is no longer {owner}'s")
    # Random: symlink() fails on a name left by a process that died here.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    os.symlink(new_owner, tmp)
    os.rename(tmp, path)


def borrower(sandbox: str) -> str:
    return f"sandbox:{sandbox}"


def spare_owner(spare: str) -> str:
    return f"spare:{spare}"


def learner_blocks_release(state_dir: Path) -> list[int]:
    """Free the blocks that learners kept for good in earlier versions ("learner:" claims,
    and their `learner-<id>` records). Their files no longer hold those ids, or will not
    by the time a sandbox mounts them (volumes.py), and only root may reach them on the
    host, so a sandbox may run as those ids again."""
    for path in _dir(state_dir).glob("learner-*"):
        path.unlink(missing_ok=True)
    kept = borrowed_blocks(state_dir, kind="learner")
    for learner, base in kept.items():
        release_ids(state_dir, base, f"learner:{learner}")
    return list(kept.values())


def borrowed_blocks(state_dir: Path, min_age: float = 0, kind: str = "sandbox") -> dict[str, int]:
    """Name -> base of every block borrowed at least `min_age` seconds ago by a sandbox
    (or, with `kind="spare"`, for a spare)."""
    found = {}
    now = time.time()
    for path in _dir(state_dir).glob("block-*"):
        try:
            owner = _owner(path)
            if now - path.lstat().st_mtime < min_age:
                continue
        except FileNotFoundError:
            continue
        if owner.startswith(f"{kind}:"):
            found[owner.removeprefix(f"{kind}:")] = int(path.name.removeprefix("block-")) * ID_BLOCK
    return found
