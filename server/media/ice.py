"""ICE policy for every peer connection, in one documented place.

- ICE servers come from settings only. aiortc falls back to a public Google STUN server when given no
  configuration, so `configuration()` always passes an explicit (default empty) list.
- Host candidates: aioice gathers on every interface but deliberately skips 127.0.0.1. When
  `settings.ice_hosts` is set (tests: `127.0.0.1`), exactly those addresses are offered instead.
- UDP ports: with `settings.udp_ports` the host sockets bind inside that range (for firewalls).
aiortc exposes neither knob, so `restrict()` replaces the candidate gathering of each connection's
aioice `Connection` before gathering starts (after `setRemoteDescription` on the answering side,
before `setLocalDescription` on the offering side), through `server.media.aioice_hooks` (and
`aiortc_hooks.ice_connection` to reach the aioice connection).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aioice import Candidate
from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from server.errors import Invalid
from server.media import aioice_hooks, aiortc_hooks
from server.validation import as_int

log = logging.getLogger(__name__)

MAX_CANDIDATE_CHARS = 512


def configuration(ice_servers: Sequence[str]) -> RTCConfiguration:
    """`RTCConfiguration` with exactly the configured servers (`stun:`/`turn:` URLs; a TURN URL
    may carry `user:password@`). Never aiortc's default STUN server."""
    servers = []
    for url in ice_servers:
        scheme, _, rest = url.partition(":")
        if "@" in rest:
            creds, _, host = rest.rpartition("@")
            user, _, password = creds.partition(":")
            servers.append(
                RTCIceServer(urls=f"{scheme}:{host}", username=user, credential=password)
            )
        else:
            servers.append(RTCIceServer(urls=url))
    return RTCConfiguration(iceServers=servers)


def _connections(pc: RTCPeerConnection) -> list[Any]:
    transports = {t.receiver.transport.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport.transport)
    return [aiortc_hooks.ice_connection(t.iceGatherer) for t in transports]


def restrict(
    pc: RTCPeerConnection, hosts: Sequence[str], ports: tuple[int, int] | None = None
) -> None:
    """Limit host candidates to `hosts` (empty: every interface) and bind within `ports`."""
    if not hosts and ports is None:
        return
    for conn in _connections(pc):
        aioice_hooks.gather_with(conn, _gathering(conn, tuple(hosts), ports))


def _gathering(
    conn: Any, hosts: tuple[str, ...], ports: tuple[int, int] | None
) -> Callable[[aioice_hooks.Gather, int, list[str], int], Awaitable[list[Candidate]]]:
    """The host-candidate gathering of one aioice connection under this policy."""

    async def gather(
        aioice_gather: aioice_hooks.Gather, component: int, addresses: list[str], timeout: int
    ) -> list[Candidate]:
        chosen = list(hosts) if hosts else addresses
        if ports is None:
            return await aioice_gather(component, chosen, timeout)
        candidates = await _bind_in_range(conn, component, chosen, ports)
        # STUN/TURN candidates (if configured) still come from aioice.
        return candidates + await aioice_gather(component, [], timeout)

    return gather


async def _bind_in_range(
    conn: Any, component: int, addresses: list[str], ports: tuple[int, int]
) -> list[Candidate]:
    """Host candidates like aioice's, but on a free port of `ports`."""
    candidates = []
    lo, hi = ports
    for address in addresses:
        order = list(range(lo, hi + 1))
        random.shuffle(order)
        for port in order:
            candidate = await aioice_hooks.bind_host_candidate(conn, component, address, port)
            if candidate is not None:
                candidates.append(candidate)
                break
        else:
            log.warning("no free UDP port in %d-%d on %s", lo, hi, address)
    return candidates


def parse_candidate(raw: object, loopback_only: bool) -> RTCIceCandidate | None:
    """A trickled candidate from JSON `{"candidate", "sdpMid", "sdpMLineIndex"}`.

    Returns None for the end-of-candidates marker (empty string) and for mDNS (`*.local`) host
    names when only loopback is in use (resolving them would send multicast queries).
    """
    if not isinstance(raw, dict):
        raise Invalid("candidate must be an object", code="invalid_candidate")
    text = raw.get("candidate")
    mid = raw.get("sdpMid")
    index = raw.get("sdpMLineIndex")
    if not isinstance(text, str) or len(text) > MAX_CANDIDATE_CHARS:
        raise Invalid("candidate.candidate must be a short string", code="invalid_candidate")
    if mid is not None and (not isinstance(mid, str) or len(mid) > 32):
        raise Invalid("candidate.sdpMid must be a short string", code="invalid_candidate")
    if index is not None:
        index = as_int(index)
        if index is None or not 0 <= index < 64:
            raise Invalid(
                "candidate.sdpMLineIndex must be a small integer", code="invalid_candidate"
            )
    if text == "":
        return None
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    try:
        candidate = candidate_from_sdp(text)
    except Exception:
        raise Invalid("candidate is not a valid ICE candidate", code="invalid_candidate") from None
    if loopback_only and candidate.ip.endswith(".local"):
        return None
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate
