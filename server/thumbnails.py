"""Stream-list thumbnails: a small JPEG of a live session's latest screen frame (the camera's when
the session has no screen on air), rendered on request and at most every `min_interval_s`.

Nothing renders unless someone asks: the stream list fetches a thumbnail per card every few
seconds while it is open, and every request within the interval is answered from the cache.
Reading the latest frame counts as reading for the ingest (`LatestFrame.latest`), so decoding stays
on while the list is open and stops (after the ingest's linger) once nobody looks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Protocol

import av

WIDTH: Final = 320
HEIGHT: Final = 180
MIN_INTERVAL_S: Final = 5.0
# Cached thumbnails of sessions nobody asked about for this long are dropped.
_FORGET_S: Final = 60.0


class FrameSource(Protocol):
    """The media plane's read-only accessor for a stream's newest decoded frame."""

    def latest_frame(self, session_id: str, kind: str) -> av.VideoFrame | None: ...


def render_jpeg(frame: av.VideoFrame, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """`frame` scaled to `width`×`height` (16:9, like the cards) as a baseline JPEG."""
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.options = {"q": "6"}
    small.pts = 0
    packets = [*codec.encode(small), *codec.encode(None)]
    return b"".join(bytes(p) for p in packets)


@dataclass(slots=True)
class _Cached:
    at: float
    jpeg: bytes | None
    asked: float


class Thumbnails:
    """Per-session JPEG cache in front of `render_jpeg`; renders run off the event loop."""

    def __init__(self, frames: FrameSource, *, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.frames = frames
        self.min_interval_s = min_interval_s
        self.renders = 0
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def jpeg(self, session_id: str) -> bytes | None:
        """The session's thumbnail, or None while it has no decoded frame yet."""
        now = time.monotonic()
        self._forget(now)
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:  # one render per session however many lists ask at once
            cached = self._cache.get(session_id)
            if cached is not None:
                cached.asked = now
                if now - cached.at < self.min_interval_s:
                    return cached.jpeg
            frame = self.frames.latest_frame(session_id, "screen") or self.frames.latest_frame(
                session_id, "camera"
            )
            if frame is None:
                return cached.jpeg if cached is not None else None
            jpeg = await asyncio.get_running_loop().run_in_executor(None, render_jpeg, frame)
            self.renders += 1
            self._cache[session_id] = _Cached(time.monotonic(), jpeg, now)
            return jpeg

    def forget(self, session_id: str) -> None:
        self._cache.pop(session_id, None)
        self._locks.pop(session_id, None)

    def _forget(self, now: float) -> None:
        for session_id in [s for s, c in self._cache.items() if now - c.asked > _FORGET_S]:
            self.forget(session_id)
