"""Adaptive delivery through the real server on loopback: links, rungs, the quality menu's API."""

from __future__ import annotations

import asyncio
import itertools

from tests.api_helpers import assert_error
from tests.media_helpers import PREFIX, PatternTrack, join, publish, start_session, view


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_a_viewer_moved_to_a_lower_rung_keeps_playing_forward_in_time(server, api):
    """Quality menu: the viewer picks a server-encoded rung below the forwarded original. Frames
    keep coming (the switch waits for the rung's key frame), their timestamps keep moving forward
    (forwarded and encoded packets share one media clock), and the picture gets the rung's size.
    Back on `auto` on a perfect link it returns to the original."""
    started = await start_session(api, ("camera",))
    session_id = started["session"]["id"]
    camera = started["session"]["streams"][0]
    pub = await publish(
        api, started["broadcaster_token"], camera["id"], PatternTrack("camera", 640, 360, 30)
    )
    info = await join(api, session_id)
    token = info["viewer_token"]
    viewer, resp = await view(api, token, f"{PREFIX}/stream/{camera['id']}/signal/offer")
    stamps: list[tuple[int, int]] = []
    try:
        assert resp.status == 200, resp.body
        await viewer.wait_frames(10)
        state = await api.get(
            f"{PREFIX}/session/{session_id}/quality?pc_id={viewer.pc_id}", token=token
        )
        assert state.status == 200, state.body
        names = [r["name"] for r in state.json["rungs"]]
        assert state.json["choice"] == "auto" and state.json["rung"] == names[0] == "source"
        lower = next(r for r in state.json["rungs"] if r["height"] == 180)

        # Keep the decoded frames' timestamps from here on.
        track = viewer.tracks[0]
        original_recv = track.recv

        async def recv():  # type: ignore[no-untyped-def]
            frame = await original_recv()
            stamps.append((int(frame.pts), frame.height))
            return frame

        track.recv = recv  # type: ignore[method-assign]
        await viewer.wait_frames(5)
        put = await api.put(
            f"{PREFIX}/session/{session_id}/quality",
            {"pc_id": viewer.pc_id, "quality": lower["name"]},
            token=token,
        )
        assert put.status == 200, put.body
        assert put.json["choice"] == lower["name"]
        await _wait(lambda: any(h == 180 for _, h in stamps))
        await viewer.wait_frames(10)
        pts = [p for p, _ in stamps]
        assert all(b > a for a, b in itertools.pairwise(pts)), "time went backwards"
        # No freeze at the switch: consecutive frames stay well under a second apart (90 kHz).
        assert max(b - a for a, b in itertools.pairwise(pts)) < 45_000
        media = server.services.media
        assert media.counters()["encoders_running"] == 1  # the rung's one shared encoder

        back = await api.put(
            f"{PREFIX}/session/{session_id}/quality",
            {"pc_id": viewer.pc_id, "quality": "auto"},
            token=token,
        )
        assert back.status == 200 and back.json["choice"] == "auto"
    finally:
        await viewer.close()
        await pub.pc.close()


async def test_quality_and_debug_refuse_bad_input(server, api):
    started = await start_session(api, ("screen",))
    session_id = started["session"]["id"]
    screen = started["session"]["streams"][0]
    pub = await publish(
        api, started["broadcaster_token"], screen["id"], PatternTrack("screen", 320, 192, 15)
    )
    info = await join(api, session_id)
    token = info["viewer_token"]
    viewer, resp = await view(api, token, f"{PREFIX}/stream/{screen['id']}/signal/offer")
    try:
        assert resp.status == 200
        bad = await api.put(
            f"{PREFIX}/session/{session_id}/quality",
            {"pc_id": viewer.pc_id, "quality": "8k"},
            token=token,
        )
        assert_error(bad, 400, "invalid_quality")
        other = await api.put(
            f"{PREFIX}/session/{session_id}/quality",
            {"pc_id": "pc_nope", "quality": "auto"},
            token=token,
        )
        assert_error(other, 404, "pc_not_found")
        listed = await api.get(f"{PREFIX}/session/{session_id}/quality", token=token)
        assert listed.status == 200
        assert [c["pc_id"] for c in listed.json["connections"]] == [viewer.pc_id]
        # The debug view is the broadcaster's, not a viewer's.
        denied = await api.get(f"{PREFIX}/session/{session_id}/debug/viewers", token=token)
        assert_error(denied, 403)
        await viewer.wait_frames(5)
        # aiortc's receiver sends receiver reports and REMB about once a second.
        await asyncio.sleep(2.5)
        debug = await api.get(
            f"{PREFIX}/session/{session_id}/debug/viewers", token=started["broadcaster_token"]
        )
        assert debug.status == 200
        (entry,) = debug.json["viewers"]
        assert entry["pc_id"] == viewer.pc_id and entry["rung"] == "source"
        link = entry["link"]
        assert link["reports"] > 0 and link["sent_bps"] > 0
        assert link["target_bps"] > 0 and entry["frames_delivered"] > 0
        assert link["delay_state"] in ("normal", "hold", "overuse")
        # Who asked its source for key frames, by reason (issue 13: find who asks).
        keys = entry["keyframes"]
        assert keys["source"].endswith("passthrough") and keys["published"] >= 1
        assert set(keys["requested"]) <= {
            "join",
            "switch",
            "pli",
            "lost",
            "late",
            "resync",
            "waiting",
        }
        assert isinstance(keys["publisher_plis"], dict)
        metrics = await api.get("/metrics")
        text = metrics.body.decode()
        assert "# TYPE multistream_keyframe_requests gauge" in text
        assert 'multistream_viewer_target_bitrate_bps_bucket{le="+Inf"} 1.0' in text
        assert "multistream_viewers_limited_by_link 0.0" in text
    finally:
        await viewer.close()
        await pub.pc.close()


async def test_late_frames_move_a_viewer_to_a_rung_only_when_its_link_held_them(server, api):
    """`late` (frames that waited too long for a viewer of the shared original) names the link
    only when the viewer is paced: the pacer held them. Unpaced, the lateness was this server's
    (a busy event loop), and moving the viewer to an encoded rung would cost a decoder and an
    encoder on top; it stays on the original. Called through the track's recovery hook, as
    `ViewerTrack` calls it."""
    started = await start_session(api, ("camera",))
    session_id = started["session"]["id"]
    camera = started["session"]["streams"][0]
    pub = await publish(
        api, started["broadcaster_token"], camera["id"], PatternTrack("camera", 640, 360, 30)
    )
    viewer, resp = await view(
        api,
        (await join(api, session_id))["viewer_token"],
        f"{PREFIX}/stream/{camera['id']}/signal/offer",
    )
    try:
        assert resp.status == 200, resp.body
        media = server.services.media
        stream = media.feeds.media[camera["id"]]
        stream.frames.keep_warm(60)  # (a join keeps it 6 s: more than a loaded CI may take here)
        await viewer.wait_frames(5)
        (peer,) = [p for p in media.peers if p.role != "publisher"]
        assert peer.link is not None and peer.video is not None and peer.video.recover
        # A clean loopback link: the control loop stops pacing it within a tick.
        await _wait(lambda: not peer.link.paced)
        await _wait(lambda: stream.ingest is not None and stream.ingest.decoding)
        assert peer.video.recover("late") is False
        assert peer.rung == 0
        peer.link.set_paced(True)  # as when its estimate says the link may be short
        assert peer.video.recover("late") is True
        assert peer.rung > 0
    finally:
        await viewer.close()
        await pub.pc.close()
