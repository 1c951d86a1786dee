"""SDP offer/answer for the plane's two kinds of connection: a publisher's (receive only) and a
viewer's (send only), and the cleanup of an offer that was refused half-way.

Kept apart from the connection registry because it is pure aiortc choreography: which transceivers
to open in which direction, which codec to prefer, and how to leave no socket behind when aiortc
raises on a malformed offer (issue 10).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc import sdp as aiortc_sdp

from server.errors import DomainError, Invalid
from server.media import codecs, dtls, ice, offers
from server.settings import Settings

log = logging.getLogger(__name__)

# A viewer's transceivers: video, audio if it asked and there is audio, and the negotiated codec.
ViewerTransceivers = tuple[RTCRtpTransceiver, RTCRtpTransceiver | None, str]


def new_pc(settings: Settings) -> RTCPeerConnection:
    return RTCPeerConnection(ice.configuration(settings.ice_servers))


async def answer(pc: RTCPeerConnection, settings: Settings) -> str:
    """Answer the remote offer with this server's ICE policy and DTLS role."""
    ice.restrict(pc, settings.ice_hosts, settings.udp_ports)
    dtls.answer_as_server(pc)  # interop with RSA-certificate peers (server/media/dtls.py)
    await pc.setLocalDescription(await pc.createAnswer())
    return local_sdp(pc)


def local_sdp(pc: RTCPeerConnection) -> str:
    return str(pc.localDescription.sdp)


def negotiated_codec(pc: RTCPeerConnection, transceiver: RTCRtpTransceiver) -> str:
    """The codec the answer chose for `transceiver` (upper case), or "" if none."""
    described = aiortc_sdp.SessionDescription.parse(pc.localDescription.sdp)
    for media in described.media:
        if media.rtp.muxId == transceiver.mid and media.rtp.codecs:
            return str(media.rtp.codecs[0].name).upper()
    return ""


async def accept_publisher(
    pc: RTCPeerConnection, offer: offers.Offer, kind: str, settings: Settings, who: str
) -> str:
    """Receive one video (and, for a camera, one audio) track; every other m-line is inactive.
    Raises `Invalid` for an offer aiortc cannot negotiate (the caller releases `pc`)."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        seen: set[str] = set()
        for t in pc.getTransceivers():
            wanted = t.kind == "video" or (t.kind == "audio" and kind == "camera")
            t.direction = "recvonly" if wanted and t.kind not in seen else "inactive"
            seen.add(t.kind)
        return await answer(pc, settings)
    except DomainError:
        raise
    except Exception as exc:
        log.info("%s publisher offer refused: %r", who, exc)
        raise Invalid("offer could not be negotiated", code="invalid_sdp") from None


async def accept_viewer(
    pc: RTCPeerConnection,
    offer: offers.Offer,
    want_audio: bool,
    settings: Settings,
    prefer: str | None,
    who: str,
) -> ViewerTransceivers:
    """Send video (and audio if wanted); never receive anything from a viewer. `prefer`: the
    publisher's codec, first, so a viewer that supports it gets forwarded packets. The connection
    is closed before any refusal is raised."""
    order = list(settings.video_codecs)
    if prefer is not None:
        order = [prefer, *[c for c in order if c.upper() != prefer]]
    try:
        video_t = pc.addTransceiver("video", direction="sendonly")
        video_t.setCodecPreferences(codecs.video_preferences(order))
        audio_t = pc.addTransceiver("audio", direction="sendonly") if want_audio else None
        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        for t in pc.getTransceivers():
            if t is not video_t and t is not audio_t:
                t.direction = "inactive"
        await answer(pc, settings)
        codec = negotiated_codec(pc, video_t)
    except DomainError:
        await close_refused(pc)
        raise
    except Exception as exc:
        await close_refused(pc)
        log.info("%s offer refused: %r", who, exc)
        raise Invalid("offer could not be negotiated", code="invalid_sdp") from None
    if video_t.mid is None or codec not in codecs.SUPPORTED_VIDEO:
        await close_refused(pc)
        raise Invalid("offer has no usable video codec (H264 or VP8)", code="no_common_codec")
    return video_t, audio_t if (audio_t and audio_t.mid) else None, codec


async def close_refused(pc: RTCPeerConnection) -> None:
    """Close a refused offer's connection. aiortc's `close` assumes every transceiver got a
    transport; on a half-negotiated connection it raises midway (issue 10: after an offer without
    `a=mid`), leaving the other transports' sockets open. Then stop those directly."""
    try:
        await pc.close()
        return
    except Exception as exc:
        log.warning("closing a refused offer's connection raised %r; stopping its transports", exc)
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is None:
            continue
        for stop in (transport.stop, transport.transport.stop):
            with contextlib.suppress(Exception):
                await stop()


async def quietly(cleanup: Awaitable[Any], what: str) -> None:
    """Release a refused offer's connection; aiortc may raise again on a half-built one (issue
    10: an offer without `a=mid` failed in negotiation and then in `close`), and that must not
    turn the client's 400 into a 500."""
    try:
        await cleanup
    except Exception as exc:
        log.warning("%s raised %r (the offer is refused anyway)", what, exc)
