"""Stopping one stream leaves the other undisturbed; recordings decode and last as long as stored."""

from __future__ import annotations

import asyncio
import time

import av

from tests.api_helpers import assert_error
from tests.media_helpers import PREFIX, PatternTrack, join, publish, start_session, view


async def test_stopping_the_camera_leaves_the_screen_viewer_undisturbed(server, api):
    started = await start_session(api)
    token, session_id = started["broadcaster_token"], started["session"]["id"]
    streams = {s["kind"]: s for s in started["session"]["streams"]}
    screen_pub = await publish(
        api, token, streams["screen"]["id"], PatternTrack("screen", 320, 180, 15)
    )
    camera_pub = await publish(
        api, token, streams["camera"]["id"], PatternTrack("camera", 320, 240, 30)
    )
    info = await join(api, session_id, {"enabled_streams": ["screen", "camera"]})
    screen_view, _ = await view(
        api, info["viewer_token"], f"{PREFIX}/stream/{streams['screen']['id']}/signal/offer"
    )
    camera_view, _ = await view(
        api, info["viewer_token"], f"{PREFIX}/stream/{streams['camera']['id']}/signal/offer"
    )
    media = server.services.media
    try:
        await screen_view.wait_frames(3)
        await camera_view.wait_frames(3)
        resp = await api.post(f"{PREFIX}/session/{session_id}/streams/camera/stop", token=token)
        assert resp.status == 200, resp.body
        # The camera viewer's connection is closed by the server; the screen one keeps flowing.
        for _ in range(100):
            if camera_view.pc.connectionState == "closed" or media.counters()["viewers"] == 1:
                break
            await asyncio.sleep(0.02)
        assert media.counters()["viewers"] == 1
        assert media.counters()["publishers"] == 1
        await screen_view.wait_frames(8)
        assert screen_view.pc.connectionState == "connected"
        status = (await api.get(f"{PREFIX}/session/{session_id}/status")).json
        assert {s["kind"]: s["status"] for s in status["streams"]} == {
            "screen": "live",
            "camera": "stopped",
        }
        # Ending the session closes everything that is left.
        assert (await api.post(f"{PREFIX}/session/{session_id}/end", token=token)).status == 200
        for _ in range(100):
            if media.counters()["peer_connections"] == 0:
                break
            await asyncio.sleep(0.02)
        counters = media.counters()
        assert counters["peer_connections"] == 0
        assert counters["encoders_running"] == 0
        assert counters["recorders"] == 0
    finally:
        for c in (screen_view, camera_view):
            await c.close()
        await screen_pub.pc.close()
        await camera_pub.pc.close()


async def test_recording_decodes_with_matching_duration(server, api, settings):
    started = await start_session(api, ("camera",))
    token, session_id = started["broadcaster_token"], started["session"]["id"]
    camera = started["session"]["streams"][0]
    pub = await publish(api, token, camera["id"], PatternTrack("camera", 320, 240, 30), audio=True)
    try:
        for _ in range(200):
            if server.services.media.counters()["recorders"] == 1:
                break
            await asyncio.sleep(0.02)
        t0 = time.monotonic()
        await asyncio.sleep(2.0)
        resp = await api.post(f"{PREFIX}/session/{session_id}/streams/camera/stop", token=token)
        assert resp.status == 200
        elapsed = time.monotonic() - t0
    finally:
        await pub.pc.close()
    listing = await api.get(f"{PREFIX}/session/{session_id}/recordings", token=token)
    assert listing.status == 200, listing.body
    (rec,) = listing.json["recordings"]
    assert rec["status"] == "complete" and rec["kind"] == "camera"
    assert rec["started_at"] <= rec["ended_at"]
    # Recording starts at the first key frame after the connection is up: within ~0.5 s of t0.
    assert elapsed - 0.2 <= rec["duration_s"] <= elapsed + 0.8, (rec, elapsed)

    path = f"{PREFIX}/session/{session_id}/recordings/{rec['id']}"
    whole = await api.get(path, token=token)
    assert whole.status == 200 and len(whole.body) == rec["bytes"] > 0
    part = await api.get(path, token=token, headers={"Range": "bytes=0-99"})
    assert part.status == 206 and part.body == whole.body[:100]
    viewer = await join(api, session_id, {"enabled_streams": []})
    assert_error(await api.get(path, token=viewer["viewer_token"]), 403)
    assert_error(await api.get(path), 401)

    file = settings.recordings_dir / f"{session_id}/{camera['id']}-{rec['id']}.mkv"
    with av.open(str(file)) as container:
        video = container.streams.video[0]
        assert container.streams.audio, "the camera's microphone is recorded"
        frames = [f for f in container.decode(video)]
        duration = float(frames[-1].time - frames[0].time) + 1 / 30
    assert len(frames) >= 20
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert abs(duration - rec["duration_s"]) < 0.15, (duration, rec["duration_s"])


async def test_stream_status_follows_the_publisher_connection(server, api):
    started = await start_session(api, ("screen", "camera"))
    token, session_id = started["broadcaster_token"], started["session"]["id"]
    streams = {s["kind"]: s for s in started["session"]["streams"]}

    async def statuses() -> dict[str, str]:
        body = (await api.get(f"{PREFIX}/session/{session_id}/status")).json
        return {s["kind"]: s["status"] for s in body["streams"]}

    assert await statuses() == {"screen": "pending", "camera": "pending"}
    screen = await publish(api, token, streams["screen"]["id"], PatternTrack("screen", 160, 96, 5))
    camera = await publish(api, token, streams["camera"]["id"], PatternTrack("camera", 160, 96, 15))
    for _ in range(150):
        if await statuses() == {"screen": "live", "camera": "live"}:
            break
        await asyncio.sleep(0.02)
    assert await statuses() == {"screen": "live", "camera": "live"}
    # The broadcaster's camera connection goes away: that stream stops, the screen stays live.
    await camera.pc.close()
    for _ in range(150):
        if (await statuses())["camera"] == "stopped":
            break
        await asyncio.sleep(0.02)
    assert await statuses() == {"screen": "live", "camera": "stopped"}
    assert server.services.media.counters()["publishers"] == 1
    await screen.pc.close()
