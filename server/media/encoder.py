"""One shared encoder per (source, codec): frames in, `av.Packet`s out to every viewer.

Encoding runs in the plane's executor so the event loop keeps packetizing for viewers meanwhile.
Key frames are forced when a viewer joins or sends PLI/FIR, at most once per `KEYFRAME_MIN_GAP_S`
(requests in between are coalesced into the next allowed one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import av
import numpy as np

import compositor
from server.media.codecs import TIME_BASE, EncodeProfile, capped_size, create_context
from server.media.fanout import PacketBroadcast
from server.media.frames import LatestFrame
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

KEYFRAME_MIN_GAP_S = 0.5


def copy_into(src: av.VideoFrame, dst: av.VideoFrame) -> None:
    """Copy yuv420p planes (same size) into a reused frame: ~0.1 ms at 1080p, no allocation."""
    for sp, dp in zip(src.planes, dst.planes, strict=True):
        h = dp.height
        w = dp.width
        s = np.frombuffer(memoryview(sp), np.uint8).reshape(-1, sp.line_size)
        d = np.frombuffer(memoryview(dp), np.uint8).reshape(-1, dp.line_size)
        d[:h, :w] = s[:h, :w]


class _MediaClock:
    """Output timestamps on the plane's shared clock that keep the source's own frame spacing.

    Wall-clock stamps alone would carry the event loop's jitter into the RTP timestamps (and make
    a frame-rate cap drop frames that merely arrived in a burst); source timestamps alone would
    jump when the source changes (publisher reconnect, composite fallback). So the source time is
    anchored to the wall clock once, and re-anchored — continuing from the last stamp — only when
    it jumps by seconds (a new source), never for ordinary jitter.
    """

    MAX_DRIFT_S = 2.0

    def __init__(self, epoch: float) -> None:
        self._epoch = epoch
        self._offset: float | None = None
        self._last = -1.0

    def reset(self) -> None:
        self._offset = None

    def repeat(self, now: float) -> float:
        """A stamp for re-sending the previous picture: now, and after the last stamp."""
        stamped = max(now - self._epoch, self._last + 0.001)
        self._last = stamped
        self._offset = None  # the next source frame re-anchors after the pause
        return stamped

    def stamp(self, frame: av.VideoFrame, now: float, offset_ticks: int | None = None) -> float:
        if offset_ticks is not None and frame.pts is not None and frame.time_base == TIME_BASE:
            # On the stream's own timeline (the one its forwarded packets carry): a viewer moved
            # between the original and a rung sees the same frame at the same time.
            stamped = max((frame.pts + offset_ticks) / 90000, self._last + 0.001)
            self._last = stamped
            self._offset = None
            return stamped
        wall = now - self._epoch
        media = frame.time
        if media is None:
            stamped = wall
        else:
            if self._offset is None or abs(media + self._offset - wall) > self.MAX_DRIFT_S:
                self._offset = max(wall, self._last + 0.001) - media
            stamped = media + self._offset
        # Strictly increasing: equal pts would make the sender's RTP timestamps repeat.
        stamped = max(stamped, self._last + 0.001)
        self._last = stamped
        return stamped


class SharedEncoder:
    """Encodes the frames of one `LatestFrame` once, for every viewer of one codec."""

    def __init__(
        self,
        name: str,
        source: LatestFrame,
        codec: str,
        profile: EncodeProfile,
        executor: Executor,
        epoch: float,
        on_idle: Callable[[SharedEncoder], None] | None = None,
        timeline: Callable[[], int | None] | None = None,
    ) -> None:
        self.name = name
        self._timeline = timeline
        self.source = source
        self.codec = codec
        self.profile = profile
        self.broadcast = PacketBroadcast(
            name, on_keyframe_request=self.request_keyframe, on_idle=self._idle
        )
        self.frames_encoded = 0
        self.frames_skipped = 0
        # Frames the rate control chose not to encode (constrained VP8 rungs, after a big frame).
        self.frames_dropped = 0
        self._executor = executor
        self._epoch = epoch
        self._on_idle = on_idle
        self._ctx: Any = None
        self._buffer: av.VideoFrame | None = None
        self._reformatter = av.video.reformatter.VideoReformatter()
        self._scaler: Any = None  # compositor.Scaler down to the profile's height cap
        self._key_wanted = True
        self._last_key = 0.0
        self._pinned = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def pin(self) -> None:
        """Keep running without viewers (the recorder reads this encoder)."""
        self._pinned += 1

    def unpin(self) -> None:
        self._pinned -= 1
        self._idle(self.broadcast)

    def set_source(self, source: LatestFrame) -> None:
        """Follow a new producer (a publisher reconnected); the next frame is a key frame."""
        self.source = source
        self._key_wanted = True

    def request_keyframe(self) -> None:
        self._key_wanted = True

    async def close(self) -> None:
        self.broadcast.close()
        await cancel_and_wait(self._task)
        self._task = None

    def _idle(self, _broadcast: PacketBroadcast) -> None:
        if self.broadcast.readers <= 0 and self._pinned <= 0 and self._on_idle is not None:
            self._on_idle(self)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        source = self.source
        clock = _MediaClock(self._epoch)
        interval = 1.0 / self.profile.fps
        next_due = -1.0
        try:
            while not self.broadcast.closed:
                if source is not self.source:
                    source, seq = self.source, 0
                    clock.reset()
                got = await source.next(seq, timeout=0.5)
                now = time.monotonic()
                if got is None:
                    if source.closed and source is self.source:
                        await asyncio.sleep(0.05)
                        continue
                    if (
                        not self._key_wanted
                        or source.frame is None
                        or now - self._last_key < KEYFRAME_MIN_GAP_S
                    ):
                        continue
                    # A still source (a static screen sends nothing new): a viewer that just joined
                    # still needs a key frame, so the last picture is encoded again as one.
                    frame = source.frame
                    pts_s = clock.repeat(now)
                else:
                    seq, frame = got
                    offset = self._timeline() if self._timeline is not None else None
                    pts_s = clock.stamp(frame, now, offset)
                    # Frame-rate cap on the frames' own timeline (arrival is bursty when the loop
                    # is busy): sources at or under the cap all pass, faster ones are thinned.
                    if pts_s < next_due - interval / 4:
                        self.frames_skipped += 1
                        continue
                next_due = max(next_due, pts_s - interval) + interval
                key = self._key_wanted and now - self._last_key >= KEYFRAME_MIN_GAP_S
                last_key = self._last_key
                if key:
                    self._key_wanted = False
                    self._last_key = now
                pts = int(pts_s / TIME_BASE)
                packets = await loop.run_in_executor(self._executor, self._encode, frame, key, pts)
                if not packets:
                    # The rate control skipped this frame (a constrained rung after a big one):
                    # a key frame asked for is still owed.
                    self.frames_dropped += 1
                    if key:
                        self._key_wanted, self._last_key = True, last_key
                for packet in packets:
                    self.broadcast.publish(packet, packet.is_keyframe)
        except asyncio.CancelledError:
            raise
        except Exception:
            # An encoder failure ends this output only; its viewers' tracks end with it.
            log.exception("encoder=%s failed", self.name)
            self.broadcast.close()

    def _encode(self, frame: av.VideoFrame, key: bool, pts: int) -> list[av.Packet]:
        """Runs in the executor: own a copy of the frame (scaled down to the quality preset's
        height when taller), stamp it, encode it."""
        width, height = capped_size(frame.width, frame.height, self.profile.max_height)
        if self._ctx is None or (self._ctx.width, self._ctx.height) != (width, height):
            self._ctx = create_context(self.codec, width, height, self.profile)
            self._buffer = av.VideoFrame(width, height, "yuv420p")
            key = True
            log.info(
                "encoder=%s codec=%s size=%dx%d tuning=%s fps=%d",
                self.name,
                self.codec,
                width,
                height,
                self.profile.tuning,
                self.profile.fps,
            )
        assert self._buffer is not None
        if frame.format.name == "yuv420p" and (frame.width, frame.height) == (width, height):
            copy_into(frame, self._buffer)
            buffer = self._buffer
        elif frame.height > height:
            # Over the preset's size: area-filtered (text stays legible), into the reused buffer.
            if self._scaler is None or (self._scaler.width, self._scaler.height) != (width, height):
                self._scaler = compositor.Scaler(width, height, buffers=1)
            buffer = self._scaler.scale(frame, self._buffer)
        else:
            buffer = self._reformatter.reformat(frame, width, height, "yuv420p")
        buffer.pts = pts
        buffer.time_base = TIME_BASE
        buffer.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
        packets = list(self._ctx.encode(buffer))
        for packet in packets:
            packet.time_base = TIME_BASE
        self.frames_encoded += 1
        return packets
