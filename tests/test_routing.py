"""Routing through one public URL: real server processes on loopback sharing one store (SQLite
file, MongoDB database); clients send every request to an instance that does not own the session,
and its signaling -- HTTP offers and candidates, the signaling WebSocket, WHIP and WHEP -- is
forwarded to the owner, whose ICE candidates (its own UDP port range) the media then flows to."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket
from aiortc import RTCSessionDescription

from tests.api_helpers import web_broadcaster
from tests.cluster_helpers import candidate_ports, cluster, peers, udp_range, wait_peers
from tests.conftest import Client
from tests.media_helpers import (
    PREFIX,
    PatternTrack,
    Viewer,
    join,
    new_pc,
    offer_of,
    publish,
    start_session,
    view,
)
from tests.whip_helpers import WHEP, WHIP, whep_play, whip_publish

pytestmark = pytest.mark.store_backends


def _in_range(ports: set[int], index: int) -> bool:
    lo, hi = udp_range(index)
    return bool(ports) and all(lo <= p <= hi for p in ports)


async def _ws_view(base_url: str, path: str, token: str) -> tuple[Viewer, object]:
    """A viewer signaling over the WebSocket: offer → answer frame → media."""
    url = "ws" + base_url.removeprefix("http") + f"{path}?access_token={token}"
    conn = await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(url, request_timeout=15)
    )
    pc = new_pc()
    viewer = Viewer(pc)
    pc.on("track", viewer.on_track)
    pc.addTransceiver("video", direction="recvonly")
    await conn.write_message(json.dumps({"type": "offer", **await offer_of(pc)}))
    answer = json.loads(await conn.read_message())  # type: ignore[arg-type]
    assert answer["type"] == "answer", answer
    assert _in_range(candidate_ports(answer["sdp"]), 0), answer["sdp"]
    viewer.pc_id = answer["pc_id"]
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return viewer, conn


async def _wait_count(api: Client, sid: str, count: int, timeout: float = 10) -> None:
    """The session's viewer count as `api`'s instance reports it reaches `count` (other
    instances' viewers arrive with their next heartbeat)."""
    deadline = time.monotonic() + timeout
    while (got := (await api.get(f"{PREFIX}/session/{sid}/status")).json["viewer_count"]) != count:
        assert time.monotonic() < deadline, f"viewer_count {got}, expected {count}"
        await asyncio.sleep(0.2)


async def _wait_thumbnail(api: Client, sid: str, timeout: float = 15) -> None:
    """The session's thumbnail through `api`'s instance becomes a JPEG (204 until the owner has
    decoded a frame: the first request starts that)."""
    deadline = time.monotonic() + timeout
    while (resp := await api.get(f"{PREFIX}/session/{sid}/thumbnail.jpg")).status != 200:
        assert resp.status == 204 and time.monotonic() < deadline, (resp.status, resp.body[:200])
        await asyncio.sleep(0.3)
    assert resp.headers["Content-Type"] == "image/jpeg" and resp.body[:2] == b"\xff\xd8"


@pytest.mark.timeout(150)
async def test_signaling_sent_to_a_non_owner_is_served_by_the_owner(
    tmp_path: Path, store_url: str | None
) -> None:
    with cluster(tmp_path, store_url) as (a_proc, b_proc):
        a, b = Client(a_proc.base_url), Client(b_proc.base_url)
        await web_broadcaster(a)
        started = await start_session(a)
        sid, token = started["session"]["id"], started["broadcaster_token"]
        streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}

        # B answers the REST API itself and names A as the owner.
        owner = (await b.get(f"{PREFIX}/session/{sid}/status")).json["owner"]
        assert (owner["instance_id"], owner["answered_by"]) == ("inst-a", "inst-b")

        opened: list[object] = []
        try:
            # The broadcaster publishes through B: an HTTP offer, and WHIP.
            screen = await publish(
                b, token, streams["screen"], PatternTrack("screen", 320, 180, 10)
            )
            opened.append(screen.pc)
            assert _in_range(candidate_ports(screen.pc.remoteDescription.sdp), 0)
            whip, resp = await whip_publish(
                b, token, sid, "camera", PatternTrack("camera", 160, 120, 15)
            )
            assert resp.status == 201, resp.body
            assert whip is not None
            opened.append(whip.pc)
            assert resp.headers["Location"].startswith(f"{WHIP}/{sid}/camera/")
            assert _in_range(candidate_ports(resp.body.decode()), 0)

            joined = await join(
                b, sid, {"enabled_streams": ["screen", "camera"], "mode": "separate"}
            )
            vtoken = joined["viewer_token"]
            # An HTTP offer through B -- with a forged forwarding mark, which changes nothing.
            http_viewer, resp = await view(
                b,
                vtoken,
                f"{PREFIX}/stream/{streams['screen']}/signal/offer",
            )
            assert resp.status == 200, resp.body
            opened.append(http_viewer)
            assert _in_range(candidate_ports(resp.json["sdp"]), 0)
            forged = await b.post(
                f"{PREFIX}/stream/{streams['screen']}/signal/candidate",
                {"pc_id": http_viewer.pc_id, "candidate": {"candidate": "", "sdpMid": "0"}},
                token=vtoken,
                headers={"X-Multistream-Forwarded": "0" * 32},
            )
            assert forged.status == 200, forged.body  # A knows the pc; B would answer 404
            ws_viewer, conn = await _ws_view(
                b_proc.base_url, f"{PREFIX}/stream/{streams['camera']}/signal/ws", vtoken
            )
            opened.append(ws_viewer)
            whep_viewer, resp = await whep_play(b, vtoken, f"{WHEP}/{sid}/screen")
            assert resp.status == 201, resp.body
            opened.append(whep_viewer)
            assert _in_range(candidate_ports(resp.body.decode()), 0)

            for viewer in (http_viewer, ws_viewer, whep_viewer):
                await viewer.wait_frames(5, timeout=20)
            # The stream list's thumbnail through B: decoded on A, where the media is.
            await _wait_thumbnail(b, sid)
            # The viewer (three connections, one viewer) is on A; B counts it too (cluster-wide).
            await _wait_count(b, sid, 1)
            assert (await a.get(f"{PREFIX}/session/{sid}/status")).json["viewer_count"] == 1
            # Every peer connection is on A; B holds none and owns nothing.
            await wait_peers(a, "publisher", 2.0)
            await wait_peers(a, "subscriber", 3.0)
            for role in ("publisher", "subscriber"):
                assert await peers(b, role) == 0.0
            b_metrics = (await b.get("/metrics")).body.decode()
            assert 'multistream_sessions_owned{address="' in b_metrics
            assert next(
                line
                for line in b_metrics.splitlines()
                if line.startswith("multistream_sessions_owned")
            ).endswith(" 0.0")
            # The selected pair of a viewer points at A's port range.
            pair = ws_viewer.pc.getTransceivers()[0].receiver.transport.transport.iceGatherer
            remote = pair._connection._nominated  # type: ignore[attr-defined]
            assert remote and all(
                udp_range(0)[0] <= p.remote_candidate.port <= udp_range(0)[1]
                for p in remote.values()
            )

            # WHEP DELETE through B closes the connection on A.
            gone = await b.request(
                "DELETE", f"{WHEP}/{sid}/screen/{whep_viewer.pc_id}", token=vtoken
            )
            assert gone.status == 200, gone.body
            await wait_peers(a, "subscriber", 2.0)
            conn.close()  # type: ignore[attr-defined]
            await wait_peers(a, "subscriber", 1.0)  # the relayed socket closed A's viewer too
            await http_viewer.close()
            await wait_peers(a, "subscriber", 0.0)
            await _wait_count(b, sid, 0)
        finally:
            for item in opened:
                await item.close()  # type: ignore[attr-defined]
