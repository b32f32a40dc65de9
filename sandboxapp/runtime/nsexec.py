"""Run a little Python in one namespace of a process, from a short-lived helper.

The helper is forked from the host side, joins the one namespace with setns, does its read
or its change, and reports back as JSON: the caller's own namespaces never change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from . import syscalls as sc


def in_namespace(pid: int, nstype: int, read: Callable[[], object]) -> object:
    """Run `read` in a short-lived child that has joined one namespace of `pid`."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    pidfd = os.pidfd_open(pid)
    helper = os.fork()
    if helper == 0:
        try:
            os.close(out_r)
            sc.setns(pidfd, nstype)
            os.write(out_w, json.dumps({"value": read()}).encode())
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001 - the parent reports it
            os.write(out_w, json.dumps({"error": str(exc)}).encode())
            os._exit(1)
    os.close(out_w)
    os.close(pidfd)
    chunks = []
    while data := os.read(out_r, 65536):
        chunks.append(data)
    os.close(out_r)
    os.waitpid(helper, 0)
    result = json.loads(b"".join(chunks) or b'{"error": "helper died"}')
    if "error" in result:
        raise OSError(f"probe in namespace of {pid}: {result['error']}")
    return result["value"]
