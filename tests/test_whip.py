"""WHIP ingest and WHEP playback (RFC 9725) with aiortc speaking plain HTTP + SDP: the same media
plane as the JSON signaling (frames, composite, stream status), and the RFC's error cases."""

from __future__ import annotations

import pytest

from tests.api_helpers import START_BODY, assert_error
from tests.conftest import make_settings
from tests.media_helpers import PREFIX, PatternTrack, join, start_session, wait_stream_status
from tests.whip_helpers import SDP, WHEP, WHIP, whep_play, whip_publish

FRAG = {"Content-Type": "application/trickle-ice-sdpfrag"}


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "data", record=False)


async def test_whip_publish_whep_play_stream_and_composite_then_delete(server, api):
    started = await start_session(api)
    sid, token = started["session"]["id"], started["broadcaster_token"]
    screen, resp = await whip_publish(
        api, token, sid, "screen", PatternTrack("screen", 320, 180, 15)
    )
    assert resp.status == 201, resp.body
    assert resp.headers["Content-Type"] == "application/sdp"
    assert resp.headers["Location"].startswith(f"{WHIP}/{sid}/screen/pc_")
    assert resp.headers["ETag"].startswith('"') and resp.headers["ETag"].endswith('"')
    assert resp.headers.get_list("Link") == []  # no ICE servers configured
    camera, resp = await whip_publish(
        api, token, sid, "camera", PatternTrack("camera", 320, 180, 15), audio=True
    )
    assert resp.status == 201, resp.body
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    for stream_id in streams.values():
        await wait_stream_status(server.services.store, stream_id, "live")

    viewer_token = (await join(api, sid))["viewer_token"]
    one, resp = await whep_play(api, viewer_token, f"{WHEP}/{sid}/screen")
    assert resp.status == 201, resp.body
    assert resp.headers["Location"] == f"{WHEP}/{sid}/screen/{one.pc_id}"
    await one.wait_frames(5)
    comp, resp = await whep_play(
        api, viewer_token, f"{WHEP}/{sid}/composite?corner=top-left&size=30", audio=True
    )
    assert resp.status == 201, resp.body
    await comp.wait_frames(5)
    media = server.services.media
    assert media.peer(comp.pc_id).layout.corner == "top-left"
    assert media.counters()["viewers_composite"] == 1

    # WHEP DELETE frees the viewer's peer; WHIP DELETE stops the stream (viewers of it go too).
    before = media.counters()["peer_connections"]
    resp = await api.request("DELETE", f"{WHEP}/{sid}/screen/{one.pc_id}", token=viewer_token)
    assert resp.status == 200, resp.body
    assert media.peer(one.pc_id) is None
    assert media.counters()["peer_connections"] == before - 1
    resp = await api.request("DELETE", camera.location, token=token)
    assert resp.status == 200, resp.body
    doc = await server.services.store.get("broadcast_streams", streams["camera"])
    assert doc["status"] == "stopped"
    assert media.current_publisher(streams["camera"]) is None
    assert media.current_publisher(streams["screen"]) is not None
    await comp.wait_frames(3)  # the composite goes on with the screen alone
    # Deleting again: the resource is gone.
    assert_error(
        await api.request("DELETE", camera.location, token=token), 404, "resource_not_found"
    )
    # OBS reconnecting: a new POST reopens the stopped stream.
    again, resp = await whip_publish(
        api, token, sid, "camera", PatternTrack("camera", 320, 180, 15)
    )
    assert resp.status == 201, resp.body
    await wait_stream_status(server.services.store, streams["camera"], "live")
    for peer in (screen, camera, again):
        await peer.pc.close()
    for v in (one, comp):
        await v.close()


async def test_audio_only_and_video_only_publications(server, api):
    started = await start_session(api)
    sid, token = started["session"]["id"], started["broadcaster_token"]
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    mic, resp = await whip_publish(api, token, sid, "camera", None, audio=True)
    assert resp.status == 201, resp.body
    screen, resp = await whip_publish(
        api, token, sid, "screen", PatternTrack("screen", 320, 180, 15)
    )
    assert resp.status == 201, resp.body
    await wait_stream_status(server.services.store, streams["camera"], "live")
    # The screen takes no audio: an audio-only screen offer has nothing to publish.
    _, resp = await whip_publish(api, token, sid, "screen", None, audio=True)
    assert_error(resp, 400, "offer_not_sending")
    viewer_token = (await join(api, sid))["viewer_token"]
    comp, resp = await whep_play(api, viewer_token, f"{WHEP}/{sid}/composite", audio=True)
    assert resp.status == 201, resp.body
    await comp.wait_frames(3)
    for _ in range(200):
        if comp.audio_frames >= 5:
            break
        await __import__("asyncio").sleep(0.05)
    assert comp.audio_frames >= 5  # the microphone-only camera is heard
    await comp.close()
    for p in (mic, screen):
        await p.pc.close()


async def test_trickle_patch_ice_restart_and_preconditions(server, api):
    started = await start_session(api, ("screen",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    pub, resp = await whip_publish(api, token, sid, "screen", PatternTrack("screen", 320, 180, 15))
    assert resp.status == 201
    local = pub.pc.localDescription.sdp
    ufrag = next(x for x in local.splitlines() if x.startswith("a=ice-ufrag:"))
    pwd = next(x for x in local.splitlines() if x.startswith("a=ice-pwd:"))
    cand = next(x for x in local.splitlines() if x.startswith("a=candidate:"))
    frag = f"{ufrag}\r\n{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n{cand}\r\n"
    ok = await api.request("PATCH", pub.location, raw=frag.encode(), token=token, headers=FRAG)
    assert ok.status == 204, ok.body
    ok = await api.request(
        "PATCH",
        pub.location,
        raw=frag.encode(),
        token=token,
        headers={**FRAG, "If-Match": pub.etag},
    )
    assert ok.status == 204, ok.body
    assert_error(
        await api.request(
            "PATCH",
            pub.location,
            raw=frag.encode(),
            token=token,
            headers={**FRAG, "If-Match": '"someone-else"'},
        ),
        412,
    )
    restart = "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\n"
    assert_error(
        await api.request("PATCH", pub.location, raw=restart.encode(), token=token, headers=FRAG),
        428,
    )
    assert_error(
        await api.request(
            "PATCH",
            pub.location,
            raw=restart.encode(),
            token=token,
            headers={**FRAG, "If-Match": "*"},
        ),
        422,
        "ice_restart_unsupported",
    )
    assert_error(
        await api.request("PATCH", pub.location, raw=frag.encode(), token=token, headers=SDP), 415
    )
    assert_error(
        await api.request(
            "PATCH", pub.location, raw=b"a=candidate:garbage\r\n", token=token, headers=FRAG
        ),
        400,
        "invalid_candidate",
    )
    await wait_stream_status(server.services.store, started["session"]["streams"][0]["id"], "live")
    await pub.pc.close()


async def test_whip_error_cases_change_nothing(server, api):
    started = await start_session(api)
    sid, token = started["session"]["id"], started["broadcaster_token"]
    viewer_token = (await join(api, sid))["viewer_token"]
    url = f"{WHIP}/{sid}/screen"
    sdp = (await whip_publish(api, token, sid, "screen", PatternTrack("screen", 64, 64, 5)))[0]
    assert sdp is not None
    offer = sdp.pc.localDescription.sdp.encode()
    await sdp.pc.close()
    post = api.post
    assert_error(await post(url, raw=offer, headers=SDP), 401, "missing_token")
    assert_error(await post(url, raw=offer, token="nope", headers=SDP), 401, "invalid_token")
    assert_error(await post(url, raw=offer, token=viewer_token, headers=SDP), 403, "not_publisher")
    other = await start_session(api, ("screen",))
    assert_error(await post(url, raw=offer, token=other["broadcaster_token"], headers=SDP), 403)
    assert_error(await post(url, raw=offer, token=token), 415, "unsupported_media_type")
    assert_error(
        await post(url, raw=offer, token=token, headers={"Content-Type": "application/json"}), 415
    )
    assert_error(await post(url, raw=b"v=0\r\nnot sdp", token=token, headers=SDP), 400)
    assert_error(await post(url, raw=b"\xff\xfe", token=token, headers=SDP), 400)
    assert_error(await post(f"{WHIP}/ses_nope/screen", raw=offer, token=token, headers=SDP), 404)
    assert_error(await post(f"{WHIP}/{sid}/audio", raw=offer, token=token, headers=SDP), 404)
    assert_error(await api.get(url, token=token), 405)
    assert_error(await api.request("DELETE", url, token=token), 405)
    assert_error(
        await api.request("DELETE", f"{url}/pc_nope", token=token), 404, "resource_not_found"
    )
    # A viewer cannot delete or patch a publication.
    pub, resp = await whip_publish(api, token, sid, "screen", PatternTrack("screen", 64, 64, 5))
    assert resp.status == 201
    assert_error(await api.request("DELETE", pub.location, token=viewer_token), 404)
    assert_error(await post(pub.location, raw=offer, token=token, headers=SDP), 405)
    # Session ended: 409.
    assert (await post(f"{PREFIX}/session/{sid}/end", token=token)).status == 200
    assert_error(await post(url, raw=offer, token=token, headers=SDP), 409)
    await pub.pc.close()


async def test_whep_enforces_preferences_payment_and_quota(server, api):
    resp = await api.post(
        f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token
    )  # priced session
    assert resp.status == 201
    sid, token = resp.json["session"]["id"], resp.json["broadcaster_token"]
    pub, r = await whip_publish(api, token, sid, "screen", PatternTrack("screen", 64, 64, 5))
    assert r.status == 201
    viewer_token = (await join(api, sid))["viewer_token"]
    v, r = await whep_play(api, viewer_token, f"{WHEP}/{sid}/screen")
    assert_error(r, 402, "payment_required")
    v, r = await whep_play(api, viewer_token, f"{WHEP}/{sid}/composite")
    assert_error(r, 402, "payment_required")
    v, r = await whep_play(api, token, f"{WHEP}/{sid}/screen")  # the broadcaster is no viewer
    assert r.status in (401, 403), r.body
    assert_error(
        (await whep_play(api, viewer_token, f"{WHEP}/{sid}/composite?corner=middle"))[1],
        400,
        "invalid_layout",
    )
    await pub.pc.close()

    free = await start_session(api, ("screen",))
    fsid, ftoken = free["session"]["id"], free["broadcaster_token"]
    pub, r = await whip_publish(api, ftoken, fsid, "screen", PatternTrack("screen", 64, 64, 5))
    vt = (await join(api, fsid, {"enabled_streams": ["screen"], "mode": "separate"}))[
        "viewer_token"
    ]
    viewers = []
    for _ in range(4):
        v, r = await whep_play(api, vt, f"{WHEP}/{fsid}/screen")
        assert r.status == 201, r.body
        viewers.append(v)
    assert_error((await whep_play(api, vt, f"{WHEP}/{fsid}/screen"))[1], 429)
    for v in viewers:
        await v.close()
    await pub.pc.close()


async def test_refused_offer_leaves_a_stopped_stream_stopped(server, api):
    started = await start_session(api, ("screen",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    stream_id = started["session"]["streams"][0]["id"]
    resp = await api.post(f"{PREFIX}/session/{sid}/streams/screen/stop", token=token)
    assert resp.status == 200, resp.body
    pub, resp = await whip_publish(api, token, sid, "screen", PatternTrack("screen", 64, 64, 5))
    offer = pub.pc.localDescription.sdp
    await pub.pc.close()
    resp = await api.post(f"{PREFIX}/session/{sid}/streams/screen/stop", token=token)
    assert resp.status == 200, resp.body
    # No DTLS fingerprint: refused up front (aiortc itself would accept it, then fail an
    # assertion when DTLS starts). No ICE credentials: refused by aiortc after the stream was
    # reopened for it, which is rolled back.
    for dropped in ("a=fingerprint", "a=ice-ufrag"):
        bad = "".join(x + "\r\n" for x in offer.splitlines() if not x.startswith(dropped))
        resp = await api.post(f"{WHIP}/{sid}/screen", raw=bad.encode(), token=token, headers=SDP)
        assert_error(resp, 400, "invalid_sdp")
        doc = await server.services.store.get("broadcast_streams", stream_id)
        assert doc["status"] == "stopped", dropped


async def test_whip_takes_the_owners_api_token(server, api):
    """OBS keeps one bearer token: the account's API token publishes to any session it owns,
    trickles and ends the publication; another broadcaster's token is refused."""
    started = await start_session(api, ("screen",))
    sid = started["session"]["id"]
    other = await server.services.accounts.create_user("other-broadcaster", None)
    _, other_token = await server.services.accounts.issue_token(other, "obs")
    refused, resp = await whip_publish(
        api, other_token, sid, "screen", PatternTrack("screen", 320, 180, 15)
    )
    assert refused is None
    assert_error(resp, 403, "not_owner")
    screen, resp = await whip_publish(
        api, api.broadcaster_token, sid, "screen", PatternTrack("screen", 320, 180, 15)
    )
    assert resp.status == 201, resp.body
    stream_id = started["session"]["streams"][0]["id"]
    await wait_stream_status(server.services.store, stream_id, "live")
    patch = await api.request(
        "PATCH",
        screen.location,
        raw=b"a=end-of-candidates\r\n",
        token=api.broadcaster_token,
        headers=FRAG,
    )
    assert patch.status in (204, 422), patch.body
    resp = await api.request("DELETE", screen.location, token=api.broadcaster_token)
    assert resp.status == 200, resp.body
    await wait_stream_status(server.services.store, stream_id, "stopped")
    await screen.pc.close()
