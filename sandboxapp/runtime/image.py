"""The default image: the host's own /usr (read-only, shared) plus a generated /etc.

It needs no download. The image directory is the lower layer of the sandbox's root
overlay; /usr gets an overlay of its own whose lower layer is the host's /usr, so a
learner can install into /usr/local without touching the host.

Where the host's /usr cannot be idmapped (overlayfs, the root of a Docker container),
`usr_ensure` keeps a copy of it in the state directory instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

# Filesystems that refuse MOUNT_ATTR_IDMAP on kernels we support.
_NOT_IDMAPPABLE = {"overlay", "fuse.fuse-overlayfs", "aufs"}
_USR_STAMP = ".contained-usr-stamp"

# Bump when the generated content changes: images are rebuilt on next use.
IMAGE_VERSION = "5"
_MARKER = ".contained-image"

# Host files the sandbox's programs need to run at all (the dynamic loader's cache,
# Debian's alternatives links) or to behave as on any Debian machine.
_COPIED_FROM_HOST = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "localtime",
    "inputrc",
    "terminfo",
    "protocols",
    "services",
    "ethertypes",
    "iproute2",
    "os-release",
    "debian_version",
    "login.defs",
    "mime.types",
)

_PASSWD = """\
root:x:0:0:root:/root:/bin/bash
learner:x:1000:1000:Learner:/home/learner:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""

_GROUP = """\
root:x:0:
tty:x:5:
learner:x:1000:
nogroup:x:65534:
"""

_PROFILE = """\
# /etc/profile for a Contained sandbox.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8
if [ -n "$BASH_VERSION" ] && [ -f /etc/bash.bashrc ]; then . /etc/bash.bashrc; fi
for f in /etc/profile.d/*.sh; do [ -r "$f" ] && . "$f"; done
unset f
"""

_BASHRC = r"""# Interactive shells in a Contained sandbox.
[ -z "$PS1" ] && return
shopt -s checkwinsize histappend
HISTSIZE=5000
alias ls='ls --color=auto' grep='grep --color=auto'
PS1='\[\e[1;32m\]\u@\h\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ '
"""

_WELCOME = r"""# Printed once per login shell.
if [ -n "$PS1" ] && [ -z "$CONTAINED_QUIET" ]; then
  echo "Your own sandbox: you are root here, and only here. Nothing you do can touch the host"
  echo "or another learner. Try: hostname, ps aux, ls -l /proc/\$\$/ns"
fi
"""

# The skeleton of a root filesystem. Mount points stay empty; /usr is an overlay.
_DIRS = {
    "usr": 0o755,
    "etc": 0o755,
    "etc/profile.d": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "dev": 0o755,
    "tmp": 0o1777,
    "run": 0o755,
    "root": 0o700,
    "home": 0o755,
    "home/learner": 0o755,
    "var": 0o755,
    "var/tmp": 0o1777,
    "var/lib": 0o755,
    "var/log": 0o755,
    "mnt": 0o755,
    "opt": 0o755,
    "srv": 0o755,
}


def image_dir(state_dir: Path, name: str = "default") -> Path:
    return state_dir / "images" / name


def image_ensure(state_dir: Path, name: str = "default") -> Path:
    """Build the image if it is missing or outdated; return its directory."""
    target = image_dir(state_dir, name)
    marker = target / _MARKER

    def ready() -> bool:
        try:  # another builder may be swapping it in right now
            return marker.read_text() == IMAGE_VERSION
        except OSError:
            return False

    if ready():
        return target
    if name != "default":
        raise FileNotFoundError(f"image {name!r} does not exist (only 'default' is built here)")
    return _swap_in(target, _build_default, ready)


def _swap_in(target: Path, fill: Callable[[Path], None], ready: Callable[[], bool]) -> Path:
    """Fill a directory beside `target`, then swap it in: a crash never leaves half of one.
    One builder at a time (threads or processes): the first sandboxes of a fresh install
    start together, and the others then find it `ready`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return target
        build = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            fill(build)
            build.chmod(0o755)
            old = target.with_name(f".{target.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            build.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return target


def _build_default(root: Path) -> None:
    for rel, mode in _DIRS.items():
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
    # Debian's merged /usr: the top-level program and library dirs are links into it.
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink(f"/{link}"):
            os.symlink(os.readlink(f"/{link}"), root / link)
    etc = root / "etc"
    for name in _COPIED_FROM_HOST:
        source = Path("/etc") / name
        if source.is_symlink():
            os.symlink(os.readlink(source), etc / name)
        elif source.is_dir():
            shutil.copytree(source, etc / name, symlinks=True)
        elif source.is_file():
            shutil.copy2(source, etc / name)
    files = {
        "passwd": _PASSWD,
        "group": _GROUP,
        "shells": "/bin/sh\n/bin/bash\n/usr/bin/bash\n",
        "profile": _PROFILE,
        "bash.bashrc": _BASHRC,
        "profile.d/contained-welcome.sh": _WELCOME,
        "resolv.conf": "# This sandbox has no network beyond its own loopback.\n",
    }
    for rel, text in files.items():
        (etc / rel).write_text(text)
    # On disk as uid 1000: through the sandbox's id map, the learner user owns their home.
    os.chown(root / "home" / "learner", 1000, 1000)
    (root / _MARKER).write_text(IMAGE_VERSION)


def usr_ensure(state_dir: Path, source: Path = Path("/usr")) -> Path:
    """The /usr every sandbox sees: `source` itself, or a copy where it cannot be idmapped.

    Each sandbox sees /usr through an idmapped mount. overlayfs does not support one, and
    the root of a container is an overlay, so there `source` is copied once to the state
    directory, and copied again whenever its stamp changes (the image was upgraded).
    """
    if _fstype(source) not in _NOT_IDMAPPABLE:
        return source
    target = state_dir / "usr"
    stamp = _tree_stamp(source)
    marker = target / _USR_STAMP

    def ready() -> bool:
        try:
            return marker.read_text() == stamp
        except OSError:
            return False

    if ready():
        return target

    def copy(build: Path) -> None:
        # cp -a keeps owners, modes, links and hard links; reflinks where the filesystem can.
        subprocess.run(
            ["cp", "-a", "--reflink=auto", f"{source}/.", str(build)],
            check=True,
            capture_output=True,
        )
        (build / _USR_STAMP).write_text(stamp)

    return _swap_in(target, copy, ready)


def _fstype(path: Path) -> str:
    """The filesystem type of the mount holding `path` (the longest matching mount point)."""
    best, fstype = "", ""
    resolved = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[4]
            after = fields.index("-")
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, fstype = point, fields[after + 1]
    return fstype


def _tree_stamp(source: Path) -> str:
    """Names, sizes and times two levels deep: a package install renames files into these
    directories, so an upgraded image changes the stamp."""
    digest = hashlib.sha256()
    for top in sorted(os.scandir(source), key=lambda entry: entry.name):
        entries = [top]
        if top.is_dir(follow_symlinks=False):
            entries += sorted(os.scandir(top.path), key=lambda entry: entry.name)
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            digest.update(f"{entry.path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()
