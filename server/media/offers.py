"""Checking a client's SDP offer before any peer connection exists.

aiortc's SDP parser raises assorted exceptions (ValueError, KeyError, IndexError, AttributeError…)
on malformed input, so it is called here, at the edge, and every failure becomes one `Invalid`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import sdp as aiortc_sdp

from server.errors import Forbidden, Invalid

MAX_SDP_CHARS = 64 * 1024
MAX_MEDIA_SECTIONS = 8
_SENDS = ("sendonly", "sendrecv")
_RECEIVES = ("recvonly", "sendrecv")


@dataclass(frozen=True, slots=True)
class Offer:
    """A parsed offer: its text and the direction of each audio/video section, in order."""

    sdp: str
    media: tuple[tuple[str, str, str], ...]  # (kind, direction, mid)

    def directions(self, kind: str) -> list[str]:
        return [d for k, d, _ in self.media if k == kind]


def parse_offer(body: object) -> Offer:
    """Validate `{"sdp", "type": "offer"}` and parse the SDP; nothing is allocated on failure."""
    if not isinstance(body, dict):
        raise Invalid("body must be an object", code="invalid_sdp")
    sdp, kind = body.get("sdp"), body.get("type", "offer")
    if kind != "offer":
        raise Invalid("type must be 'offer'", code="invalid_sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise Invalid("sdp must be a non-empty string", code="invalid_sdp")
    if len(sdp) > MAX_SDP_CHARS:
        raise Invalid(f"sdp is longer than {MAX_SDP_CHARS} characters", code="sdp_too_large")
    try:
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
        media = tuple(
            (m.kind, m.direction or "sendrecv", str(m.rtp.muxId))
            for m in parsed.media
            if m.kind in ("audio", "video")
        )
        unsigned = any(not (m.dtls and m.dtls.fingerprints) for m in parsed.media)
    except Exception as exc:  # the parser raises many types; all mean "malformed"
        raise Invalid(
            f"sdp is not a valid offer: {type(exc).__name__}", code="invalid_sdp"
        ) from None
    if not media:
        raise Invalid("offer has no audio or video section", code="invalid_sdp")
    if unsigned:
        # aiortc would accept it and then fail an assertion when DTLS starts (no error reply).
        raise Invalid("offer has no DTLS fingerprint (a=fingerprint)", code="invalid_sdp")
    if len(parsed.media) > MAX_MEDIA_SECTIONS:
        raise Invalid("offer has too many media sections", code="invalid_sdp")
    if any(d not in aiortc_sdp.DIRECTIONS for _, d, _ in media):
        raise Invalid("offer has an unknown media direction", code="invalid_sdp")
    # What aiortc assumes without checking (it would fail later, inside negotiation or in a
    # background task once the connection starts): a mid, ICE credentials and a DTLS fingerprint
    # on every audio/video section, each mid distinct.
    mids = [mid for _, _, mid in media]
    if any(mid in ("", "None") for mid in mids) or len(set(mids)) != len(mids):
        raise Invalid("every audio/video section needs its own a=mid", code="invalid_sdp")
    for m in parsed.media:
        if m.kind not in ("audio", "video"):
            continue
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise Invalid("offer lacks ICE credentials (a=ice-ufrag/a=ice-pwd)", code="invalid_sdp")
        if m.dtls is None or not m.dtls.fingerprints:
            raise Invalid("offer lacks a DTLS fingerprint (a=fingerprint)", code="invalid_sdp")
    return Offer(sdp=sdp, media=media)


def check_publisher(offer: Offer, kind: str | None = None) -> None:
    """A broadcaster's offer must send video, or (camera only: it carries the microphone) audio;
    the server only receives."""
    if any(d in _SENDS for d in offer.directions("video")):
        return
    if kind == "camera" and any(d in _SENDS for d in offer.directions("audio")):
        return  # an audio-only camera publication (e.g. a WHIP client with only a microphone)
    raise Invalid("a publisher's offer must send a video track", code="offer_not_sending")


def check_viewer(offer: Offer) -> None:
    """A viewer's offer must be able to receive video; a send-only offer is an attempt to publish."""
    if not any(d in _RECEIVES for d in offer.directions("video")):
        raise Forbidden("viewers can only receive; this offer only sends", code="not_publisher")
