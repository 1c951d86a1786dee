"""DTLS role of our answers: be the DTLS *server* whenever the offer lets us choose (`actpass`).

Why: aiortc's DTLS client offers only ECDHE-ECDSA cipher suites. A peer that offers `actpass` and
holds an RSA certificate — GStreamer's webrtcbin (used by Meetecho's simple-whip-client) generates
one — answers aiortc's ClientHello with a fatal `handshake_failure` alert when aiortc is the client
(captured on this machine). As the DTLS server, aiortc presents its own ECDSA certificate and picks
a suite from the peer's (longer) list, while the peer's RSA *client* certificate is fine. Offers
that fix the role (`a=setup:passive`, e.g. FFmpeg's whip muxer; `active`) are left alone, and a
peer offering `actpass` accepts either role by definition (RFC 5763 §5).

aiortc has no public knob for this: the answer's role is whatever `RTCDtlsTransport._role` holds
when `createAnswer` runs ("auto" → client). The hooks that read and set it live with aiortc's other
internals (`server.media.aiortc_hooks.dtls_role`/`set_dtls_role`), each tested by
`tests/test_media_aiortc_hooks.py`; `tests/test_whip_interop_adapter.py` checks the policy.
"""

from __future__ import annotations

from aiortc import RTCDtlsTransport, RTCPeerConnection
from aiortc import sdp as aiortc_sdp

from server.media import aiortc_hooks


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
        if aiortc_hooks.dtls_role(transport) == "auto":
            aiortc_hooks.set_dtls_role(transport, "server")
