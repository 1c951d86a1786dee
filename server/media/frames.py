"""Latest-frame hand-off between a producer (a decoder, a compositor) and its consumers.

Like aiortc's `MediaRelay`, consumers always get the newest frame and never queue: a consumer that
falls behind simply skips frames, so nothing grows with a slow consumer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import av

HISTORY = 3


class LatestFrame:
    """Holds the most recent video frames and wakes every waiter when a new one arrives.

    A few frames are kept so a consumer woken late (a busy event loop delivers two decoded frames
    back to back) still gets both in order; one further behind skips to what is kept.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.frame: av.VideoFrame | None = None
        self.seq = 0
        self.updated_at = 0.0
        self.closed = False
        self._recent: deque[tuple[int, av.VideoFrame]] = deque(maxlen=HISTORY)
        self._waiting = 0
        self._last_read = 0.0
        self._warm_until = 0.0
        self._waiter: asyncio.Future[None] | None = None

    def publish(self, frame: av.VideoFrame) -> None:
        self.frame = frame
        self.seq += 1
        self._recent.append((self.seq, frame))
        self.updated_at = time.monotonic()
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def fresh(self, max_age_s: float) -> bool:
        """True when a frame arrived within `max_age_s` (the producer is alive, not frozen)."""
        return (
            not self.closed
            and self.frame is not None
            and (time.monotonic() - self.updated_at <= max_age_s)
        )

    def latest(self) -> av.VideoFrame | None:
        """The newest frame without waiting; counts as reading (keeps the producer decoding)."""
        self._last_read = time.monotonic()
        return self.frame

    def wanted(self, within_s: float = 2.0) -> bool:
        """Whether anyone reads these frames (waiting now, or read recently): the ingest decodes
        only then."""
        return self._waiting > 0 or time.monotonic() - self._last_read < within_s

    def keep_warm(self, seconds: float) -> None:
        """Ask the producer to keep frames coming for `seconds` without a reader yet: a viewer
        whose link is still unproven may soon need an encoded rung, and a decoder started only
        then would ask the publisher for a key frame that every other viewer receives too."""
        self._warm_until = max(self._warm_until, time.monotonic() + seconds)

    def warm(self) -> bool:
        return time.monotonic() < self._warm_until

    async def next(
        self, after_seq: int, timeout: float | None = None
    ) -> tuple[int, av.VideoFrame] | None:
        """The first frame newer than `after_seq`; None when closed or after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._last_read = time.monotonic()
        while not self.closed:
            if self.seq > after_seq:
                for seq, frame in self._recent:
                    if seq > after_seq:
                        return seq, frame
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._waiting += 1
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), remaining)
            except TimeoutError:
                return None
            finally:
                self._waiting -= 1
                self._last_read = time.monotonic()
        return None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None
