"""The packet fan-out in isolation: bounded memory, slow readers drop to the next key frame."""

from __future__ import annotations

import asyncio

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from server.media.fanout import RING_SIZE, PacketBroadcast, ViewerTrack


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
    # Fell behind the ring: the lost packets are counted, and it waits for a key frame (asking).
    before = len(requests)
    waiting = asyncio.ensure_future(slow.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done() and slow.dropped > 0 and len(requests) == before + 1
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
    ViewerTrack("video", broadcast)
    broadcast.publish(packet(0), key=True)
    assert (await a.recv()).pts == 0
    a.request_keyframe()  # the viewer's PLI
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
    asked.clear()
    shared.publish(packet(0), key=True)
    assert (await track.recv()).pts == 0 and (await other.recv()).pts == 0
    track.request_keyframe()  # its PLI
    assert reasons == ["pli"] and asked == ["own"] and track.source is own
    assert shared.key_requests == {"join": 2} and shared.readers == 1
    # Alone on a source, or before its first picture, `recover` is not consulted.
    fresh = ViewerTrack("video", shared)
    fresh.recover = recover
    fresh.request_keyframe()
    assert reasons == ["pli"] and shared.key_requests.get("pli") == 1
