"""Signaling over the WebSocket, trickled candidates, and the ICE policy (hosts, UDP port range)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from aiortc import RTCSessionDescription
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from server.media import ice
from tests.conftest import make_settings
from tests.media_helpers import (
    PREFIX,
    PatternTrack,
    Viewer,
    join,
    new_pc,
    offer_of,
    publish,
    start_session,
)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "data", udp_ports=(41000, 41019), record=False)


def candidate_ports(sdp: str) -> list[int]:
    return [
        int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+)", sdp)
    ]


async def test_websocket_offer_candidate_and_close(server, api):
    started = await start_session(api, ("screen",))
    stream_id = started["session"]["streams"][0]["id"]
    pub = await publish(
        api, started["broadcaster_token"], stream_id, PatternTrack("screen", 320, 180, 10)
    )
    info = await join(api, started["session"]["id"])
    url = (
        f"ws://127.0.0.1:{server.port}{PREFIX}/stream/{stream_id}/signal/ws"
        f"?access_token={info['viewer_token']}"
    )
    ws = await websocket_connect(url)
    pc = new_pc()
    viewer = Viewer(pc)
    pc.on("track", viewer.on_track)
    pc.addTransceiver("video", direction="recvonly")
    media = server.services.media
    try:
        offer = await offer_of(pc)
        await ws.write_message(json.dumps(offer))
        answer = json.loads(await ws.read_message())
        assert answer["type"] == "answer" and answer["pc_id"].startswith("pc_")
        # The server's host candidates are loopback and inside the configured port range.
        ports = candidate_ports(answer["sdp"])
        assert ports and all(41000 <= p <= 41019 for p in ports)
        assert "192.168." not in answer["sdp"] and " 10." not in answer["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        # Trickle our own host candidate again (duplicates are harmless), then an end marker.
        local = pc.localDescription.sdp
        line = next(x for x in local.splitlines() if x.startswith("a=candidate:"))
        for cand in (
            {"candidate": line[2:], "sdpMid": "0", "sdpMLineIndex": 0},
            {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0},
        ):
            await ws.write_message(
                json.dumps({"type": "candidate", "pc_id": answer["pc_id"], "candidate": cand})
            )
            assert json.loads(await ws.read_message()) == {"type": "ack"}
        # Garbage gets an error message, the socket stays usable.
        await ws.write_message("{nope")
        err = json.loads(await ws.read_message())
        assert err["type"] == "error" and err["error"]["status"] == 400
        await ws.write_message(
            json.dumps(
                {
                    "type": "candidate",
                    "pc_id": answer["pc_id"],
                    "candidate": {"candidate": "garbage"},
                }
            )
        )
        assert json.loads(await ws.read_message())["error"]["code"] == "invalid_candidate"
        await viewer.wait_frames(3)
        assert media.counters()["viewers"] == 1
        ws.close()
        for _ in range(100):
            if media.counters()["viewers"] == 0:
                break
            await asyncio.sleep(0.02)
        assert media.counters()["viewers"] == 0  # leaving the socket closed the connection
    finally:
        await viewer.close()
        await pub.pc.close()


async def test_websocket_refuses_missing_token_before_upgrade(server, api):
    started = await start_session(api, ("screen",))
    stream_id = started["session"]["streams"][0]["id"]
    url = f"ws://127.0.0.1:{server.port}{PREFIX}/stream/{stream_id}/signal/ws"
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(HTTPRequest(url))
    assert info.value.code == 401


async def test_post_candidate_for_own_connection(server, api):
    started = await start_session(api, ("screen",))
    stream_id = started["session"]["streams"][0]["id"]
    token = started["broadcaster_token"]
    pub = await publish(api, token, stream_id, PatternTrack("screen", 160, 96, 5))
    try:
        line = next(
            x for x in pub.pc.localDescription.sdp.splitlines() if x.startswith("a=candidate:")
        )
        path = f"{PREFIX}/stream/{stream_id}/signal/candidate"
        body = {
            "pc_id": pub.pc_id,
            "candidate": {"candidate": line[2:], "sdpMid": "0", "sdpMLineIndex": 0},
        }
        resp = await api.post(path, body, token=token)
        assert resp.status == 200, resp.body
        # mDNS host names are dropped when only loopback is in use, not resolved.
        mdns = line.replace("127.0.0.1", "a1b2c3d4-0000-4000-8000-000000000000.local")
        resp = await api.post(
            path, {**body, "candidate": {**body["candidate"], "candidate": mdns[2:]}}, token=token
        )
        assert resp.status == 200
        viewer = await join(api, started["session"]["id"])
        resp = await api.post(path, body, token=viewer["viewer_token"])
        assert resp.status == 404  # not this token's connection
    finally:
        await pub.pc.close()


def test_ice_configuration_never_defaults_to_public_stun():
    assert ice.configuration(()).iceServers == []
    conf = ice.configuration(("stun:127.0.0.1:3478", "turn:user:pw@127.0.0.1:3478"))
    assert [s.urls for s in conf.iceServers] == ["stun:127.0.0.1:3478", "turn:127.0.0.1:3478"]
    assert (conf.iceServers[1].username, conf.iceServers[1].credential) == ("user", "pw")


async def test_composite_over_the_websocket(server, api):
    started = await start_session(api)
    token, session_id = started["broadcaster_token"], started["session"]["id"]
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    pubs = [
        await publish(api, token, streams["screen"], PatternTrack("screen", 320, 192, 10)),
        await publish(api, token, streams["camera"], PatternTrack("camera", 160, 96, 20)),
    ]
    info = await join(api, session_id, {"mode": "composite"})
    url = (
        f"ws://127.0.0.1:{server.port}{PREFIX}/session/{session_id}/composite/signal/ws"
        f"?access_token={info['viewer_token']}"
    )
    ws = await websocket_connect(url)
    pc = new_pc()
    viewer = Viewer(pc)
    pc.on("track", viewer.on_track)
    pc.addTransceiver("video", direction="recvonly")
    try:
        await ws.write_message(json.dumps(await offer_of(pc)))
        answer = json.loads(await ws.read_message())
        assert answer["type"] == "answer", answer
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await viewer.wait_frames(3)
        assert viewer.frames[-1].width == 320
        assert server.services.media.counters()["composite_layouts"] == 1
        ws.close()
        for _ in range(100):
            if server.services.media.counters()["composite_layouts"] == 0:
                break
            await asyncio.sleep(0.02)
        assert server.services.media.counters()["composite_layouts"] == 0
    finally:
        await viewer.close()
        for pub in pubs:
            await pub.pc.close()
