"""The lab itself: loss happens on arrival and is counted, the cap is in place, the counter sees what
the server sends, and teardown removes every namespace even when the body fails."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from tests.browser.netns import NetnsLoop

from .lab import Lab, namespaces, run

DATAGRAMS = 400


async def _receive(sock: socket.socket, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    count = 0
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        try:
            await asyncio.wait_for(loop.sock_recv(sock, 2048), deadline - loop.time())
        except TimeoutError:
            break
        count += 1
    return count


async def _bound(ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((ip, 0))
    return sock


async def _send(target: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(DATAGRAMS):
            sock.sendto(b"x" * 200, target)
            await asyncio.sleep(0.001)


def test_loss_is_dropped_on_arrival_and_counted(lab_ready: None) -> None:
    with Lab(viewers=1) as lab:
        lab.shape(0, loss_pct=50)
        link = lab.links[0]
        server, viewer = NetnsLoop(lab.server_ns), NetnsLoop(link.namespace)
        server.start()
        viewer.start()
        try:
            sock = viewer.run(_bound(link.viewer_ip))
            receiving = viewer.submit(_receive(sock, 5.0))
            server.run(_send(sock.getsockname()))
            received = receiving.result(10)
            sock.close()
        finally:
            server.stop()
            viewer.stop()
        sent, lost = lab.sent(0), lab.lost(0)
        # Every datagram left the server (the counter sits before any impairment) ...
        assert sent.packets == DATAGRAMS
        assert sent.bytes == DATAGRAMS * (200 + 28)
        # ... and what the viewer did not get was dropped by the loss rule, about half of it.
        assert received + lost.packets == DATAGRAMS
        assert 120 < lost.packets < 280


def test_cap_sits_on_the_server_side_of_the_link(lab_ready: None) -> None:
    with Lab(viewers=2) as lab:
        lab.shape(1, rate_kbit=1000)
        qdiscs = json.loads(run("tc", "-n", lab.server_ns, "-j", "qdisc", "show"))
        by_dev = {q["dev"]: q for q in qdiscs}
        assert by_dev["srv1"]["kind"] == "tbf"
        assert by_dev["srv1"]["options"]["rate"] == 125_000  # bytes per second
        assert by_dev["srv0"]["kind"] != "tbf"  # the other viewer's link is untouched
        lab.shape(1)
        qdiscs = json.loads(run("tc", "-n", lab.server_ns, "-j", "qdisc", "show"))
        assert all(q["kind"] != "tbf" for q in qdiscs)


def test_teardown_removes_every_namespace_also_on_failure(lab_ready: None) -> None:
    made: list[str] = []
    with pytest.raises(RuntimeError, match="body failed"), Lab(viewers=2) as lab:
        made = [lab.server_ns, *(link.namespace for link in lab.links)]
        assert set(made) <= set(namespaces())
        raise RuntimeError("body failed")
    assert made
    assert not set(made) & set(namespaces())
