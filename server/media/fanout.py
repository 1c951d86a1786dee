"""Packet fan-out: one encoded stream, many viewers' senders, nothing re-encoded per viewer.

aiortc's `RTCRtpSender` encodes every *frame* its track returns, but only packetizes an `av.Packet`
(`encoder.pack`). So each viewer's sender gets a `ViewerTrack` whose `recv()` returns the packets of
a shared encoder. Every broadcast keeps a short ring of recent packets; a viewer that falls more than
the ring behind loses those packets, waits for the next key frame (asking for one) and carries on —
a slow viewer drops frames instead of growing memory, and never slows the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

RING_SIZE = 24


@dataclass(slots=True)
class _Item:
    index: int
    packet: av.Packet
    key: bool


class PacketBroadcast:
    """The output of one shared encoder (or an ingest's audio): a bounded ring and its readers."""

    def __init__(
        self,
        name: str,
        *,
        keyframes: bool = True,
        on_keyframe_request: Callable[[], None] | None = None,
        on_idle: Callable[[PacketBroadcast], None] | None = None,
    ) -> None:
        self.name = name
        self.keyframes = keyframes
        self.on_keyframe_request = on_keyframe_request
        self.on_idle = on_idle
        self.ring: deque[_Item] = deque(maxlen=RING_SIZE)
        self.next_index = 0
        self.readers = 0
        self.dropped = 0
        self.closed = False
        self._event = asyncio.Event()

    def publish(self, packet: av.Packet, key: bool = True) -> None:
        self.ring.append(_Item(self.next_index, packet, key or not self.keyframes))
        self.next_index += 1
        self._wake()

    def request_keyframe(self) -> None:
        if self.keyframes and self.on_keyframe_request is not None:
            self.on_keyframe_request()

    def attach(self) -> None:
        self.readers += 1

    def detach(self) -> None:
        self.readers -= 1
        if self.readers <= 0 and self.on_idle is not None:
            self.on_idle(self)

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self) -> None:
        await self._event.wait()


class ViewerTrack(MediaStreamTrack):
    """One viewer's track over a `PacketBroadcast`; `switch()` moves it to another source live.

    `recv()` returns `av.Packet`s (pts and time_base set), which the sender only packetizes.
    """

    def __init__(self, kind: str, source: PacketBroadcast, *, persistent: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self._source = source
        # Persistent: when the source closes, wait for `switch()` instead of ending the track.
        self._persistent = persistent
        self._switched = asyncio.Event()
        self._next: int | None = None
        self._attached_at = source.next_index
        self._need_key = source.keyframes
        self.dropped = 0
        self.delivered = 0
        source.attach()
        source.request_keyframe()

    @property
    def source(self) -> PacketBroadcast:
        return self._source

    def switch(self, source: PacketBroadcast) -> None:
        """Follow another broadcast (a new layout): resume at its next key frame."""
        if source is self._source:
            return
        old = self._source
        self._source = source
        self._next = None
        self._attached_at = source.next_index
        self._need_key = source.keyframes
        source.attach()
        source.request_keyframe()
        old.detach()
        old._wake()  # a recv() parked on the old source re-reads the new one
        self._switched.set()

    def request_keyframe(self) -> None:
        """Wired to the sender's PLI/FIR handling."""
        self._source.request_keyframe()

    def stop(self) -> None:
        if self.readyState == "live":
            self._source.detach()
        super().stop()

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source = self._source
            if source.closed:
                if self._persistent:
                    self._switched.clear()
                    await self._switched.wait()
                    continue
                self.stop()
                raise MediaStreamError
            packet = self._take(source)
            if packet is not None:
                self.delivered += 1
                return packet
            await source.wait()

    def _take(self, source: PacketBroadcast) -> av.Packet | None:
        ring = source.ring
        if not ring:
            return None
        first = ring[0].index
        last = ring[-1].index
        if self._next is None:
            # Start at the newest key frame still in the ring, else at what was published
            # since this reader attached.
            self._next = max(self._attached_at, first)
            if self._need_key:
                for item in reversed(ring):
                    if item.key:
                        self._next = item.index
                        break
        elif self._next < first:
            lost = first - self._next
            self.dropped += lost
            source.dropped += lost
            self._next = last + 1
            if source.keyframes:
                self._need_key = True
                source.request_keyframe()
        while self._next <= last:
            item = ring[self._next - first]
            self._next += 1
            if self._need_key and not item.key:
                # Cannot be decoded without the key frame it depends on. Keep asking while
                # waiting: a single request can fall inside the publisher's PLI rate limit or be
                # lost, and a browser's own key frames may be minutes apart.
                source.request_keyframe()
                continue
            self._need_key = False
            return item.packet
        return None
