"""ICE policy for every peer connection, in one documented place.

- ICE servers come from settings only. aiortc falls back to a public Google STUN server when given no
  configuration, so `configuration()` always passes an explicit (default empty) list.
- Host candidates: aioice gathers on every interface but deliberately skips 127.0.0.1. When
  `settings.ice_hosts` is set (tests: `127.0.0.1`), exactly those addresses are offered instead.
- UDP ports: with `settings.udp_ports` the host sockets bind inside that range (for firewalls).
aiortc exposes neither knob, so `restrict()` replaces the candidate gathering of each connection's
aioice `Connection` before gathering starts (after `setRemoteDescription` on the answering side,
before `setLocalDescription` on the offering side).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Sequence
from typing import Any

from aioice import Candidate
from aioice.ice import StunProtocol, candidate_foundation, candidate_priority
from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from server.errors import Invalid
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
    return [t.iceGatherer._connection for t in transports]


def restrict(
    pc: RTCPeerConnection, hosts: Sequence[str], ports: tuple[int, int] | None = None
) -> None:
    """Limit host candidates to `hosts` (empty: every interface) and bind within `ports`."""
    if not hosts and ports is None:
        return
    for conn in _connections(pc):
        if getattr(conn, "_multistream_restricted", False):
            continue
        original = conn.get_component_candidates

        async def gather(
            component: int,
            addresses: list[str],
            timeout: int = 5,
            _conn: Any = conn,
            _original: Any = original,
        ) -> list[Candidate]:
            chosen = list(hosts) if hosts else addresses
            if ports is None:
                return list(await _original(component=component, addresses=chosen, timeout=timeout))
            candidates = await _bind_in_range(_conn, component, chosen, ports)
            # STUN/TURN candidates (if configured) still come from aioice.
            candidates += await _original(component=component, addresses=[], timeout=timeout)
            return candidates

        conn.get_component_candidates = gather
        conn._multistream_restricted = True


async def _bind_in_range(
    conn: Any, component: int, addresses: list[str], ports: tuple[int, int]
) -> list[Candidate]:
    """Host candidates like aioice's, but on a free port of `ports`."""
    loop = asyncio.get_running_loop()
    candidates = []
    lo, hi = ports
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        order = list(range(lo, hi + 1))
        random.shuffle(order)
        for port in order:
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: StunProtocol(conn), local_addr=(address, port), family=family
                )
            except OSError:
                continue
            host, bound = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=bound,
                type="host",
            )
            conn._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
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
