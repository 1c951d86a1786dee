"""Separate mode: a viewer receives exactly the streams it enabled, encoded once for everyone."""

from __future__ import annotations

import asyncio

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
        # One encoder per stream: the screen's serves both this viewer and the screen's recorder,
        # the camera's runs for its recorder only.
        assert counters["encoders_running"] == 2
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
