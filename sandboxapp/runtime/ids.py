"""Host id blocks: each sandbox's root is a different unprivileged host uid and gid.

Every sandbox borrows a block for its lifetime: a learner's persistent files keep the ids
they have inside (volumes.py), so they need no block of their own. A block is claimed by
creating its claim, a symlink whose target names the owner: `symlink` fails if the name
exists, so two processes can never hand out the same one, and a claim changes hands in
one rename. (Replacing a regular file by a rename makes ext4 flush the new one first:
0.26 ms here, on the path of every start, against 0.03 ms for a symlink, which has no
data block. Claims made as files by earlier versions are still read.)

Those claims are the state directory's own, and a host may have more than one (a second
site, the test suite's, a bench's). So each block is also claimed for the host, in one
directory they all share (`/run/contained-ids`, or `CONTAINED_HOST_IDS`): a symlink naming
the state directory. A block whose host claim names another state directory is skipped,
unless that directory no longer holds the block (its owner died before giving it back, or
the host rebooted), in which case the claim is taken over. Whether it does is read from its
tmpfs: only runtimes that share the host's mount namespace can share these claims.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from .runstate import run_dir, run_path
from .spec import ID_BLOCK

# Blocks 1..FIRST_BLOCK-1 are left to the host (systemd, rootless containers use them).
FIRST_BLOCK = 16
LAST_BLOCK = 2**31 // ID_BLOCK - 1
HOST_CLAIMS_ENV = "CONTAINED_HOST_IDS"
HOST_CLAIMS = Path("/run/contained-ids")


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
    host = host_dir()
    mine = _name(state_dir)
    blocks = range(FIRST_BLOCK, LAST_BLOCK + 1)
    start = secrets.randbelow(len(blocks))
    for block in itertools.chain(blocks[start:], blocks[:start]):
        claim = directory / f"block-{block}"
        try:
            os.symlink(owner, claim)
        except FileExistsError:
            continue
        try:
            held = _host_claim(host, block, mine)
        except BaseException:
            claim.unlink()
            raise
        if held:
            return block * ID_BLOCK
        claim.unlink()  # another state directory on this host holds it
    raise IdsExhausted("no free host id block is left")


# -- the host's claims -------------------------------------------------------------------
# A host claim is made only where none is (`symlink`), and changed or removed only under
# the host's lock: so a claim cannot change between being looked at and being taken over.


def host_dir() -> Path:
    """The directory every state directory on this host claims its blocks in as well."""
    path = Path(os.environ.get(HOST_CLAIMS_ENV) or HOST_CLAIMS)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _name(state_dir: Path) -> str:
    """What a host claim names: the state directory, however it was reached."""
    return os.path.realpath(state_dir)


@contextlib.contextmanager
def _locked(host: Path) -> Iterator[None]:
    with open(host / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _host_claim(host: Path, block: int, mine: str) -> bool:
    """Claim `block` on the host for the state directory named `mine`, which holds it
    already: True if it is now that state directory's."""
    path = host / f"block-{block}"
    try:
        os.symlink(mine, path)
        return True
    except FileExistsError:
        pass
    with _locked(host):
        try:
            holder = os.readlink(path)
        except FileNotFoundError:
            # Given back meanwhile; another borrower may be making it again, unlocked.
            try:
                os.symlink(mine, path)
                return True
            except FileExistsError:
                return False
        if holder == mine:
            return True  # ours, left by a crash or from before a reboot
        if _holds(Path(holder), block):
            return False
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        os.symlink(mine, tmp)
        os.rename(tmp, path)
        return True


def _holds(state_dir: Path, block: int) -> bool:
    """Whether `state_dir` (another process's: looked at, never mounted) claims `block`."""
    return os.path.lexists(run_path(state_dir) / "ids" / f"block-{block}")


def _host_release(block: int, state_dir: Path) -> None:
    """Give the host claim back if it is `state_dir`'s."""
    host = host_dir()
    path = host / f"block-{block}"
    with _locked(host):
        try:
            if os.readlink(path) == _name(state_dir):
                path.unlink()
        except FileNotFoundError:
            pass


def host_claims_release(state_dir: Path) -> None:
    """Give back every host claim of `state_dir`, for whoever removes a state directory of
    its own (a bench's, a test session's) with whatever its sandboxes left claimed."""
    host = host_dir()
    mine = _name(state_dir)
    with _locked(host):
        for entry in os.scandir(host):
            # Also a takeover's temporary link, left by a process killed before its rename.
            if "block-" in entry.name:
                with contextlib.suppress(OSError):
                    if os.readlink(entry.path) == mine:
                        os.unlink(entry.path)


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
    block = base // ID_BLOCK
    path = _dir(state_dir) / f"block-{block}"
    if owner is not None:
        try:
            if _owner(path) != owner:
                return
        except FileNotFoundError:
            return
    _host_release(block, state_dir)
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
