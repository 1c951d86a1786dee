"""Scaled-down variants of a stream for viewers who ask for less bandwidth (`max_height`).

One `ScaledFeed` per (stream, height) scales the stream's decoded frames with the compositor's
kernel (area filter, reused buffers) into its own `LatestFrame`; the shared encoders of that variant
read it like any other source. A source already no taller than the variant passes through as is.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any

import av

import compositor
from server.errors import Invalid
from server.media.frames import HISTORY, LatestFrame
from server.tasks import cancel_and_wait
from server.validation import as_int

log = logging.getLogger(__name__)

VARIANT_HEIGHTS = (180, 360, 540, 720, 1080)
# What a viewer may ask for as `max_height` (the request schema reads these too).
MAX_HEIGHT_MIN = 90
MAX_HEIGHT_MAX = 4320


def variant_height(raw: object) -> int | None:
    """The variant for an offer's optional `max_height`: the tallest standard height under it."""
    if raw is None:
        return None
    height = as_int(raw)
    if height is None or not MAX_HEIGHT_MIN <= height <= MAX_HEIGHT_MAX:
        raise Invalid(
            f"max_height must be an integer from {MAX_HEIGHT_MIN} to {MAX_HEIGHT_MAX}",
            code="invalid_max_height",
        )
    raw = height
    fitting = [h for h in VARIANT_HEIGHTS if h <= raw]
    return fitting[-1] if fitting else VARIANT_HEIGHTS[0]


class ScaledFeed:
    """Scales one stream's frames to at most `height` lines, keeping the aspect ratio."""

    def __init__(self, name: str, source: LatestFrame, height: int, executor: Executor) -> None:
        self.name = name
        self.source = source
        self.height = height
        self.output = LatestFrame(name)
        self.frames_scaled = 0
        self._executor = executor
        self._scaler: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def close(self) -> None:
        self.output.close()
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        try:
            while not self.output.closed:
                got = await self.source.next(seq, timeout=0.5)
                if got is None:
                    if self.source.closed:
                        return
                    continue
                seq, frame = got
                out = await loop.run_in_executor(self._executor, self._scale, frame)
                self.frames_scaled += 1
                self.output.publish(out)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s scaling failed", self.name)
            self.output.close()

    def _scale(self, frame: av.VideoFrame) -> av.VideoFrame:
        if frame.height <= self.height:
            return frame
        height = self.height
        width = max(2, round(frame.width * height / frame.height / 2) * 2)
        if self._scaler is None or (self._scaler.width, self._scaler.height) != (width, height):
            # Ring longer than what a lagging encoder may still hold (`frames.HISTORY`).
            self._scaler = compositor.Scaler(width, height, buffers=HISTORY + 2)
        return self._scaler.scale(frame)
