"""At start-up, remove what a crashed run left behind.

A sandbox's init dies with its owner (its control socket closes), and the kernel then frees its
namespaces. What the kernel does not free is ours to clean: the cgroups, the learner's
mounted layer, the borrowed id block and the state directory. A sandbox counts as live
only if both its init and its owner are the very processes recorded (pid plus start time,
so a reused pid never keeps a stale sandbox "alive").
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field

from . import ids, network, volumes
from . import syscalls as sc
from .cgroups import SPARE_PREFIX, SandboxCgroup, spare_owner_alive
from .sandbox import (
    RuntimeConfig,
    SandboxState,
    cgroup_backend,
    is_recorded_process,
    rundir_of,
    sandbox_names,
    state_read,
)

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    removed_sandboxes: list[str] = field(default_factory=list)
    removed_cgroups: list[str] = field(default_factory=list)
    unmounted_volumes: list[str] = field(default_factory=list)
    freed_id_blocks: list[int] = field(default_factory=list)
    deleted_links: list[str] = field(default_factory=list)
    removed_spares: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)


def kill_recorded(pid: int, start_time: int) -> None:
    """SIGKILL `pid` only if it is still the process recorded (pinned by a pidfd first,
    so the check and the kill name the same process), and quietly if it just exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if is_recorded_process(pid, start_time):
            sc.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)


def _live(state: SandboxState) -> bool:
    return is_recorded_process(state.owner_pid, state.owner_start_time) and is_recorded_process(
        state.init_pid, state.init_start_time
    )


def reconcile(config: RuntimeConfig) -> ReconcileReport:
    report = ReconcileReport()
    live_volumes: set[str] = set()
    known: set[str] = set()
    for name in sandbox_names(config):
        rundir = rundir_of(config, name)
        known.add(name)
        state = state_read(config, name)
        if state is not None and _live(state):
            report.live.append(name)
            if state.volume:
                live_volumes.add(state.volume)
            continue
        if state is not None:
            # Its owner is gone but the init may not be (it should have followed): end it.
            kill_recorded(state.init_pid, state.init_start_time)
        # A directory without state is a creation that never finished: its creator either
        # is still at work (young directory) or died.
        if state is None and _young(rundir):
            report.live.append(name)
            continue
        _remove(config, name)
        report.removed_sandboxes.append(name)
    report.removed_cgroups = _orphan_cgroups(config, known)
    for volume in volumes.volume_mounted(config.state_dir):
        # A volume being set up for a sandbox still starting is locked by its creator.
        if volume not in live_volumes and volumes.volume_release_if_unused(
            config.state_dir, volume
        ):
            report.unmounted_volumes.append(volume)
    # A block is borrowed just before its sandbox's directory exists: spare young ones.
    for sandbox, block_base in ids.borrowed_blocks(config.state_dir, min_age=60).items():
        if sandbox not in report.live:
            ids.release_ids(config.state_dir, block_base, ids.borrower(sandbox))
            report.freed_id_blocks.append(block_base)
    report.freed_id_blocks += ids.learner_blocks_release(config.state_dir)
    # A spare's block is its asker's until a sandbox takes it.
    for spare, block_base in ids.borrowed_blocks(config.state_dir, kind="spare").items():
        if not spare_owner_alive(spare):
            ids.release_ids(config.state_dir, block_base, ids.spare_owner(spare))
            report.freed_id_blocks.append(block_base)
    report.removed_spares = volumes.volume_spares_tidy(config.state_dir)
    # veth ends still in the host's namespace: a crash between making and moving them.
    report.deleted_links = network.leftover_veths()
    network.delete_links(report.deleted_links)
    return report


def _remove(config: RuntimeConfig, name: str) -> None:
    SandboxCgroup(cgroup_backend(), config.cgroup_parent, name).destroy()
    shutil.rmtree(rundir_of(config, name), ignore_errors=True)
    log.info("reconcile: removed leftover sandbox %s", name)


def reconcile_one(config: RuntimeConfig, name: str) -> None:
    """Remove one sandbox whose owner is gone or whose init was just killed."""
    state = state_read(config, name)
    _remove(config, name)
    if state is not None and state.volume:
        volumes.volume_release_if_unused(config.state_dir, state.volume)
    if state is not None:
        ids.release_ids(config.state_dir, state.uid_base, ids.borrower(name))


def _young(path: os.PathLike[str], seconds: float = 60.0) -> bool:
    try:
        return time.time() - os.stat(path).st_mtime < seconds
    except FileNotFoundError:
        return False


def _orphan_cgroups(config: RuntimeConfig, known: set[str]) -> list[str]:
    """Sandbox cgroups under our parent whose state directory is gone."""
    removed = []
    for hierarchy in cgroup_backend().hierarchies:
        parent = hierarchy.mountpoint / config.cgroup_parent.strip("/")
        if not parent.is_dir():
            continue
        for entry in parent.iterdir():
            if entry.name.startswith(SPARE_PREFIX) and spare_owner_alive(entry.name):
                continue  # a running sandboxd's or runtime's spare, soon someone's sandbox
            if entry.is_dir() and entry.name not in known and entry.name not in removed:
                SandboxCgroup(cgroup_backend(), config.cgroup_parent, entry.name).destroy()
                removed.append(entry.name)
    return removed
