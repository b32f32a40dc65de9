"""Capabilities, no_new_privs and seccomp for every process started in a sandbox.

The learner's root keeps what the lessons need (namespaces, mounts, networking in
its own namespaces) and loses what only touches the host. The kernel already limits
a user namespace's root to objects that namespace owns; these are a second wall.
"""

from __future__ import annotations

import errno
import functools
import tempfile

from . import syscalls

# Capability numbers (linux/capability.h) kept in the bounding set, each with its reason.
KEPT_CAPABILITIES = {
    0: "CHOWN: own files in the sandbox",
    1: "DAC_OVERRIDE: root reads and writes any file it owns in the sandbox",
    2: "DAC_READ_SEARCH: likewise for directories",
    3: "FOWNER: chmod and utimes on sandbox files",
    4: "FSETID: keep set-id bits when editing sandbox files",
    5: "KILL: signal any process in the sandbox",
    6: "SETGID: switch to the learner user and back",
    7: "SETUID: likewise (su learner)",
    8: "SETPCAP: drop capabilities in lesson 9",
    10: "NET_BIND_SERVICE: serve on port 80 inside",
    11: "NET_BROADCAST: as any root in its own network namespace",
    12: "NET_ADMIN: veths, addresses and routes in the learner's own netns",
    13: "NET_RAW: ping, and the lesson that drops it",
    14: "IPC_LOCK: mlock, bounded by the memory cgroup",
    15: "IPC_OWNER: SysV IPC in the learner's IPC namespaces",
    18: "SYS_CHROOT: chroot and pivot_root lessons",
    19: "SYS_PTRACE: strace your own processes",
    21: "SYS_ADMIN: unshare, setns and mount inside the sandbox",
    27: "MKNOD: overlay whiteouts in lesson 10",
    28: "LEASE: file leases",
    29: "AUDIT_WRITE: login tools",
    31: "SETFCAP: write a uid_map that maps root in a nested user namespace",
}
LAST_CAP = 40
KEPT_MASK = sum(1 << cap for cap in KEPT_CAPABILITIES)

# System calls that no lesson needs and that reach kernel-global state or have a long
# record of privilege-escalation bugs. Namespace, mount and clone calls stay allowed.
BLOCKED_SYSCALLS = (
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "add_key",
    "request_key",
    "keyctl",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "adjtimex",
    "syslog",
    "acct",
    "swapon",
    "swapoff",
    "open_by_handle_at",
    "iopl",
    "ioperm",
    "uselib",
    "lookup_dcookie",
    "fanotify_init",
    "quotactl",
)
# ioctls that push input into a terminal or drive the console: another process's tty.
TIOCSTI = 0x5412
TIOCLINUX = 0x541C


@functools.cache
def seccomp_program() -> bytes:
    """The seccomp filter compiled once to classic BPF, in the zygote before it forks any
    spare, so that each spare's init only loads bytes."""
    import pyseccomp

    allow_errno = pyseccomp.ERRNO(errno.EPERM)
    flt = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in BLOCKED_SYSCALLS:
        try:
            flt.add_rule(allow_errno, name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a syscall on this architecture
    for request in (TIOCSTI, TIOCLINUX):
        flt.add_rule(
            allow_errno, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, 0xFFFFFFFF, request)
        )
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def harden_current_process() -> None:
    """The init's side, once it has joined the learner's user namespace (which gave it a
    full bounding set): bounding set, ambient set, capabilities, no_new_privs. The seccomp
    filter is loaded earlier (child.py)."""
    for cap in range(LAST_CAP + 1):
        if cap not in KEPT_CAPABILITIES:
            try:
                syscalls.prctl(syscalls.PR_CAPBSET_DROP, cap)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: cap unknown to this kernel
                    raise
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    syscalls.capset(KEPT_MASK, KEPT_MASK, 0)
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
