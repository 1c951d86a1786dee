"""Separate mode: a viewer receives exactly the streams it enabled, encoded once for everyone."""

from __future__ import annotations

import asyncio

from aiortc import sdp as aiortc_sdp

from server.media.ingest import DECODE_LINGER_S
from tests.media_helpers import (
    CAMERA_V,
    PREFIX,
    SCREEN_V,
    PatternTrack,
    join,
    plane_means,
    publish,
    start_session,
    view,
)


async def test_screen_only_viewer_gets_exactly_one_video_track(server, api):
    started = await start_session(api)
    token = started["broadcaster_token"]
    streams = {s["kind"]: s for s in started["session"]["streams"]}
    screen_pub = await publish(
        api, token, streams["screen"]["id"], PatternTrack("screen", 640, 360, 15)
    )
    camera_pub = await publish(
        api, token, streams["camera"]["id"], PatternTrack("camera", 320, 240, 30), audio=True
    )
    viewer_info = await join(
        api, started["session"]["id"], {"enabled_streams": ["screen"], "mode": "separate"}
    )
    # The client offers two video sections and audio; the server fills only one video section.
    viewer, resp = await view(
        api,
        viewer_info["viewer_token"],
        f"{PREFIX}/stream/{streams['screen']['id']}/signal/offer",
        audio=True,
        video_lines=2,
    )
    assert resp.status == 200, resp.body
    try:
        await viewer.wait_frames(5)
        assert [t.kind for t in viewer.tracks].count("video") >= 1
        receiving = [t for t in viewer.pc.getTransceivers() if t.currentDirection == "recvonly"]
        assert [t.kind for t in receiving] == ["video"]
        frame = viewer.frames[-1]
        assert (frame.width, frame.height) == (640, 360)
        assert abs(plane_means(frame, 0, 0, 1, 1) - SCREEN_V) < 6
        status = (await api.get(f"{PREFIX}/session/{started['session']['id']}/status")).json
        assert {s["kind"]: s["status"] for s in status["streams"]} == {
            "screen": "live",
            "camera": "live",
        }
        assert status["viewer_count"] == 1
        # The camera is not enabled for this viewer: subscribing to it is refused.
        _, denied = await view(
            api,
            viewer_info["viewer_token"],
            f"{PREFIX}/stream/{streams['camera']['id']}/signal/offer",
        )
        assert denied.status == 403, denied.body
        counters = server.services.media.counters()
        # Same codec as the publisher (VP8): its packets are forwarded to the viewer and muxed by
        # both recorders; nothing is encoded on the server.
        assert counters["encoders_running"] == 0
        assert counters["passthrough_viewers"] == 3  # the viewer and two recorders
        assert counters["recorders"] == 2
        assert counters["publishers"] == 2 and counters["viewers"] == 1
    finally:
        await viewer.close()
        await screen_pub.pc.close()
        await camera_pub.pc.close()


async def test_camera_viewer_hears_forwarded_opus_and_sees_camera(server, api):
    started = await start_session(api, ("camera",))
    token = started["broadcaster_token"]
    camera = started["session"]["streams"][0]
    pub = await publish(api, token, camera["id"], PatternTrack("camera", 320, 240, 30), audio=True)
    info = await join(api, started["session"]["id"])
    viewer, resp = await view(
        api, info["viewer_token"], f"{PREFIX}/stream/{camera['id']}/signal/offer", audio=True
    )
    assert resp.status == 200, resp.body
    try:
        await viewer.wait_frames(10)
        assert sorted(t.kind for t in viewer.tracks) == ["audio", "video"]
        for _ in range(100):
            if viewer.audio_frames >= 5:
                break
            await asyncio.sleep(0.05)
        assert viewer.audio_frames >= 5
        assert plane_means(viewer.frames[-1], 0, 0, 1, 1) > CAMERA_V - 12
    finally:
        await viewer.close()
        await pub.pc.close()


async def test_viewers_of_another_codec_share_one_encoder(server, api):
    """Publisher sends VP8; three H.264-only viewers get one shared H.264 encoder, a VP8 viewer
    still gets the forwarded packets."""
    started = await start_session(api, ("screen",))
    token = started["broadcaster_token"]
    screen = started["session"]["streams"][0]
    pub = await publish(api, token, screen["id"], PatternTrack("screen", 320, 192, 15))
    path = f"{PREFIX}/stream/{screen['id']}/signal/offer"
    viewers = []
    try:
        for codec in ("H264", "H264", "H264", "VP8"):
            info = await join(api, started["session"]["id"])
            viewer, resp = await view(api, info["viewer_token"], path, codec=codec)
            assert resp.status == 200, resp.body
            answer = aiortc_sdp.SessionDescription.parse(resp.json["sdp"])
            assert answer.media[0].rtp.codecs[0].name == codec
            viewers.append(viewer)
        await asyncio.gather(*(v.wait_frames(5) for v in viewers))
        for v in viewers:
            assert abs(plane_means(v.frames[-1], 0, 0, 1, 1) - SCREEN_V) < 6
        counters = server.services.media.counters()
        assert counters["encoders_running"] == 1
        assert counters["passthrough_viewers"] == 2  # the VP8 viewer and the recorder
        assert counters["decoding_streams"] == 1  # decoded once, for the shared H.264 encoder
        # When the H.264 viewers leave, nothing reads decoded frames: decoding stops (after
        # DECODE_LINGER_S, so a rung that comes back soon needs no key frame from the publisher).
        for v in viewers[:3]:
            await v.close()
        for _ in range(int((DECODE_LINGER_S + 10) / 0.05)):
            if server.services.media.counters()["decoding_streams"] == 0:
                break
            await asyncio.sleep(0.05)
        counters = server.services.media.counters()
        assert counters["decoding_streams"] == 0 and counters["encoders_running"] == 0
        await viewers[3].wait_frames(5)  # the forwarded stream goes on
    finally:
        for v in viewers:
            await v.close()
        await pub.pc.close()


async def test_viewers_asking_for_less_get_one_shared_scaled_variant(server, api):
    started = await start_session(api, ("camera",))
    camera = started["session"]["streams"][0]
    pub = await publish(
        api, started["broadcaster_token"], camera["id"], PatternTrack("camera", 320, 240, 20)
    )
    path = f"{PREFIX}/stream/{camera['id']}/signal/offer"
    viewers = []
    try:
        for max_height in (200, 190):  # both map to the 180-line variant
            info = await join(api, started["session"]["id"])
            viewer, resp = await view(
                api, info["viewer_token"], path, extra={"max_height": max_height}
            )
            assert resp.status == 200, resp.body
            viewers.append(viewer)
        await asyncio.gather(*(v.wait_frames(5) for v in viewers))
        for v in viewers:
            frame = v.frames[-1]
            assert (frame.width, frame.height) == (240, 180)
            assert plane_means(frame, 0, 0, 1, 1) > CAMERA_V - 12
        counters = server.services.media.counters()
        assert counters["scaled_variants"] == 1 and counters["encoders_running"] == 1
        info = await join(api, started["session"]["id"])
        _, bad = await view(api, info["viewer_token"], path, extra={"max_height": "tiny"})
        assert bad.status == 400
    finally:
        for v in viewers:
            await v.close()
        await pub.pc.close()
    for _ in range(100):
        if server.services.media.counters()["scaled_variants"] == 0:
            break
        await asyncio.sleep(0.02)
    assert server.services.media.counters()["scaled_variants"] == 0
