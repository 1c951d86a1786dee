"""aiortc clients for media tests: synthetic screen/camera publishers and recording viewers.

Everything stays on 127.0.0.1: the clients use the same ICE policy module as the server.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack

from server.media import ice

PREFIX = "/api/v1/livestream"
LOOPBACK = ("127.0.0.1",)

# Distinct chroma so a pixel check tells the pictures apart after lossy coding:
# the screen is near-grey (U≈V≈128), the camera strongly red (V high).
SCREEN_V = 128
CAMERA_V = 230


def screen_pattern(width: int, height: int) -> np.ndarray:
    """Text-like: light page with dark thin 'lines of text', neutral chroma (yuv420p ndarray)."""
    y = np.full((height, width), 220, np.uint8)
    for row in range(16, height - 16, 24):
        for col in range(24, width - 24, 60):
            y[row : row + 6, col : col + 44] = 30
    u = np.full((height // 2, width // 2), 128, np.uint8)
    v = np.full((height // 2, width // 2), SCREEN_V, np.uint8)
    return np.concatenate([y, u.reshape(height // 4, width), v.reshape(height // 4, width)])


def camera_pattern(width: int, height: int, t: int) -> np.ndarray:
    """Moving: a red picture with a bright bar sweeping across."""
    y = np.full((height, width), 90, np.uint8)
    x0 = (t * 8) % width
    y[:, x0 : x0 + 16] = 160
    u = np.full((height // 2, width // 2), 100, np.uint8)
    v = np.full((height // 2, width // 2), CAMERA_V, np.uint8)
    return np.concatenate([y, u.reshape(height // 4, width), v.reshape(height // 4, width)])


class PatternTrack(MediaStreamTrack):
    """A synthetic video source at a fixed rate (like aiortc's `VideoStreamTrack`)."""

    kind = "video"
    # A camera does not queue the frames its consumer was too slow to take: when set, a late
    # `recv()` skips to the current frame instead of catching up with a burst.
    realtime = False

    def __init__(self, pattern: str, width: int, height: int, fps: float) -> None:
        super().__init__()
        self.pattern, self.width, self.height, self.fps = pattern, width, height, fps
        self._n = 0
        self.delivered = 0
        self._start: float | None = None
        self._static = screen_pattern(width, height) if pattern == "screen" else None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        if self.realtime:
            self._n = max(self._n, int((time.monotonic() - self._start) * self.fps))
        target = self._start + self._n / self.fps
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(self.picture(self._n), format="yuv420p")
        frame.pts = int(self._n * 90000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        self.delivered += 1
        return frame

    def picture(self, n: int) -> np.ndarray:
        """Frame `n` as a yuv420p ndarray (subclasses draw other content)."""
        if self._static is not None:
            return self._static
        return camera_pattern(self.width, self.height, n)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def offer_of(pc: RTCPeerConnection, hosts: tuple[str, ...] = LOOPBACK) -> dict[str, str]:
    ice.restrict(pc, hosts)
    await pc.setLocalDescription(await pc.createOffer())
    return {"sdp": pc.localDescription.sdp, "type": "offer"}


def _codecs_named(codec: str) -> list[Any]:
    """aiortc's video codecs limited to `codec` (and its retransmission format)."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in caps if c.mimeType.lower() in (f"video/{codec.lower()}", "video/rtx")]


@dataclass
class Publisher:
    pc: RTCPeerConnection
    pc_id: str


async def publish(
    api: Any,
    token: str,
    stream_id: str,
    track: MediaStreamTrack,
    audio: bool = False,
    *,
    codec: str | None = None,
    hosts: tuple[str, ...] = LOOPBACK,
) -> Publisher:
    """Publish `track` (and a tone); `codec` limits the offer to one video codec ("VP8", "H264")."""
    pc = new_pc()
    transceiver = pc.addTransceiver(track, direction="sendonly")
    if codec is not None:
        transceiver.setCodecPreferences(_codecs_named(codec))
    if audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    resp = await api.post(
        f"{PREFIX}/stream/{stream_id}/signal/offer", await offer_of(pc, hosts), token=token
    )
    assert resp.status == 200, resp.body
    await pc.setRemoteDescription(RTCSessionDescription(resp.json["sdp"], "answer"))
    return Publisher(pc, resp.json["pc_id"])


@dataclass
class Viewer:
    """Receives and decodes (in aiortc's receiver) what the server sends; keeps recent frames."""

    pc: RTCPeerConnection
    pc_id: str = ""
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    frames: list[av.VideoFrame] = field(default_factory=list)
    audio_frames: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def on_track(self, track: MediaStreamTrack) -> None:
        self.tracks.append(track)
        self._tasks.append(asyncio.get_running_loop().create_task(self._pull(track)))

    async def _pull(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.frames.append(frame)  # type: ignore[arg-type]
                    del self.frames[:-5]
                    self.count += 1
                else:
                    self.audio_frames += 1
        except MediaStreamError:
            pass

    count: int = 0

    async def wait_frames(self, n: int, timeout: float = 10.0) -> None:
        start = self.count
        deadline = time.monotonic() + timeout
        while self.count < start + n:
            assert time.monotonic() < deadline, f"only {self.count - start} of {n} frames arrived"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def view(
    api: Any,
    token: str,
    path: str,
    audio: bool = False,
    video_lines: int = 1,
    codec: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Viewer, Any]:
    """Offer recvonly video (and audio) to `path`; returns the viewer and the raw response.
    `codec` limits the viewer to one video codec ("H264" or "VP8")."""
    pc = new_pc()
    viewer = Viewer(pc)
    pc.on("track", viewer.on_track)
    for _ in range(video_lines):
        t = pc.addTransceiver("video", direction="recvonly")
        if codec is not None:
            t.setCodecPreferences(_codecs_named(codec))
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    resp = await api.post(path, {**await offer_of(pc), **(extra or {})}, token=token)
    if resp.status == 200:
        viewer.pc_id = resp.json["pc_id"]
        await pc.setRemoteDescription(RTCSessionDescription(resp.json["sdp"], "answer"))
    else:
        await pc.close()
    return viewer, resp


def plane_means(frame: av.VideoFrame, x0: float, y0: float, x1: float, y1: float) -> float:
    """Mean V (red-difference chroma) over a rectangle given in fractions of the frame."""
    v = frame.to_ndarray(format="yuv420p")
    h, w = frame.height, frame.width
    v_plane = v[h + h // 4 :, :].reshape(h // 2, w // 2)
    return float(
        v_plane[int(y0 * h / 2) : int(y1 * h / 2), int(x0 * w / 2) : int(x1 * w / 2)].mean()
    )


async def start_session(api: Any, streams: tuple[str, ...] = ("screen", "camera")) -> dict:
    resp = await api.post(
        f"{PREFIX}/session/start",
        {"title": "media test", "streams": list(streams)},
        token=api.broadcaster_token,
    )
    assert resp.status == 201, resp.body
    return resp.json


async def publish_both(
    api: Any,
    screen: tuple[int, int, float] = (640, 360, 10),
    camera: tuple[int, int, float] = (320, 240, 15),
) -> tuple[str, str, list[Any]]:
    """A session with its screen and camera published as test patterns (width, height, fps):
    (session id, broadcaster token, publishers)."""
    started = await start_session(api)
    session_id, token = started["session"]["id"], started["broadcaster_token"]
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    pubs = [
        await publish(api, token, streams["screen"], PatternTrack("screen", *screen)),
        await publish(api, token, streams["camera"], PatternTrack("camera", *camera)),
    ]
    return session_id, token, pubs


async def join(api: Any, session_id: str, prefs: dict | None = None) -> dict:
    resp = await api.post(f"{PREFIX}/session/{session_id}/join")
    assert resp.status == 200, resp.body
    joined = resp.json
    if prefs is not None:
        put = await api.put(
            f"{PREFIX}/session/{session_id}/preferences", prefs, token=joined["viewer_token"]
        )
        assert put.status == 200, put.body
    return joined


async def wait_stream_status(
    store: Any, stream_id: str, status: str, timeout: float = 10.0
) -> None:
    """Wait until the media plane has written `status` for the stream (it follows the connection)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = await store.get("broadcast_streams", stream_id)
        if doc is not None and doc["status"] == status:
            return
        assert time.monotonic() < deadline, f"stream stayed {doc and doc['status']}, not {status}"
        await asyncio.sleep(0.02)


async def view_composite(
    api: Any,
    session_id: str,
    pip: dict[str, Any] | None = None,
    *,
    audio: bool = False,
) -> tuple[Viewer, dict]:
    """Join a new viewer in composite mode (screen + camera, `pip` layout) and subscribe to its
    composite feed; returns the viewer and its join answer (for its token)."""
    prefs: dict[str, Any] = {"enabled_streams": ["screen", "camera"], "mode": "composite"}
    if pip is not None:
        prefs["pip"] = pip
    joined = await join(api, session_id, prefs)
    viewer, resp = await view(
        api,
        joined["viewer_token"],
        f"{PREFIX}/session/{session_id}/composite/signal/offer",
        audio=audio,
    )
    assert resp.status == 200, resp.body
    return viewer, joined


def write_recording(
    path: Path, pattern: str, seconds: float, size: tuple[int, int], fps: int = 15
) -> Path:
    """A Matroska file as the recorder writes them (VP8, pts from 0) of the screen or camera test
    pattern: what the replay tests and `bench.replay_render` compose."""
    width, height = size
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for i in range(int(seconds * fps)):
            pixels = screen_pattern(*size) if pattern == "screen" else camera_pattern(*size, i)
            frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
            frame.pts, frame.time_base = i, fractions.Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
