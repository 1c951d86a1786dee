"""Issue 13 item 5 end to end: one viewer's PLIs on the publisher's shared stream are answered from
the GOP cache, so the other viewer of that stream receives no extra key frame."""

from __future__ import annotations

import asyncio

from server.media import aiortc_hooks, fanout
from tests.media_helpers import PREFIX, PatternTrack, join, publish, start_session, view


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_one_viewers_plis_are_served_from_the_gop_cache_not_by_the_publisher(
    server, api, monkeypatch
):
    """Two aiortc viewers of one passthrough camera; one sends PLIs (as aiortc's receiver does
    on a decode error). Each PLI replays the cached GOP to it alone: it keeps decoding, the
    publisher is asked for no key frame on its behalf, and the other viewer gets exactly the key
    frames it got before. (The cache's bounds are widened here so that the moving test pattern's
    GOP qualifies however long this loaded machine takes; the bounds themselves are unit-tested
    in test_media_fanout.py.)"""
    monkeypatch.setattr(fanout, "GOP_MAX_AGE_S", 60.0)
    monkeypatch.setattr(fanout, "GOP_MAX_FRAMES", 2000)
    monkeypatch.setattr(fanout, "GOP_KEY_MULTIPLE", 1000)
    monkeypatch.setattr(fanout, "GOP_BURST_S", 60.0)
    started = await start_session(api, ("camera",))
    session_id = started["session"]["id"]
    camera = started["session"]["streams"][0]
    pub = await publish(
        api, started["broadcaster_token"], camera["id"], PatternTrack("camera", 320, 180, 15)
    )
    path = f"{PREFIX}/stream/{camera['id']}/signal/offer"
    lossy, resp = await view(api, (await join(api, session_id))["viewer_token"], path)
    assert resp.status == 200, resp.body
    clean, resp = await view(api, (await join(api, session_id))["viewer_token"], path)
    assert resp.status == 200, resp.body
    try:
        await lossy.wait_frames(10)
        await clean.wait_frames(10)
        peers = server.services.media.peers
        lossy_track = peers.get(lossy.pc_id).video
        clean_track = peers.get(clean.pc_id).video
        source = lossy_track.source
        assert clean_track.source is source and source.readers >= 2  # (and the recorder)
        clean_keys = clean_track.keyframes_delivered
        published = source.keyframes_published
        forwarded = dict(source.key_requests)
        ingest = server.services.media.feeds.ingests[camera["id"]]
        plis_for_viewers = ingest.plis_sent.get("viewers", 0)
        receiver = lossy.pc.getTransceivers()[0].receiver
        ssrc = receiver.getSynchronizationSources()[0].source  # the server's video SSRC
        for _ in range(3):
            await aiortc_hooks.send_pli(receiver, ssrc)
            await _wait(lambda: source.key_requests_cached.get("pli", 0) >= 1)
            await asyncio.sleep(0.3)
        await lossy.wait_frames(10)  # it keeps decoding through the replays
        await clean.wait_frames(10)
        assert lossy_track.replays >= 1 and source.gop_replayed_frames >= 1
        assert source.key_requests == forwarded  # the publisher was not asked
        assert ingest.plis_sent.get("viewers", 0) == plis_for_viewers
        # The other viewer got only key frames the publisher made for other reasons (the
        # server's own decoder starting, say) — none for the PLIs.
        own = source.keyframes_published - published
        assert clean_track.keyframes_delivered == clean_keys + own, (own, ingest.plis_sent)
        assert lossy_track.keyframes_delivered > 0
        requests = server.services.media.keyframe_requests()
        assert requests[("publisher", "pli", "gop_cache")] == sum(
            source.key_requests_cached.values()
        )
    finally:
        await lossy.close()
        await clean.close()
        await pub.pc.close()
