"""Daphne's reactor runs on uvloop when started through sandboxapp.daphne_on_uvloop."""

import contextlib
import os
import socket
import subprocess
import sys

import pytest

from sandboxapp.daphne_on_uvloop import (
    SMALL_FRAME,
    SmallFrameMasker,
    small_frames_unmasked_in_python,
    writes_at_once,
)


def _in_a_fresh_python(probe: str) -> list[str]:
    """The words `probe` prints, run in a new interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.split()


# In a fresh interpreter: Daphne makes its reactor's loop once, when its server is imported.
PROBE = """
from sandboxapp.daphne_on_uvloop import reactor_on_uvloop
loop = reactor_on_uvloop()
from twisted.internet import reactor
print(type(loop).__module__, reactor._asyncioEventloop is loop)
"""


def test_the_reactor_daphne_serves_on_is_a_uvloop_loop():
    assert _in_a_fresh_python(PROBE) == ["uvloop", "True"]


# A fresh interpreter again: what the site made at import is frozen, out of the collector's
# walks, and little else is left for it to walk.
FROZEN_PROBE = """
import gc, sys
from sandboxapp.daphne_on_uvloop import site_loaded
site_loaded()
print(gc.get_freeze_count(), len(gc.get_objects()), "sandboxapp.views" in sys.modules)
"""


def test_the_site_is_imported_then_frozen_before_daphne_serves():
    frozen, tracked, views_imported = _in_a_fresh_python(FROZEN_PROBE)
    # The views came in through the URL conf, before the freeze: most of what there is now
    # lies out of the collector's way.
    assert views_imported == "True"
    assert int(frozen) > 10 * int(tracked)


# pyroute2 is about 10 MiB of a process; a web worker names the checks (the lesson loader
# validates them) but never makes a link, so it must not load it (network.netlink).
UNLOADED_PROBE = """
import sys
from sandboxapp.daphne_on_uvloop import site_loaded
site_loaded()
print("sandboxapp.runtime.checks" in sys.modules, "pyroute2" in sys.modules)
"""


def test_the_site_loads_the_checks_without_pyroute2():
    assert _in_a_fresh_python(UNLOADED_PROBE) == ["True", "False"]


def _server_connection(reactor):
    """A Twisted server-side TCP connection on one end of a socket pair; the other end."""
    from twisted.internet import protocol, tcp

    ours, peer = socket.socketpair()
    ours.setblocking(False)
    connection = tcp.Server(ours, protocol.Protocol(), ("127.0.0.1", 1), None, 1, reactor)
    return connection, peer


def _received(peer: socket.socket) -> bytes:
    peer.setblocking(False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := peer.recv(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def test_daphne_sends_a_frame_at_once_and_keeps_the_order_when_the_socket_is_full(monkeypatch):
    from twisted.internet import tcp
    from twisted.internet.testing import MemoryReactor

    monkeypatch.setattr(tcp.Server, "write", tcp.Server.write)  # put back afterwards
    writes_at_once()
    reactor = MemoryReactor()
    connection, peer = _server_connection(reactor)

    connection.write(b"echo")
    # On the socket already, and no turn of the loop asked for.
    assert _received(peer) == b"echo"
    assert connection not in reactor.getWriters()

    # More than the socket takes: the rest waits for the loop, and what comes after it
    # waits behind it.
    big = bytes(range(256)) * 40_000
    connection.write(big)
    connection.write(b"after")
    assert connection in reactor.getWriters()
    got = _received(peer)
    assert 0 < len(got) < len(big)
    while connection in reactor.getWriters():
        connection.doWrite()
        got += _received(peer)
    got += _received(peer)
    assert got == big + b"after"


def _native_masker(mask: bytes, length: int):
    from autobahn.websocket.xormasker import create_xor_masker

    return create_xor_masker(mask, length)


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 7, 8, 63, SMALL_FRAME - 1])
def test_a_small_frame_unmasks_as_autobahns_masker_does_however_it_arrives(length):
    mask, payload = os.urandom(4), os.urandom(length)
    for cut in sorted({0, 1, length // 3, length - 1, length}):
        cut = max(0, min(cut, length))
        ours, native = SmallFrameMasker(mask), _native_masker(mask, length)
        # A frame may reach the parser in pieces; each piece continues the mask's phase.
        got = ours.process(payload[:cut]) + ours.process(payload[cut:])
        assert got == native.process(payload[:cut]) + native.process(payload[cut:])
        assert ours.pointer() == length
    ours.reset()
    assert ours.pointer() == 0 and ours.process(got) == payload  # XOR twice: the payload


def test_autobahn_is_given_our_masker_for_small_frames_and_keeps_its_own_for_large(monkeypatch):
    from autobahn.websocket import protocol

    monkeypatch.setattr(protocol, "create_xor_masker", protocol.create_xor_masker)
    small_frames_unmasked_in_python()
    mask = os.urandom(4)
    assert isinstance(protocol.create_xor_masker(mask, 1), SmallFrameMasker)
    large = protocol.create_xor_masker(mask, SMALL_FRAME)
    assert not isinstance(large, SmallFrameMasker)
    payload = os.urandom(SMALL_FRAME)
    assert large.process(payload) == _native_masker(mask, SMALL_FRAME).process(payload)
