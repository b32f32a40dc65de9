"""Recorded terminal sessions: where they are written, and reading a learner's own back.

A session of sandbox `S` opened at a given second is `S-YYYYmmddTHHMMSS.cast` in the
recordings directory; a learner's sandboxes are `learner` and `learner--node`. A name is
accepted only if it parses as one of that learner's own, so a request can never reach another
learner's recording or any other file.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

STAMP = "%Y%m%dT%H%M%S"
CHUNK_MAX = 1024 * 1024


class RecordingError(ValueError):
    pass


def recording_path(directory: Path, sandbox: str) -> Path:
    return directory / f"{sandbox}-{time.strftime(STAMP)}.cast"


def _pattern(learner: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(learner)}(?:--([a-z][a-z0-9]*))?-(\d{{8}}T\d{{6}})\.cast")


def recordings_of(directory: Path, learner: str) -> list[dict]:
    """The learner's recordings, newest first: name, node, start time and size."""
    pattern = _pattern(learner)
    found = []
    for path in directory.glob(f"{learner}*.cast") if directory.is_dir() else []:
        match = pattern.fullmatch(path.name)
        if match is None:
            continue  # another learner whose id starts like this one's
        node, stamp = match.groups()
        started = time.strftime("%Y-%m-%dT%H:%M:%S", time.strptime(stamp, STAMP))
        found.append(
            {"name": path.name, "node": node, "started": started, "bytes": path.stat().st_size}
        )
    return sorted(found, key=lambda r: r["started"], reverse=True)


def recordings_delete(directory: Path, learner: str) -> list[str]:
    """Delete every recording of the learner (a learner forgotten for good); their names."""
    deleted = []
    for recording in recordings_of(directory, learner):
        (directory / recording["name"]).unlink(missing_ok=True)
        deleted.append(recording["name"])
    return deleted


def recording_read(directory: Path, learner: str, name: str, offset: int) -> tuple[bytes, int]:
    """Up to CHUNK_MAX bytes of one of the learner's recordings from `offset`, and its size."""
    if not isinstance(name, str) or not _pattern(learner).fullmatch(name):
        raise RecordingError("no such recording of this learner")
    try:
        with open(directory / name, "rb") as f:
            size = f.seek(0, 2)
            f.seek(offset)
            return f.read(CHUNK_MAX), size
    except FileNotFoundError:
        raise RecordingError("no such recording of this learner") from None
