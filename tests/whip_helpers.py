"""Helpers for WHIP/WHEP tests: aiortc speaking plain WHIP/WHEP over HTTP (`application/sdp`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiortc import AudioStreamTrack, MediaStreamTrack, RTCSessionDescription

from tests.media_helpers import Viewer, new_pc, offer_of

WHIP = "/api/v1/whip"
WHEP = "/api/v1/whep"
SDP = {"Content-Type": "application/sdp"}


@dataclass
class WhipPublisher:
    pc: Any
    location: str
    etag: str


async def whip_publish(
    api: Any,
    token: str,
    session_id: str,
    kind: str,
    video: MediaStreamTrack | None,
    audio: bool = False,
) -> tuple[WhipPublisher | None, Any]:
    """POST an `application/sdp` offer; on 201 apply the answer. Returns (publisher, response)."""
    pc = new_pc()
    if video is not None:
        pc.addTransceiver(video, direction="sendonly")
    if audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    offer = await offer_of(pc)
    resp = await api.post(
        f"{WHIP}/{session_id}/{kind}", raw=offer["sdp"].encode(), token=token, headers=SDP
    )
    if resp.status != 201:
        await pc.close()
        return None, resp
    await pc.setRemoteDescription(RTCSessionDescription(resp.body.decode(), "answer"))
    return WhipPublisher(pc, resp.headers["Location"], resp.headers["ETag"]), resp


async def whep_play(
    api: Any, token: str, path: str, audio: bool = False, video: bool = True
) -> tuple[Viewer, Any]:
    """POST a recvonly offer to a WHEP endpoint; on 201 apply the answer."""
    pc = new_pc()
    viewer = Viewer(pc)
    pc.on("track", viewer.on_track)
    if video:
        pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    offer = await offer_of(pc)
    resp = await api.post(path, raw=offer["sdp"].encode(), token=token, headers=SDP)
    if resp.status == 201:
        viewer.pc_id = resp.headers["Location"].rsplit("/", 1)[1]
        await pc.setRemoteDescription(RTCSessionDescription(resp.body.decode(), "answer"))
    else:
        await pc.close()
    return viewer, resp
