"""Every aioice hook of `server.media.aioice_hooks`, against real aioice connections on loopback.

Each test names its hook: if an aioice (or aiortc) upgrade changes a shape the hook relies on, the
failure says which hook broke and why, instead of ICE quietly gathering on other addresses.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aioice
import pytest
from aioice import Candidate

from server.media import aioice_hooks, ice
from server.media.aioice_hooks import AioiceShapeError
from tests.media_helpers import new_pc


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_hook_gather_with_replaces_one_connections_gathering() -> None:
    conn = aioice.Connection(ice_controlling=True, use_ipv6=False)
    other = aioice.Connection(ice_controlling=True, use_ipv6=False)
    calls: list[tuple[int, list[str]]] = []

    async def gather(
        aioice_gather: aioice_hooks.Gather, component: int, addresses: list[str], timeout: int
    ) -> list[Candidate]:
        calls.append((component, addresses))
        # aioice's own gathering, on loopback only (aioice itself never offers 127.0.0.1).
        return await aioice_gather(component, ["127.0.0.1"], timeout)

    try:
        aioice_hooks.gather_with(conn, gather)
        aioice_hooks.gather_with(conn, gather)  # once per connection: a second call is a no-op
        await conn.gather_candidates()
        assert calls and len(calls) == 1, f"gather_with: replacement called {calls!r}"
        hosts = {c.host for c in conn.local_candidates}
        assert hosts == {"127.0.0.1"}, f"gather_with: aioice gathered on {hosts!r}"
        assert "get_component_candidates" not in vars(other), "gather_with: patched the class"
    finally:
        await conn.close()
        await other.close()


async def test_hook_bind_host_candidate_binds_and_registers_like_aioice() -> None:
    conn = aioice.Connection(ice_controlling=True, use_ipv6=False)
    port = _free_udp_port()
    try:
        candidate = await aioice_hooks.bind_host_candidate(conn, 1, "127.0.0.1", port)
        assert candidate is not None, "bind_host_candidate: a free port was refused"
        assert (candidate.host, candidate.port, candidate.type) == ("127.0.0.1", port, "host")
        assert candidate.priority == aioice.ice.candidate_priority(1, "host")
        protocols: list[Any] = conn._protocols
        assert [p.local_candidate for p in protocols] == [candidate], (
            "bind_host_candidate: the socket is not registered with the connection"
        )
        taken = await aioice_hooks.bind_host_candidate(conn, 1, "127.0.0.1", port)
        assert taken is None, "bind_host_candidate: a taken port must answer None"
    finally:
        await conn.close()


def test_a_missing_internal_raises_naming_the_hook() -> None:
    with pytest.raises(AioiceShapeError, match="gather_with"):
        aioice_hooks.gather_with(object(), lambda *a: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(AioiceShapeError, match="datagram_send"):
        aioice_hooks.datagram_send(object())


async def _loopback_only(
    aioice_gather: aioice_hooks.Gather, component: int, addresses: list[str], timeout: int
) -> list[Candidate]:
    return await aioice_gather(component, ["127.0.0.1"], timeout)


async def test_hook_datagram_send_hands_datagrams_to_the_nominated_pair() -> None:
    a = aioice.Connection(ice_controlling=True, use_ipv6=False)
    b = aioice.Connection(ice_controlling=False, use_ipv6=False)
    try:
        for conn in (a, b):
            aioice_hooks.gather_with(conn, _loopback_only)
            await conn.gather_candidates()
        send = aioice_hooks.datagram_send(a)
        not_yet = send(b"early")
        assert not_yet is not None, "datagram_send: no pair yet must defer to aioice's send"
        with pytest.raises(ConnectionError):
            await not_yet
        for x, y in ((a, b), (b, a)):
            for candidate in x.local_candidates:
                await y.add_remote_candidate(candidate)
            await y.add_remote_candidate(None)
            y.remote_username, y.remote_password = x.local_username, x.local_password
        await asyncio.gather(a.connect(), b.connect())
        assert send(b"direct") is None, "datagram_send: a UDP pair must be sent on at once"
        assert await asyncio.wait_for(b.recv(), 5) == b"direct"
    finally:
        await a.close()
        await b.close()


async def test_a_missing_aioice_name_raises_naming_the_hook(monkeypatch) -> None:
    monkeypatch.delattr(aioice.ice, "candidate_foundation")
    conn = aioice.Connection(ice_controlling=True, use_ipv6=False)
    try:
        with pytest.raises(AioiceShapeError, match=r"bind_host_candidate.*candidate_foundation"):
            await aioice_hooks.bind_host_candidate(conn, 1, "127.0.0.1", _free_udp_port())
    finally:
        await conn.close()


async def test_ice_policy_binds_in_the_port_range_through_the_hooks() -> None:
    port = _free_udp_port()
    pc = new_pc()
    try:
        pc.addTransceiver("video", direction="sendonly")
        ice.restrict(pc, ("127.0.0.1",), (port, port))
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line for line in pc.localDescription.sdp.splitlines() if "a=candidate" in line
        ]
        assert candidates and all(f"127.0.0.1 {port} typ host" in c for c in candidates), candidates
    finally:
        await pc.close()
