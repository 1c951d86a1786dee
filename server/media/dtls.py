"""DTLS role of our answers: be the DTLS *server* whenever the offer lets us choose (`actpass`).

Why: aiortc's DTLS client offers only ECDHE-ECDSA cipher suites. A peer that offers `actpass` and
holds an RSA certificate — GStreamer's webrtcbin (used by Meetecho's simple-whip-client) generates
one — answers aiortc's ClientHello with a fatal `handshake_failure` alert when aiortc is the client
(captured on this machine). As the DTLS server, aiortc presents its own ECDSA certificate and picks
a suite from the peer's (longer) list, while the peer's RSA *client* certificate is fine. Offers
that fix the role (`a=setup:passive`, e.g. FFmpeg's whip muxer; `active`) are left alone, and a
peer offering `actpass` accepts either role by definition (RFC 5763 §5).

aiortc has no public knob for this: the answer's role is whatever `RTCDtlsTransport._role` holds
when `createAnswer` runs ("auto" → client). This module is the one place that touches it;
`tests/test_whip_interop_adapter.py` fails loudly if aiortc changes that shape.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCDtlsTransport, RTCPeerConnection
from aiortc import sdp as aiortc_sdp


def _transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    seen: dict[int, RTCDtlsTransport] = {}
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        seen[id(transport)] = transport
    if pc.sctp is not None:
        seen[id(pc.sctp.transport)] = pc.sctp.transport
    return list(seen.values())


def offer_lets_us_choose(offer_sdp: str) -> bool:
    """True when every media section of the offer says `a=setup:actpass`."""
    parsed = aiortc_sdp.SessionDescription.parse(offer_sdp)
    roles = [m.dtls.role for m in parsed.media if m.dtls is not None]
    return bool(roles) and all(role == "auto" for role in roles)


def answer_as_server(pc: RTCPeerConnection) -> None:
    """Call after `setRemoteDescription(offer)`, before `createAnswer()`."""
    remote = pc.remoteDescription
    if remote is None or remote.type != "offer" or not offer_lets_us_choose(remote.sdp):
        return
    for transport in _transports(pc):
        role: Any = transport._role
        if role == "auto":
            transport._set_role("server")
