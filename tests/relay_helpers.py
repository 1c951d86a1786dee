"""Relay tests' and bench's clients: a camera that makes a realistic multi-packet VP8 stream, and
viewers that count what arrives without decoding it (the fan-out bench's light client)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from tests.cluster_helpers import candidate_ports
from tests.conftest import Client
from tests.media_helpers import PREFIX, PatternTrack, new_pc, offer_of

# Instances of a relay test or bench: relay on, a fast heartbeat, and an audience of many clients
# from one process (no per-viewer rungs, no recording, rate limits out of the way).
RELAY_ENV = {
    "MULTISTREAM_RELAY": "on",
    "MULTISTREAM_RELAY_LINGER": "1",
    "MULTISTREAM_LEASE_HEARTBEAT": "0.5",
    # The audience is 60 clients of one test process: no adaptive rungs (each would decode and
    # encode on these 2 cores); every viewer takes the publisher's packets as they are.
    "MULTISTREAM_ADAPTIVE": "off",
    "MULTISTREAM_RECORD": "off",
    "MULTISTREAM_RATE_OFFER": "10000/60000",
    "MULTISTREAM_RATE_JOIN": "10000/60000",
    "MULTISTREAM_MAX_PENDING_PEERS": "1000",
}


class TexturedCamera(PatternTrack):
    """A camera whose picture is new fine texture every frame: aiortc's VP8 encoder spends its
    whole budget, so every frame is several packets, as a real camera's is."""

    def __init__(self, width: int, height: int, fps: float) -> None:
        super().__init__("camera", width, height, fps)
        rng = np.random.default_rng(15)
        self._textures = rng.integers(40, 220, (7, height, width), dtype=np.uint8)

    def picture(self, n: int) -> np.ndarray:
        frame = super().picture(n)
        frame[: self.height] = self._textures[n % len(self._textures)]
        # The frame number in 16x16 blocks along the top: no two frames encode alike (the
        # latency bench tells frames apart by their bytes).
        for bit in range(min(16, self.width // 16)):
            frame[:16, bit * 16 : bit * 16 + 16] = 235 if (n >> bit) & 1 else 16
        return frame


def vp8_payload(packet: bytes) -> bytes:
    """An RTP packet's VP8 data after the RTP header and the VP8 payload descriptor (RFC 7741):
    what the publisher's encoder made, the same whichever server sender packetized it."""
    at = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # header extensions
        at += 4 + 4 * int.from_bytes(packet[at + 2 : at + 4], "big")
    desc = packet[at]
    at += 1
    if desc & 0x80:  # X: extension byte follows
        ext = packet[at]
        at += 1
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            at += 2 if packet[at] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            at += 1
        if ext & 0x30:  # T/K: TID/KEYIDX
            at += 1
    return packet[at:]


@dataclass
class Light:
    """A viewer that counts what arrives and decodes nothing (the fan-out bench's light client)."""

    pc: RTCPeerConnection
    served_by: str
    ports: set[int]
    pc_id: str = ""
    packets: int = 0
    frames: int = 0
    octets: int = 0
    # With `timed`: each frame's arrival (monotonic s) by the last bytes of its last packet, the
    # same whichever instance forwarded it (the relay's latency bench matches frames by them).
    timed: bool = False
    arrivals: dict[bytes, float] = field(default_factory=dict)

    async def on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        self.packets += 1
        self.octets += len(data)
        if data[1] & 0x80:  # marker bit: the last packet of a video frame
            self.frames += 1
            if self.timed:
                self.arrivals.setdefault(vp8_payload(data)[-48:], time.monotonic())


async def light_viewer(api: Client, token: str, stream_id: str) -> Light:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    resp = await api.post(
        f"{PREFIX}/stream/{stream_id}/signal/offer", await offer_of(pc), token=token
    )
    assert resp.status == 200, resp.body
    await pc.setRemoteDescription(RTCSessionDescription(resp.json["sdp"], "answer"))
    light = Light(pc, resp.headers["X-Multistream-Served-By"], candidate_ports(resp.json["sdp"]))
    light.pc_id = resp.json["pc_id"]
    dtls = pc.getTransceivers()[0].receiver.transport
    dtls._handle_rtp_data = light.on_rtp  # type: ignore[method-assign]
    return light
