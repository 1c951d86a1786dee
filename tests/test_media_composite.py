"""Composite feeds: laid out per viewer, shared per layout, falling back when a source dies."""

from __future__ import annotations

import asyncio

from tests.media_helpers import (
    CAMERA_V,
    PREFIX,
    SCREEN_V,
    PatternTrack,
    Viewer,
    plane_means,
    publish,
    start_session,
    view_composite,
)

TOP_LEFT = (0.05, 0.06, 0.25, 0.34)  # inside a 30 % PiP of a 4:3 camera on a 16:9 screen
BOTTOM_RIGHT = (0.75, 0.66, 0.95, 0.94)
MIDDLE = (0.45, 0.45, 0.6, 0.6)


async def settle(viewer: Viewer, check, timeout: float = 6.0) -> None:
    """Wait until the newest decoded frame passes `check` (frames in flight show the old picture)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await viewer.wait_frames(1)
        if check(viewer.frames[-1]):
            return
        assert loop.time() < deadline, "composite never showed the expected picture"


def shows_camera_at(region):
    return lambda f: plane_means(f, *region) > CAMERA_V - 15


def shows_screen_at(region):
    return lambda f: abs(plane_means(f, *region) - SCREEN_V) < 8


async def broadcast(api):
    started = await start_session(api)
    token = started["broadcaster_token"]
    streams = {s["kind"]: s for s in started["session"]["streams"]}
    pubs = [
        await publish(api, token, streams["screen"]["id"], PatternTrack("screen", 640, 360, 10)),
        await publish(
            api, token, streams["camera"]["id"], PatternTrack("camera", 320, 240, 20), audio=True
        ),
    ]
    return started, pubs


async def test_composite_top_left_then_fallback_then_live_layout_change(server, api):
    started, pubs = await broadcast(api)
    session_id, token = started["session"]["id"], started["broadcaster_token"]
    viewer, info = await view_composite(
        api, session_id, {"corner": "top-left", "size_pct": 30}, audio=True
    )
    media = server.services.media
    try:
        await settle(
            viewer, lambda f: shows_camera_at(TOP_LEFT)(f) and shows_screen_at(BOTTOM_RIGHT)(f)
        )
        frame = viewer.frames[-1]
        assert (frame.width, frame.height) == (640, 360)
        assert shows_screen_at(BOTTOM_RIGHT)(frame) and shows_screen_at(MIDDLE)(frame)
        assert sorted(t.kind for t in viewer.tracks) == ["audio", "video"]

        # The layout follows the saved preference on the same connection.
        put = await api.put(
            f"{PREFIX}/session/{session_id}/preferences",
            {"pip": {"corner": "bottom-right", "size_pct": 30}},
            token=info["viewer_token"],
        )
        assert put.status == 200
        await settle(
            viewer, lambda f: shows_camera_at(BOTTOM_RIGHT)(f) and shows_screen_at(TOP_LEFT)(f)
        )
        assert media.counters()["composite_layouts"] == 1  # the old layout had no one left

        # The camera stops: the composite falls back to the screen alone, same connection.
        resp = await api.post(f"{PREFIX}/session/{session_id}/streams/camera/stop", token=token)
        assert resp.status == 200
        await settle(
            viewer, lambda f: shows_screen_at(BOTTOM_RIGHT)(f) and shows_screen_at(TOP_LEFT)(f)
        )
        assert viewer.pc.connectionState == "connected"
        assert media.composite_feeds()[0].mode == "screen"
    finally:
        await viewer.close()
        for pub in pubs:
            await pub.pc.close()


async def test_ten_viewers_of_one_layout_share_one_compositor_and_encoder(server, api):
    started, pubs = await broadcast(api)
    session_id = started["session"]["id"]
    pip = {"corner": "top-right", "size_pct": 20}
    viewers = []
    media = server.services.media
    try:
        for _ in range(10):
            viewer, _ = await view_composite(api, session_id, pip)
            viewers.append(viewer)
        await asyncio.gather(*(v.wait_frames(3) for v in viewers))
        counters = media.counters()
        assert counters["composite_layouts"] == 1
        assert counters["composite_encoders"] == 1
        assert counters["viewers"] == 10
        # Another layout is another feed; when its only viewer leaves, it stops.
        lone, _ = await view_composite(api, session_id, {"corner": "bottom-left", "size_pct": 20})
        await lone.wait_frames(2)
        assert media.counters()["composite_layouts"] == 2
        await lone.close()
        for _ in range(100):
            if media.counters()["composite_layouts"] == 1:
                break
            await asyncio.sleep(0.02)
        assert media.counters()["composite_layouts"] == 1
        assert media.counters()["composite_encoders"] == 1
    finally:
        for v in viewers:
            await v.close()
        for pub in pubs:
            await pub.pc.close()


async def test_a_still_screen_is_reused_and_a_new_viewer_still_gets_a_picture(server, api):
    """Screens with static content send few frames (browsers send on change): the composite keeps
    showing the last one, and a viewer joining between screen updates is not left waiting."""
    started = await start_session(api)
    token = started["broadcaster_token"]
    streams = {s["kind"]: s for s in started["session"]["streams"]}
    pubs = [
        await publish(api, token, streams["screen"]["id"], PatternTrack("screen", 640, 360, 0.4)),
        await publish(api, token, streams["camera"]["id"], PatternTrack("camera", 320, 240, 20)),
    ]
    session_id = started["session"]["id"]
    viewer, _ = await view_composite(api, session_id, {"corner": "top-left", "size_pct": 30})
    try:
        both = lambda f: shows_camera_at(TOP_LEFT)(f) and shows_screen_at(BOTTOM_RIGHT)(f)  # noqa: E731
        await settle(viewer, both)
        # Every composite frame for the next 3 s (screen frames are 2.5 s apart) shows the screen.
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        checked = 0
        while loop.time() < end:
            await viewer.wait_frames(1)
            assert both(viewer.frames[-1]), "composite lost the still screen"
            checked += 1
        assert checked >= 20
        # A viewer joining now (no new screen frame for a while) gets a picture at once.
        second, _ = await view_composite(api, session_id, {"corner": "top-left", "size_pct": 30})
        try:
            await second.wait_frames(3, timeout=3.0)
            assert both(second.frames[-1])
        finally:
            await second.close()
    finally:
        await viewer.close()
        for pub in pubs:
            await pub.pc.close()


async def test_composite_audio_follows_the_camera_across_a_restart(server, api):
    started, pubs = await broadcast(api)
    session_id, token = started["session"]["id"], started["broadcaster_token"]
    camera_id = next(s["id"] for s in started["session"]["streams"] if s["kind"] == "camera")
    viewer, _ = await view_composite(api, session_id, audio=True)
    restarted = None

    async def audio_flows() -> None:
        start = viewer.audio_frames
        for _ in range(100):
            if viewer.audio_frames >= start + 5:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("no audio")

    try:
        await audio_flows()
        assert (
            await api.post(f"{PREFIX}/session/{session_id}/streams/camera/stop", token=token)
        ).status == 200
        await pubs[1].pc.close()
        assert (
            await api.post(f"{PREFIX}/session/{session_id}/streams/camera/start", token=token)
        ).status == 200
        restarted = await publish(
            api, token, camera_id, PatternTrack("camera", 320, 240, 20), audio=True
        )
        await audio_flows()  # same connection, the new camera's microphone
        await settle(viewer, shows_camera_at(BOTTOM_RIGHT))  # default corner
        assert viewer.pc.connectionState == "connected"
    finally:
        await viewer.close()
        for pub in [*pubs, *([restarted] if restarted else [])]:
            await pub.pc.close()
