"""Packet fan-out: one encoded stream, many viewers' senders, nothing re-encoded per viewer.

aiortc's `RTCRtpSender` encodes every *frame* its track returns, but only packetizes an `av.Packet`
(`encoder.pack`). So each viewer's sender gets a `ViewerTrack` whose `recv()` returns the packets of
a shared encoder. Every broadcast keeps a short ring of recent packets; a viewer that falls more than
the ring behind loses those packets, waits for the next key frame (asking for one) and carries on —
a slow viewer drops frames instead of growing memory, and never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

RING_SIZE = 24
# A frame that waited this long for the viewer's link is not worth sending any more: the viewer
# drops to the next key frame instead of falling further behind real time. (A full-size key frame
# of scrolling text is ~0.6 s of a 1 Mbit link: the frames behind it must survive that, or every
# key frame makes the next one necessary.)
LATE_S = 1.5
# Key-frame requests that would reach viewers other than the asker (a recovering or switching
# viewer on a shared source) pass at most this often; a viewer alone on its source less often than
# a key frame takes to cross a slow link.
SHARED_KEY_GAP_S = 10.0
ALONE_KEY_GAP_S = 1.5
# A viewer climbing back to a shared source (a "switch") has a picture and loses nothing by
# waiting: the key frame it wants would reach every reader, so it is asked for even more rarely
# (a join's key frame, which every reader gets anyway, completes the climb sooner).
SHARED_SWITCH_GAP_S = 30.0
# While a switch waits for the target's key frame, the viewer keeps its current source and
# looks at the target this often.
SWITCH_POLL_S = 0.02
# A switch still waiting for its key frame asks again this often (the source's rate limit decides).
SWITCH_REASK_S = 1.0
RATE_WINDOW_S = 2.0
# A rate peak fades to half in ~13 windows (~26 s).
PEAK_DECAY = 0.95
# After a switch whose key frame is older than what the viewer last got: the gap put between them.
SWITCH_STEP_TICKS = 1500  # 1/60 s at 90 kHz
# The GOP cache: the last key frame and the frames that followed it, kept while they are at most
# this old / this many / this big (a cache that grows past a bound is dropped until the next key
# frame; memory stays bounded however rarely the source makes key frames).
GOP_MAX_AGE_S = 2.0
GOP_MAX_FRAMES = 120
GOP_MAX_BYTES = 4_000_000
# A viewer that lost its picture (PLI) on a shared source gets the cached GOP again — the others
# get nothing — when the burst is cheap: at most this many times the key frame's size...
GOP_KEY_MULTIPLE = 4
# ...and no more than this long on its link at its estimate (the frames behind the burst must
# still arrive well inside `LATE_S`, and before the ring — 0.8 s at 30 fps — passes the reader).
GOP_BURST_S = 0.5
# Replayed frames follow the viewer's last timestamp this far apart (then live frames resume
# after them): the decoder catches up at once instead of the timeline jumping by the GOP's age.
REPLAY_STEP_S = 0.001


def _restamped(packet: av.Packet, pts: int | None) -> av.Packet:
    """A copy of a shared packet at `pts`, for a reader of `recv()` whose timeline is shifted
    (the RTP loop reads `recv_shared` and copies nothing)."""
    copy = av.Packet(bytes(packet))
    copy.pts = pts
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy


def _replay_step(packet: av.Packet) -> int:
    """`REPLAY_STEP_S` in the packet's time base (90 kHz when it has none)."""
    base = packet.time_base or Fraction(1, 90000)
    return max(1, int(Fraction(REPLAY_STEP_S) / base))


@dataclass(slots=True)
class RingItem:
    """One published frame. Its RTP payloads are cut once for every viewer sending it
    (`shared`, server/media/rtpsend.py), not once per viewer."""

    index: int
    packet: av.Packet
    key: bool
    at: float
    # (codec, value) of the last `shared` call: a source has one codec.
    packed: tuple[str, Any] | None = None

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """This frame's value for codec `key` (its RTP payloads), made by the first viewer
        that asks and kept while the frame is in the ring or the GOP cache."""
        packed = self.packed
        if packed is None or packed[0] != key:
            packed = self.packed = (key, make())
        return packed[1]


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
        self.ring: deque[RingItem] = deque(maxlen=RING_SIZE)
        self.next_index = 0
        self.readers = 0
        self.dropped = 0
        self.closed = False
        self.keyframes_published = 0
        self.key_requests_forwarded = 0
        self.key_requests_suppressed = 0
        # Per reason (see `request_keyframe`): who asks this source for key frames.
        self.key_requests: dict[str, int] = {}
        self.key_requests_suppressed_by: dict[str, int] = {}
        # Requests answered from the GOP cache instead (per reason), and what that replayed.
        self.key_requests_cached: dict[str, int] = {}
        self.gop_replayed_frames = 0
        self.gop_replayed_bytes = 0
        self.gop: list[RingItem] = []
        self.gop_bytes = 0
        self._last_shared_request = -SHARED_KEY_GAP_S
        self.started_at = time.monotonic()
        self._window_start = self.started_at
        self._window_bytes = 0
        self._rate_bps = 0.0
        self._peak_bps = 0.0
        self._event = asyncio.Event()

    def publish(self, packet: av.Packet, key: bool = True) -> None:
        now = time.monotonic()
        key = key or not self.keyframes
        item = RingItem(self.next_index, packet, key, now)
        self.ring.append(item)
        self.next_index += 1
        if key:
            self.keyframes_published += 1
        if self.keyframes:
            self._keep_gop(item, now)
        self._window_bytes += packet.size
        if now - self._window_start >= RATE_WINDOW_S:
            self._rate_bps = self._window_bytes * 8 / (now - self._window_start)
            self._peak_bps = max(self._rate_bps, self._peak_bps * PEAK_DECAY)
            self._window_start, self._window_bytes = now, 0
        self._wake()

    def _keep_gop(self, item: RingItem, now: float) -> None:
        """Keep the last key frame and what followed, within the GOP cache's bounds."""
        if item.key:
            self.gop, self.gop_bytes = [item], item.packet.size
        elif self.gop:
            size = item.packet.size
            if (
                len(self.gop) >= GOP_MAX_FRAMES
                or self.gop_bytes + size > GOP_MAX_BYTES
                or now - self.gop[0].at > GOP_MAX_AGE_S
            ):
                self.gop, self.gop_bytes = [], 0
            else:
                self.gop.append(item)
                self.gop_bytes += size

    def cached_gop(self, link_bps: float | None = None) -> list[RingItem] | None:
        """The cached GOP when replaying it to one viewer is cheaper than a new key frame for
        every reader: others share this source (alone, a new key frame costs no one else and is
        smaller than its GOP), the key frame is at most `GOP_MAX_AGE_S` old, the GOP at most
        `GOP_KEY_MULTIPLE` key frames big, and — when the viewer's estimate is known — it
        crosses the viewer's link in `GOP_BURST_S`. Else None (ask the source, rate-limited)."""
        gop = self.gop
        if not gop or self.readers < 2 or self.closed:
            return None
        if time.monotonic() - gop[0].at > GOP_MAX_AGE_S:
            return None
        if self.gop_bytes > GOP_KEY_MULTIPLE * gop[0].packet.size:
            return None
        if link_bps is not None and self.gop_bytes * 8 > link_bps * GOP_BURST_S:
            return None
        return list(gop)

    def served_from_cache(self, reason: str, gop: list[RingItem]) -> None:
        """Count a key-frame request answered by replaying `gop` to the asker alone."""
        self.key_requests_cached[reason] = self.key_requests_cached.get(reason, 0) + 1
        self.gop_replayed_frames += len(gop)
        self.gop_replayed_bytes += sum(item.packet.size for item in gop)

    def rate_bps(self, settled_s: float = 0.0) -> float:
        """What this source sent over the last window (its real bitrate, key frames included);
        0 while younger than `settled_s` (a new encoder's first seconds are mostly key frame)."""
        if time.monotonic() - self.started_at < settled_s:
            return 0.0
        return self._rate_bps

    def peak_bps(self) -> float:
        """The highest recent window's rate, fading by `PEAK_DECAY` a window: what a viewer moved
        onto this source must be ready to carry (a publisher's rate dips and comes back)."""
        return self._peak_bps

    def request_keyframe(self, reason: str = "join") -> None:
        """`reason`: "join" (a new reader, nothing decoded yet) passes; every other one — "switch"
        (a viewer changing rung), "pli" (the viewer's PLI/FIR), "lost" (it fell behind the
        ring), "late" (its link could not carry the frames in time), "resync" (a packet it needs
        will not be resent), "waiting" (still no key frame) — is rate-limited while other
        readers share this source, so one viewer's bad link never floods the others with key
        frames; a viewer alone on its source is limited only by the encoder's own gap. Each
        reason is counted, forwarded or suppressed (`/debug/viewers`, `/metrics`)."""
        if not self.keyframes or self.on_keyframe_request is None:
            return
        now = time.monotonic()
        if reason != "join":
            if self.readers <= 1:
                gap = ALONE_KEY_GAP_S
            else:
                gap = SHARED_SWITCH_GAP_S if reason == "switch" else SHARED_KEY_GAP_S
            if now - self._last_shared_request < gap:
                self.key_requests_suppressed += 1
                by = self.key_requests_suppressed_by
                by[reason] = by.get(reason, 0) + 1
                return
        # A join's key frame reaches every reader too: the gap runs from any forwarded request.
        self._last_shared_request = now
        self.key_requests_forwarded += 1
        self.key_requests[reason] = self.key_requests.get(reason, 0) + 1
        self.on_keyframe_request()

    def keyframe_stats(self) -> dict[str, object]:
        """Key frames this source published and who asked for them (debug view)."""
        return {
            "source": self.name,
            "readers": self.readers,
            "published": self.keyframes_published,
            "requested": dict(self.key_requests),
            "suppressed": dict(self.key_requests_suppressed_by),
            "gop_cache": dict(self.key_requests_cached),
            "gop_replayed_frames": self.gop_replayed_frames,
            "gop_replayed_bytes": self.gop_replayed_bytes,
        }

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

    `recv()` returns `av.Packet`s (pts and time_base set), which the sender only packetizes. A
    seamless switch (a rung change) keeps delivering the current source until the target has a
    key frame newer than what the viewer already has: no frozen picture while waiting.
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
        self._pending: PacketBroadcast | None = None
        self._pending_from = 0
        self._pending_asked = 0.0
        self._last_pts: int | None = None
        self._pts_shift = 0
        self.dropped = 0
        self.dropped_late = 0
        self.delivered = 0
        self.bytes_delivered = 0
        self.switches = 0
        # A GOP being replayed to this viewer alone (its PLI, served from the source's cache),
        # then live frames resume after it on this viewer's timeline (`_rebase`).
        self._replay: deque[RingItem] = deque()
        self._rebase = False
        self.replays = 0
        # Key frames this viewer got (live, after a switch, or replayed): what one viewer's PLIs
        # cost another is visible here.
        self.keyframes_delivered = 0
        # Set by the plane for adaptive viewers: this viewer's estimate (bits/s), which a GOP
        # replay must cross in `GOP_BURST_S`. Unknown: the cache's own bounds decide.
        self.link_bps: Callable[[], float] | None = None
        # Set by the plane for adaptive viewers: called (with the reason) before this viewer asks
        # a source it shares with others for a key frame; True when it recovered otherwise
        # (moved to an encoded rung of its own), so the shared source is not asked at all.
        self.recover: Callable[[str], bool] | None = None
        source.attach()
        if not any(item.key for item in source.ring):
            source.request_keyframe("join")

    @property
    def source(self) -> PacketBroadcast:
        return self._source

    @property
    def pending(self) -> PacketBroadcast | None:
        return self._pending

    def switch(self, source: PacketBroadcast, *, seamless: bool = False) -> None:
        """Follow another broadcast. Not seamless (a new layout): resume at its next key frame.
        Seamless (a rung change): keep the current source until the target has a key frame."""
        if seamless and self._source.keyframes and not self._source.closed:
            if source is self._source:
                self._cancel_pending()
                return
            if source is self._pending:
                return
            self._cancel_pending()
            self._pending = source
            self._pending_from = source.next_index
            self._pending_asked = time.monotonic()
            source.attach()
            source.request_keyframe("switch")
            return
        self._cancel_pending()
        if source is self._source:
            return
        self._cancel_replay()
        old = self._source
        self._source = source
        self._next = None
        self._attached_at = source.next_index
        self._need_key = source.keyframes
        source.attach()
        if not any(item.key for item in source.ring):
            # Like a new reader: a key frame still in the ring is a start, and asking the
            # source for another would give every other reader of it one too.
            source.request_keyframe("join")
        old.detach()
        old._wake()  # a recv() parked on the old source re-reads the new one
        self._switched.set()

    def _cancel_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.detach()

    def _cancel_replay(self) -> None:
        if self._replay:
            self._replay.clear()
            self._rebase = True

    def _complete_switch(self, item_index: int) -> None:
        """The pending source has a usable key frame at `item_index`: move there."""
        target = self._pending
        assert target is not None
        self._pending = None
        old = self._source
        self._source = target
        self._next = item_index
        self._need_key = False
        self.switches += 1
        self._cancel_replay()  # the target's key frame restarts the decoder: the rest is moot
        old.detach()
        key = target.ring[item_index - target.ring[0].index].packet
        # Rungs share the stream's timeline, but an encoded rung runs a frame or two behind the
        # forwarded original: shift this viewer's timestamps so time never goes back.
        if (
            self._last_pts is not None
            and key.pts is not None
            and key.pts + self._pts_shift <= self._last_pts
        ):
            self._pts_shift = self._last_pts - key.pts + SWITCH_STEP_TICKS

    def _ask_key(self, source: PacketBroadcast, reason: str) -> None:
        """This viewer needs a key frame of `source`: recover elsewhere when the plane can
        (`recover`), else ask the source (rate-limited there while shared)."""
        if (
            source.readers > 1
            and self.delivered  # had a picture (a joining viewer just waits for its first key)
            and self.recover is not None
            and self.recover(reason)
        ):
            return
        source.request_keyframe(reason)

    def request_keyframe(self) -> None:
        """Wired to the sender's PLI/FIR handling: this viewer lost its picture. Served from the
        source's GOP cache when that is cheap (`PacketBroadcast.cached_gop`), else asked."""
        if self._replay_gop("pli"):
            return
        self._ask_key(self._source, "pli")

    def _replay_gop(self, reason: str) -> bool:
        """Re-send this viewer alone the source's last key frame and every frame since (a
        decoder needs the whole chain), then carry on live after them: no reader of the source
        but this one receives anything extra. False when the cache does not serve (no fresh key
        frame, too big for the bounds or this viewer's link, a switch under way, no picture yet)."""
        source = self._source
        if not source.keyframes or self._pending is not None or self._last_pts is None:
            return False
        if self._replay:
            # A repeated PLI while the replay is still going out: the replay answers it.
            source.served_from_cache(reason, [])
            return True
        gop = source.cached_gop(self.link_bps() if self.link_bps is not None else None)
        if gop is None:
            return False
        source.served_from_cache(reason, gop)
        self._replay = deque(gop)
        # The replay ends with the newest published frame: live reading resumes after it.
        self._next = gop[-1].index + 1
        self._need_key = False
        self.replays += 1
        return True

    def resync(self) -> None:
        """A packet this viewer needs will never arrive (not resent): skip to the next key frame
        (asking for one) instead of sending frames it cannot decode."""
        if not self._source.keyframes or self._need_key:
            return
        self._need_key = True
        self._ask_key(self._source, "resync")

    def stop(self) -> None:
        if self.readyState == "live":
            self._source.detach()
            self._cancel_pending()
        super().stop()

    async def recv(self) -> av.Packet:  # type: ignore[override]
        pts, item = await self.recv_shared()
        packet = item.packet
        return packet if pts == packet.pts else _restamped(packet, pts)

    async def recv_shared(self) -> tuple[int | None, RingItem]:
        """The next frame for this viewer: its pts on this viewer's timeline (shifted after a
        switch or a replay) and the ring item, whose packet and RTP payloads every viewer shares
        (server/media/rtpsend.py)."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source = self._source
            if source.closed:
                if self._pending is not None:
                    self.switch(self._pending)
                    continue
                if self._persistent:
                    self._switched.clear()
                    await self._switched.wait()
                    continue
                self.stop()
                raise MediaStreamError
            if self._pending is not None:
                self._check_pending()
                source = self._source
            if self._replay:
                return self._next_replayed()
            item = self._take(source)
            if item is not None:
                packet = item.packet
                self.delivered += 1
                self.bytes_delivered += packet.size
                if self._rebase:
                    self._rebase_after_replay(packet)
                pts = packet.pts
                if self._pts_shift and pts is not None:
                    pts += self._pts_shift
                self._last_pts = pts
                return pts, item
            if self._pending is None:
                await source.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(source.wait(), SWITCH_POLL_S)

    def _next_replayed(self) -> tuple[int | None, RingItem]:
        """The next frame of a GOP replay, a step after the last one this viewer got (its
        original timestamp is up to `GOP_MAX_AGE_S` old: time must not go back)."""
        item = self._replay.popleft()
        last = self._last_pts
        pts = item.packet.pts if last is None else last + _replay_step(item.packet)
        if item.key:
            self.keyframes_delivered += 1
        if not self._replay:
            self._rebase = True
        self.delivered += 1
        self.bytes_delivered += item.packet.size
        self._last_pts = pts
        return pts, item

    def _rebase_after_replay(self, packet: av.Packet) -> None:
        """The first live frame after a replay: shift this viewer's timeline (only forward, by
        the replay's few steps) so it follows the replayed frames."""
        self._rebase = False
        last = self._last_pts
        if last is not None and packet.pts is not None and packet.pts + self._pts_shift <= last:
            self._pts_shift = last - packet.pts + _replay_step(packet)

    def _check_pending(self) -> None:
        target = self._pending
        assert target is not None
        if target.closed:
            self._cancel_pending()
            return
        for item in reversed(target.ring):
            if item.index < self._pending_from and not (
                self._last_pts is not None
                and item.packet.pts is not None
                and item.packet.pts > self._last_pts
            ):
                break
            if item.key:
                self._complete_switch(item.index)
                return
        now = time.monotonic()
        if self._need_key or now - self._pending_asked >= SWITCH_REASK_S:
            # Nothing decodable on the current source either (a key frame anywhere is welcome),
            # or the first request was suppressed (a shared target): ask again, rate-limited.
            self._pending_asked = now
            target.request_keyframe("switch")

    def _take(self, source: PacketBroadcast) -> RingItem | None:
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
                self._ask_key(source, "lost")
                if self._source is not source:
                    return None
        while self._next <= last:
            item = ring[self._next - first]
            self._next += 1
            if self._need_key and not item.key:
                # Cannot be decoded without the key frame it depends on. Keep asking while
                # waiting: a single request can fall inside the publisher's PLI rate limit or be
                # lost, and a browser's own key frames may be minutes apart.
                self._ask_key(source, "waiting")
                if self._source is not source:
                    return None
                if self.delivered:
                    # A viewer that had a picture loses this frame (not one just joining).
                    self.dropped += 1
                    source.dropped += 1
                continue
            if not item.key and source.keyframes and time.monotonic() - item.at > LATE_S:
                # The link could not carry the frames in time (the pacer held them back): drop
                # whole frames up to the newest key frame rather than queue further behind.
                self._drop_late(source, item.index)
                if self._source is not source:
                    return None
                continue
            self._need_key = False
            if item.key:
                self.keyframes_delivered += 1
            return item
        return None

    def _drop_late(self, source: PacketBroadcast, index: int) -> None:
        ring = source.ring
        last = ring[-1].index
        resume = last + 1
        for item in reversed(ring):
            if item.index <= index:
                break
            if item.key:
                resume = item.index
                break
        lost = resume - index
        self.dropped += lost
        self.dropped_late += lost
        source.dropped += lost
        self._next = resume
        if resume > last:
            self._need_key = True
            self._ask_key(source, "late")
