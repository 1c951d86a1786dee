"""Per-layout composite feeds: the screen with the camera picture-in-picture, built once per layout.

Viewers who chose the same layout (corner, size, enabled streams) share one `CompositeFeed` and its
encoders. The feed's frame rate follows the camera; the latest screen frame is reused between screen
updates. If the camera dies (or is not enabled) the feed shows the screen alone, and vice versa.

A composite whose screen carries text (`screen_fps` set: it is encoded at the screen's rate) is led
by the **screen** instead: each new screen frame is composed at once with the latest camera frame,
so every screen frame reaches the encoder (none sampled twice or skipped by a camera-paced clock)
and adds no wait for the next camera tick. While the screen is still (a static page sends few
frames), the camera inset still moves at `screen_fps`.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import av

import compositor
from server.media.frames import HISTORY, LatestFrame
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_TIME_BASE = fractions.Fraction(1, 90000)
# A screen whose own clock drifts from arrival by more than this has restarted: re-anchor.
_REANCHOR_S = 1.0
# A producer that sent nothing for this long is treated as gone (frozen or dead publisher).
STALE_S = 1.0
POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class LayoutKey:
    """What makes two viewers' composites identical."""

    session_id: str
    corner: str
    size_pct: int
    kinds: tuple[str, ...]

    @property
    def name(self) -> str:
        return (
            f"session={self.session_id} layout={self.corner}/{self.size_pct}/{'+'.join(self.kinds)}"
        )


SourceLookup = Callable[[str, str], LatestFrame | None]


class CompositeFeed:
    """Runs one compositor for one layout; its output is a `LatestFrame` the encoders read."""

    def __init__(
        self,
        key: LayoutKey,
        sources: SourceLookup,
        executor: Executor,
        screen_fps: int | None = None,
    ) -> None:
        self.key = key
        self.screen_fps = screen_fps
        self.output = LatestFrame(key.name)
        self.frames_composed = 0
        self.mode = "idle"  # "composite" | "screen" | "camera" | "idle": what the feed shows now
        self._sources = sources
        self._executor = executor
        self._layout = compositor.Layout(corner=key.corner, size_pct=key.size_pct)  # type: ignore[arg-type]
        self._compositor: Any = None
        self._canvas: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        # The screen-led clock (`_stamp`): seconds on the monotonic clock's scale.
        self._offset: float | None = None
        self._last_stamp = self._last_wall = time.monotonic()
        self._next_due = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.key.name)

    async def close(self) -> None:
        self.output.close()
        await cancel_and_wait(self._task)
        self._task = None

    def _source(self, kind: str) -> LatestFrame | None:
        return self._sources(self.key.session_id, kind) if kind in self.key.kinds else None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        cam_seq = 0
        screen_seq = 0
        interval = 1.0 / self.screen_fps if self.screen_fps else 0.0
        last_out = last_screen = 0.0
        try:
            while not self.output.closed:
                camera = self._source("camera")
                screen = self._source("screen")
                if interval and screen is not None and not screen.closed:
                    screen_seq, last_out, last_screen = await self._screen_led(
                        screen, camera, screen_seq, interval, last_out, last_screen
                    )
                    continue
                # A screen is reused as long as its stream lives: static content sends few frames.
                screen_live = screen is not None and not screen.closed
                camera_live = camera is not None and (
                    camera.fresh(STALE_S) or (camera.frame is None and not camera.closed)
                )
                cam_frame: av.VideoFrame | None = None
                screen_frame: av.VideoFrame | None = None
                if camera is not None and camera_live:
                    # Camera cadence: one output per camera frame.
                    got = await camera.next(cam_seq, timeout=POLL_S)
                    if got is not None:
                        cam_seq, cam_frame = got
                        screen_frame = (
                            screen.latest() if screen is not None and screen_live else None
                        )
                    elif camera.frame is None and screen is not None and screen_live:
                        # Camera negotiated but silent so far: keep the screen going.
                        got_screen = await screen.next(screen_seq, timeout=POLL_S)
                        if got_screen is None:
                            continue
                        screen_seq, screen_frame = got_screen
                    else:
                        continue
                elif screen is not None and screen_live:
                    if camera is not None:
                        camera.latest()  # keep it decoded, so we notice when it comes back
                    got = await screen.next(screen_seq, timeout=POLL_S)
                    if got is None:
                        continue
                    screen_seq, screen_frame = got
                else:
                    self.mode = "idle"
                    await asyncio.sleep(POLL_S)
                    continue
                frame = await loop.run_in_executor(
                    self._executor, self._compose, screen_frame, cam_frame
                )
                self.frames_composed += 1
                self.output.publish(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s compositor failed", self.key.name)
            self.output.close()

    async def _screen_led(
        self,
        screen: LatestFrame,
        camera: LatestFrame | None,
        seq: int,
        interval: float,
        last_out: float,
        last_screen: float,
    ) -> tuple[int, float, float]:
        """One step of a text composite: a new screen frame composed at once; a camera refresh
        only when the screen has been still for two of its frame times (a moving screen's own
        frames already carry the camera along). Returns the new (seq, last_out, last_screen)."""
        now = time.monotonic()
        gap = interval if now - last_screen > 2 * interval else 2 * interval
        got = await screen.next(seq, timeout=min(max(0.001, last_out + gap - now), POLL_S))
        cam = camera if camera is not None and camera.fresh(STALE_S) else None
        if camera is not None:
            camera.latest()  # keep it decoded (a dead camera is noticed when it comes back)
        screen_frame: av.VideoFrame | None
        if got is not None:
            seq, screen_frame = got
            last_screen = time.monotonic()
            if self._too_soon(screen_frame, interval):
                # A screen faster than the composite's rate: its next frame is taken instead.
                return seq, last_out, last_screen
        elif cam is None or time.monotonic() - last_out < gap:
            return seq, last_out, last_screen
        else:
            screen_frame = screen.latest()
        cam_frame = cam.latest() if cam is not None else None
        if screen_frame is None and cam_frame is None:
            return seq, last_out, last_screen
        last_out = time.monotonic()
        stamp = self._stamp(screen_frame if got is not None else None, last_out)
        self._next_due = max(self._next_due, stamp - interval) + interval
        frame = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._compose, screen_frame, cam_frame
        )
        frame.pts, frame.time_base = int(stamp * 90000), _TIME_BASE
        self.frames_composed += 1
        self.output.publish(frame)
        return seq, last_out, last_screen

    def _too_soon(self, screen: av.VideoFrame, interval: float) -> bool:
        media = screen.time
        if media is None or self._offset is None:
            return False
        stamp = media + self._offset
        if abs(stamp - time.monotonic()) > _REANCHOR_S:
            return False  # a restarted screen clock: `_stamp` re-anchors it
        # The encoder's own rule (server/media/encoder.py): a frame is due once the previous one
        # is an interval old, a quarter of an interval early allowed. A 23 fps screen under a
        # 15 fps cap then gives ~14 fps, not every other frame (11.5).
        return stamp < self._next_due - interval / 4

    def _stamp(self, screen: av.VideoFrame | None, wall: float) -> float:
        """The output's time: the screen frame's own time when it leads (a burst of frames that
        arrived late keeps the publisher's spacing, so the encoder's frame-rate cap passes each),
        the wall clock since the last output for a camera refresh."""
        media = screen.time if screen is not None else None
        if media is not None:
            if self._offset is None or abs(media + self._offset - wall) > _REANCHOR_S:
                self._offset = wall - media
            stamp = media + self._offset
        else:
            stamp = self._last_stamp + (wall - self._last_wall)
        stamp = max(stamp, self._last_stamp + 0.001)
        self._last_stamp, self._last_wall = stamp, wall
        return stamp

    def _compose(self, screen: av.VideoFrame | None, camera: av.VideoFrame | None) -> av.VideoFrame:
        """Runs in the executor. The canvas is the screen's size, kept when the screen goes away so
        the encoder (and viewers) see no resolution change on fallback; camera-only before any
        screen uses the camera's size."""
        if screen is not None:
            canvas = (screen.width - screen.width % 2, screen.height - screen.height % 2)
        else:
            assert camera is not None
            canvas = self._canvas or (
                camera.width - camera.width % 2,
                camera.height - camera.height % 2,
            )
        if self._compositor is None or canvas != self._canvas:
            # Output frames come from a ring: `frames.HISTORY` of them may still be read by a
            # lagging encoder, so the ring is two longer than that.
            self._compositor = compositor.Compositor(self._layout, size=canvas, buffers=HISTORY + 2)
            self._canvas = canvas
        self.mode = (
            "composite"
            if screen is not None and camera is not None
            else ("screen" if screen is not None else "camera")
        )
        out = self._compositor.compose(screen, camera)
        if camera is not None:
            # The camera drives the composite's rate, so its timing is the composite's timing.
            out.pts = camera.pts
            out.time_base = camera.time_base
        return out
