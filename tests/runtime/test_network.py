"""Links exist only between one learner's own nodes; nothing crosses between learners."""

from __future__ import annotations

import pytest

from sandboxapp.runtime import network, probes
from sandboxapp.runtime.sandbox import SandboxError, sandbox_link

SERVE = (
    "import socket; s = socket.create_server(('0.0.0.0', 8080)); "
    "c, _ = s.accept(); c.sendall(b'hello from db'); c.close()"
)
CONNECT = (
    "import socket, sys; c = socket.create_connection((sys.argv[1], 8080), timeout=3); "
    "print(c.recv(100).decode())"
)


def test_two_nodes_of_one_learner_talk_over_their_veth(make_sandbox):
    web = make_sandbox(learner="topo", node="web")
    db = make_sandbox(learner="topo", node="db")
    assert web.spec.volume != db.spec.volume, "each node keeps files of its own"
    sandbox_link(web, db, network.NodeEnd("eth1", "10.0.0.1"), network.NodeEnd("eth1", "10.0.0.2"))
    server = db.spawn(["/usr/bin/python3", "-c", SERVE])
    code, out = web.run(["/bin/sh", "-c", f'sleep 0.3; python3 -c "{CONNECT}" 10.0.0.2'])
    assert out.decode().strip() == "hello from db", out
    server.wait(timeout=5)
    links = {link["name"]: link for link in probes.links_of(web.init_pid)}
    assert links["eth1"]["kind"] == "veth" and "10.0.0.1/24" in links["eth1"]["addresses"]
    assert not network.leftover_veths(), "no end stays in the host's namespace"


def test_sandboxes_of_different_learners_cannot_be_linked(make_sandbox):
    a, b = make_sandbox(learner="alice-net"), make_sandbox(learner="bob-net")
    with pytest.raises(SandboxError, match="same learner"):
        sandbox_link(a, b, network.NodeEnd("eth1", "10.0.0.1"), network.NodeEnd("eth1", "10.0.0.2"))
    assert [link["name"] for link in probes.links_of(a.init_pid)] == ["lo"]


def test_reconcile_deletes_veth_ends_left_on_the_host(config):
    from pyroute2 import IPRoute

    from sandboxapp.runtime.reconcile import reconcile

    name = f"{network.VETH_PREFIX}0test"
    with IPRoute() as ip:
        ip.link("add", ifname=name, kind="veth", peer=f"{name}p")
    report = reconcile(config)
    assert name in report.deleted_links
    assert name not in network.leftover_veths() and f"{name}p" not in network.leftover_veths()
