"""The packet fan-out in isolation: bounded memory, slow readers drop to the next key frame."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from fractions import Fraction

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from server.media import fanout
from server.media.fanout import (
    GOP_BURST_S,
    GOP_KEY_MULTIPLE,
    RING_SIZE,
    SHARED_KEY_GAP_S,
    SHARED_SWITCH_GAP_S,
    PacketBroadcast,
    ViewerTrack,
)


def joined_long_ago(source: PacketBroadcast) -> None:
    """As if the readers' joins (whose key frame every reader got) were a rate-limit gap ago:
    the next request of another reason is then forwarded."""
    source._last_shared_request -= SHARED_KEY_GAP_S


def packet(i: int) -> av.Packet:
    p = av.Packet(bytes([i % 256]) * 10)
    p.pts = i
    return p


async def test_slow_viewer_drops_and_resumes_at_a_key_frame_with_bounded_memory():
    requests = []
    broadcast = PacketBroadcast("test", on_keyframe_request=lambda: requests.append(1))
    fast = ViewerTrack("video", broadcast)
    slow = ViewerTrack("video", broadcast)
    assert len(requests) == 2  # each new viewer asks for a key frame
    broadcast.publish(packet(0), key=True)
    assert (await fast.recv()).pts == 0
    for i in range(1, 200):
        broadcast.publish(packet(i), key=(i == 190))
        assert (await fast.recv()).pts == i  # a reader that keeps up gets everything in order
    assert len(broadcast.ring) == RING_SIZE  # never more than the ring, however slow `slow` is
    # `slow` starts at the newest key frame still in the ring.
    assert (await slow.recv()).pts == 190
    for i in range(200, 200 + RING_SIZE + 10):
        broadcast.publish(packet(i), key=False)
    # Fell behind the ring: the lost packets are counted, and it waits for a key frame. It asks,
    # but the joins' key frames went to both readers moments ago: a shared source is asked at
    # most once per SHARED_KEY_GAP_S, so this one is counted as suppressed.
    before = len(requests)
    waiting = asyncio.ensure_future(slow.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done() and slow.dropped > 0 and len(requests) == before
    assert broadcast.key_requests_suppressed_by["lost"] == 1
    broadcast.publish(packet(999), key=False)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    broadcast.publish(packet(1000), key=True)
    assert (await waiting).pts == 1000
    assert broadcast.dropped == slow.dropped


async def test_switch_moves_a_parked_reader_and_stop_detaches():
    idle = []
    a = PacketBroadcast("a", on_idle=idle.append)
    b = PacketBroadcast("b")
    track = ViewerTrack("video", a)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    track.switch(b)
    assert idle == [a] and a.readers == 0 and b.readers == 1
    b.publish(packet(1), key=False)
    b.publish(packet(2), key=True)
    assert (await waiting).pts == 2
    track.stop()
    assert b.readers == 0
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_audio_has_no_key_frames_and_closing_ends_readers():
    audio = PacketBroadcast("audio", keyframes=False)
    track = ViewerTrack("audio", audio)
    audio.publish(packet(1))
    assert (await track.recv()).pts == 1
    audio.close()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_key_frame_requests_are_counted_by_reason_forwarded_or_suppressed():
    """`/debug/viewers` and `/metrics` say who asks a source for key frames: a join passes, the
    rest is rate-limited while the source is shared."""
    asked = []
    broadcast = PacketBroadcast("shared", on_keyframe_request=lambda: asked.append(1))
    a = ViewerTrack("video", broadcast)  # joins an empty ring: asks
    a.link_bps = lambda: 1.0  # too short a link for a GOP replay: the source is asked
    ViewerTrack("video", broadcast)
    broadcast.publish(packet(0), key=True)
    assert (await a.recv()).pts == 0
    a.request_keyframe()  # the viewer's PLI, moments after the joins' key frame: suppressed
    assert broadcast.key_requests_suppressed_by == {"pli": 1} and len(asked) == 2
    joined_long_ago(broadcast)
    broadcast.key_requests_suppressed_by.clear()
    a.request_keyframe()  # a gap later: passes
    a.request_keyframe()  # again at once: suppressed (another reader shares the source)
    stats = broadcast.keyframe_stats()
    assert stats["requested"] == {"join": 2, "pli": 1}
    assert stats["suppressed"] == {"pli": 1}
    assert stats["readers"] == 2 and stats["published"] == 1 and len(asked) == 3


async def test_a_viewer_that_lost_its_picture_on_a_shared_source_recovers_elsewhere():
    """A viewer of a shared source that had a picture and lost it asks the plane first (`recover`,
    which moves it to an encoded rung of its own): the shared source and its other viewers never
    hear of it. A viewer still waiting for its first key frame just asks."""
    asked: list[str] = []
    shared = PacketBroadcast("shared", on_keyframe_request=lambda: asked.append("shared"))
    own = PacketBroadcast("own", on_keyframe_request=lambda: asked.append("own"))
    other = ViewerTrack("video", shared)
    track = ViewerTrack("video", shared)
    reasons: list[str] = []

    def recover(reason: str) -> bool:
        reasons.append(reason)
        track.switch(own)
        return True

    track.recover = recover
    track.link_bps = lambda: 1.0  # a link too short for a GOP replay (see below)
    asked.clear()
    shared.publish(packet(0), key=True)
    assert (await track.recv()).pts == 0 and (await other.recv()).pts == 0
    track.request_keyframe()  # its PLI
    assert reasons == ["pli"] and asked == ["own"] and track.source is own
    assert shared.key_requests == {"join": 2} and shared.readers == 1
    # Alone on a source, or before its first picture, `recover` is not consulted.
    fresh = ViewerTrack("video", shared)
    fresh.recover = recover
    joined_long_ago(shared)
    fresh.request_keyframe()
    assert reasons == ["pli"] and shared.key_requests.get("pli") == 1


def frame(i: int, *, size: int = 10) -> av.Packet:
    """A video frame at 30 fps on the 90 kHz clock, as the ingest and the encoders stamp them."""
    p = av.Packet(bytes([i % 256]) * size)
    p.pts = 1_000_000 + i * 3000
    p.time_base = Fraction(1, 90000)
    return p


async def drain(track: ViewerTrack) -> list[av.Packet]:
    """Everything `track` has ready now (it would wait for the next publish after that)."""
    out = []
    while True:
        task = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0.005)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return out
        out.append(task.result())


async def test_a_pli_on_a_shared_source_is_served_from_the_gop_cache_to_that_viewer_alone():
    """Issue 13 item 5: the viewer that lost its picture gets the last key frame and every frame
    since again (a decoder needs the chain), on its own timeline; the source is not asked, and
    its other reader receives nothing extra."""
    asked: list[int] = []
    shared = PacketBroadcast("shared", on_keyframe_request=lambda: asked.append(1))
    lossy = ViewerTrack("video", shared)
    clean = ViewerTrack("video", shared)
    lossy.link_bps = lambda: 2_000_000.0  # the burst (~1 kB) crosses it at once
    asked.clear()
    shared.publish(frame(0, size=400), key=True)
    for i in range(1, 6):
        shared.publish(frame(i), key=False)
    before_lossy = await drain(lossy)
    assert [p.pts for p in before_lossy] == [frame(i).pts for i in range(6)]
    assert len(await drain(clean)) == 6

    lossy.request_keyframe()  # its PLI
    shared.publish(frame(6), key=False)
    shared.publish(frame(7), key=False)
    got = await drain(lossy)
    # The key frame again, the frames that followed it, then live frames.
    assert [bytes(p) for p in got] == [
        bytes(frame(i, size=400 if i == 0 else 10)) for i in range(8)
    ]
    pts = [p.pts for p in before_lossy + got]
    assert all(b > a for a, b in itertools.pairwise(pts)), pts  # time never goes back
    assert lossy.replays == 1
    # The other reader: exactly the live frames, as published.
    assert [p.pts for p in await drain(clean)] == [frame(6).pts, frame(7).pts]
    # Not asked, counted as served from the cache.
    assert asked == [] and "pli" not in shared.key_requests
    stats = shared.keyframe_stats()
    assert stats["gop_cache"] == {"pli": 1} and stats["published"] == 1
    assert stats["gop_replayed_frames"] == 6 and stats["gop_replayed_bytes"] == 400 + 5 * 10
    # Live frames after the replay stay monotonic and one per publish.
    shared.publish(frame(8), key=False)
    after = await drain(lossy)
    assert len(after) == 1 and after[0].pts > got[-1].pts


async def test_a_pli_the_gop_cache_cannot_serve_cheaply_asks_the_source_rate_limited():
    """No key frame cached, a GOP too big against its key frame, too old, a link too short for
    the burst, or a viewer alone on its source: asked as before (rate-limited while shared)."""
    asked: list[int] = []
    shared = PacketBroadcast("shared", on_keyframe_request=lambda: asked.append(1))
    a = ViewerTrack("video", shared)
    b = ViewerTrack("video", shared)
    asked.clear()
    joined_long_ago(shared)
    # Never a key frame (a joiner started on inter frames after a lost key): nothing to replay.
    shared.publish(frame(0), key=False)
    a._need_key = False  # (the ring has no key frame: read the inter frame as a live viewer)
    assert len(await drain(a)) == 1
    a.request_keyframe()
    a.request_keyframe()
    assert asked == [1] and shared.key_requests_suppressed_by == {"pli": 1}
    assert shared.key_requests_cached == {}

    # A key frame followed by more than GOP_KEY_MULTIPLE key frames' worth of inter frames.
    shared.publish(frame(1, size=100), key=True)
    for i in range(2, 8):
        shared.publish(frame(i, size=100), key=False)
    assert shared.gop_bytes > GOP_KEY_MULTIPLE * 100
    await drain(a)
    a.request_keyframe()
    assert shared.key_requests_cached == {} and shared.key_requests_suppressed_by == {"pli": 2}

    # A fresh, small GOP but a link that cannot take the burst in GOP_BURST_S.
    shared.publish(frame(8, size=1000), key=True)
    await drain(a)
    a.link_bps = lambda: 1000 * 8 / GOP_BURST_S / 2
    a.request_keyframe()
    assert shared.key_requests_cached == {} and shared.key_requests_suppressed_by == {"pli": 3}
    a.link_bps = None
    a.request_keyframe()  # the same GOP, link unknown: served
    assert shared.key_requests_cached == {"pli": 1}
    await drain(a)

    # Alone on the source: a new key frame costs no one else and is smaller than its GOP.
    b.stop()
    a.request_keyframe()
    assert shared.key_requests_cached == {"pli": 1}
    assert shared.key_requests_suppressed_by == {"pli": 4}  # asked (within the alone gap)


async def test_a_gop_older_than_the_bound_is_not_replayed(monkeypatch):
    monkeypatch.setattr(fanout, "GOP_MAX_AGE_S", 0.05)
    asked: list[int] = []
    shared = PacketBroadcast("shared", on_keyframe_request=lambda: asked.append(1))
    a = ViewerTrack("video", shared)
    ViewerTrack("video", shared)
    asked.clear()
    joined_long_ago(shared)
    shared.publish(frame(0), key=True)
    await drain(a)
    await asyncio.sleep(0.08)
    a.request_keyframe()
    assert asked == [1] and shared.key_requests_cached == {}
    # An inter frame published after the bound drops the cache until the next key frame.
    shared.publish(frame(1), key=False)
    assert shared.gop == []
    shared.publish(frame(2), key=True)
    assert len(shared.gop) == 1


async def test_a_replay_goes_on_while_a_switch_waits_and_ends_when_the_switch_completes():
    """A rung change asked during a replay keeps the replay going (the decoder needs the whole
    chain); the target's key frame ends it, and time still only moves forward."""
    shared = PacketBroadcast("shared")
    rung = PacketBroadcast("rung")
    track = ViewerTrack("video", shared)
    ViewerTrack("video", shared)
    shared.publish(frame(0, size=400), key=True)
    for i in range(1, 4):
        shared.publish(frame(i), key=False)
    first = await drain(track)
    track.request_keyframe()
    assert track.replays == 1
    replayed = [await track.recv(), await track.recv()]  # the key frame and one more
    track.switch(rung, seamless=True)
    assert (await track.recv()).pts > replayed[-1].pts  # the replay goes on
    rung.publish(frame(3, size=20), key=True)  # the rung's key frame (a frame behind)
    after = await drain(track)
    # The rest of the replay is moot once the rung's key frame restarts the decoder.
    assert [bytes(p) for p in after] == [bytes(frame(3, size=20))] and track.source is rung
    pts = [p.pts for p in first + replayed + after]
    assert all(b > a for a, b in itertools.pairwise(pts)), pts


async def test_a_climb_to_a_shared_source_waits_for_a_key_frame_the_others_get_anyway():
    """A viewer on a rung of its own climbing back to the shared original keeps its rung and
    asks the original at most once per SHARED_SWITCH_GAP_S: its key frame would reach every
    reader. A key frame they get anyway (another viewer's join) completes the climb."""
    asked: list[int] = []
    shared = PacketBroadcast("shared", on_keyframe_request=lambda: asked.append(1))
    rung = PacketBroadcast("rung")
    ViewerTrack("video", shared)  # another viewer of the original (its join asks)
    track = ViewerTrack("video", rung)
    rung.publish(frame(0), key=True)
    await drain(track)
    joined_long_ago(shared)
    track.switch(shared, seamless=True)
    assert asked == [1] and shared.key_requests_suppressed_by == {"switch": 1}
    rung.publish(frame(1), key=False)
    assert [p.pts for p in await drain(track)] == [frame(1).pts]  # no freeze while it waits
    shared.publish(frame(2), key=True)
    assert [p.pts for p in await drain(track)] == [frame(2).pts] and track.source is shared
    # SHARED_SWITCH_GAP_S after the last request, a climb asks at once.
    shared._last_shared_request -= SHARED_SWITCH_GAP_S
    track.switch(rung)
    track.switch(shared, seamless=True)
    assert asked == [1, 1] and shared.key_requests["switch"] == 1


async def test_recv_shared_hands_every_viewer_the_same_item_and_its_own_pts():
    """The RTP loops (server/media/rtpsend.py) share each frame's payloads through the ring item;
    a viewer whose timeline is shifted (a GOP replay here) gets its own pts, and nothing is
    copied for it (`recv()` copies, for readers that need an `av.Packet`)."""
    shared = PacketBroadcast("s")
    a, b = ViewerTrack("video", shared), ViewerTrack("video", shared)
    key = packet(0)
    shared.publish(key, key=True)
    pts_a, item_a = await a.recv_shared()
    pts_b, item_b = await b.recv_shared()
    assert item_a is item_b and item_a.packet is key and pts_a == pts_b == 0
    a.request_keyframe()  # its PLI: served from the GOP cache, after what it last got
    pts, item = await a.recv_shared()
    assert item is item_a and pts is not None and pts > 0
    shared.publish(packet(1), key=False)
    pts, item = await a.recv_shared()
    assert item.packet.pts == 1 and pts is not None and pts > 1  # still shifted
    copy = await b.recv()
    assert copy is item.packet  # b's timeline is the source's: the shared packet itself


def test_a_sources_peak_rate_outlives_a_dip(monkeypatch):
    """`rate_bps` is the last window's rate; `peak_bps` the highest recent one, fading 5 % a
    window. A viewer is lifted onto the publisher's packets by the peak (`adaptive._rung_rates`):
    a publisher that dipped for a few seconds sends its full rate again soon after."""
    clock = [1000.0]
    monkeypatch.setattr(fanout.time, "monotonic", lambda: clock[0])
    source = PacketBroadcast("camera")

    def second_of(size: int, packets: int = 10) -> None:
        for i in range(packets):
            clock[0] += fanout.RATE_WINDOW_S / packets
            p = av.Packet(bytes(size))
            p.pts = int(clock[0] * 1000)
            source.publish(p, key=i == 0)

    second_of(25_000)  # 250 kB in one window: 1 Mb/s at a 2 s window
    assert source.rate_bps() == pytest.approx(1_000_000, rel=0.01)
    second_of(2_500)  # a dip to a tenth
    assert source.rate_bps() == pytest.approx(100_000, rel=0.01)
    assert source.peak_bps() == pytest.approx(1_000_000 * fanout.PEAK_DECAY, rel=0.01)
    for _ in range(40):
        second_of(2_500)
    # A dip that lasts (80 s) becomes the rate the source is judged by.
    assert source.peak_bps() < 200_000
