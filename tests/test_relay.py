"""Relay for large audiences: real server processes on loopback sharing the MongoDB wire server.

A publisher sends one VP8 stream to the owner; viewers' offers reach any instance, the assignment
(`server.assignment`) sends each to the least-loaded instance, and an instance serving viewers of a
session it does not own pulls the stream once from the owner (`server/media/relay.py`). The owner's
egress is then its own viewers plus one copy per relaying instance, whatever the audience.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.internal import FORWARDED, internal_mark
from tests import mongodb
from tests.api_helpers import assert_error, snapshot, web_broadcaster
from tests.cluster_helpers import cluster, udp_range
from tests.conftest import Client
from tests.media_helpers import (
    PREFIX,
    PatternTrack,
    join,
    publish,
    publish_both,
    start_session,
    view_composite,
)
from tests.relay_helpers import RELAY_ENV, Light, TexturedCamera, light_viewer
from tests.whip_helpers import WHEP, whep_play

VIEWERS = 60


@pytest.fixture
def mongo_url(request: pytest.FixtureRequest) -> Iterator[str]:
    server: mongodb.WireServer = request.getfixturevalue("mongodb_server")
    db = mongodb.unique_db()
    yield server.uri(db)
    server.drop(db)


async def metric(api: Client, name: str, labels: str = "") -> float:
    text = (await api.get("/metrics")).body.decode()
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    match = re.search(pattern, text, re.M)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


async def wait_metric(api: Client, name: str, labels: str, value: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (got := await metric(api, name, labels)) != value:
        assert time.monotonic() < deadline, f"{name}{labels} = {got}, expected {value}"
        await asyncio.sleep(0.2)


async def wait_live(api: Client, sid: str, count: int) -> None:
    """Until `count` streams of the session are live (their publishers' media arrived)."""
    deadline = time.monotonic() + 20
    while True:
        status = (await api.get(f"{PREFIX}/session/{sid}/status")).json
        if sum(1 for s in status["streams"] if s["status"] == "live") >= count:
            return
        assert time.monotonic() < deadline, status["streams"]
        await asyncio.sleep(0.1)


async def egress(api: Client) -> float:
    viewers = await metric(api, "multistream_media_bytes_sent_total", '{to="viewers"}')
    relays = await metric(api, "multistream_media_bytes_sent_total", '{to="relays"}')
    return viewers + relays


async def _live_camera(a: Client, screen: bool = False) -> tuple[str, str, str, list[Any]]:
    """A session owned by A whose camera (a multi-packet VP8 stream) A ingests; with `screen`,
    a small screen stream too (one more peer on A)."""
    await web_broadcaster(a)
    started = await start_session(a, ("screen", "camera") if screen else ("camera",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    camera = streams["camera"]
    publishers = [await publish(a, token, camera, TexturedCamera(640, 360, 15), codec="VP8")]
    if screen:
        track = PatternTrack("screen", 320, 180, 5)
        publishers.append(await publish(a, token, streams["screen"], track, codec="VP8"))
    await wait_live(a, sid, len(publishers))
    return sid, token, camera, publishers


async def _close(lights: list[Light], publishers: list[Any]) -> None:
    await asyncio.gather(*(v.pc.close() for v in lights), return_exceptions=True)
    for publisher in publishers:
        await publisher.pc.close()


@pytest.mark.timeout(150)
async def test_sixty_viewers_spread_over_three_instances_cost_the_owner_two_relay_copies(
    tmp_path: Path, mongo_url: str
) -> None:
    with cluster(tmp_path, mongo_url, count=3, extra=RELAY_ENV) as procs:
        apis = [Client(p.base_url) for p in procs]
        a = apis[0]
        sid, _, camera, publishers = await _live_camera(a)
        lights: list[Light] = []
        try:
            await asyncio.sleep(1.0)  # every instance has written its record
            for i in range(VIEWERS):
                entry = apis[i % 3]  # a balancer with no stickiness
                joined = await join(entry, sid, {"enabled_streams": ["camera"], "mode": "separate"})
                lights.append(await light_viewer(entry, joined["viewer_token"], camera))

            served = {
                name: sum(1 for v in lights if v.served_by == name)
                for name in ("inst-a", "inst-b", "inst-c")
            }
            assert sum(served.values()) == VIEWERS, served
            assert all(n >= VIEWERS // 6 for n in served.values()), served
            # Media comes from the serving instance's own UDP ports.
            for v in lights:
                index = "abc".index(v.served_by[-1])
                lo, hi = udp_range(index)
                assert v.ports and all(lo <= p <= hi for p in v.ports), (v.served_by, v.ports)

            deadline = time.monotonic() + 30
            while (late := [v for v in lights if v.frames < 10]) and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
            assert not late, [(v.served_by, v.frames) for v in late][:10]

            # One relay link per relaying instance, whatever its audience.
            assert await metric(a, "multistream_relay_links", '{direction="out"}') == 2.0
            assert await metric(a, "multistream_relay_links", '{direction="in"}') == 0.0
            for api in apis[1:]:
                assert await metric(api, "multistream_relay_links", '{direction="in"}') == 1.0

            # The owner's egress over a window: its own viewers plus two relay copies.
            before = await egress(a)
            relay_before = await metric(a, "multistream_media_bytes_sent_total", '{to="relays"}')
            received_before = sum(v.octets for v in lights)
            await asyncio.sleep(4.0)
            owner_out = await egress(a) - before
            relay_out = (
                await metric(a, "multistream_media_bytes_sent_total", '{to="relays"}')
                - relay_before
            )
            received = sum(v.octets for v in lights) - received_before
            copy = relay_out / 2  # one stream's worth of media over the window
            assert copy > 0
            packets = sum(v.packets for v in lights) / max(1, sum(v.frames for v in lights))
            print(
                f"relay: served {served}, owner egress {owner_out:.0f} B over 4 s, "
                f"one copy {copy:.0f} B, received {received:.0f} B, {packets:.1f} packets/frame"
            )
            all_viewers = VIEWERS * copy
            assert owner_out < all_viewers / 2, (owner_out, all_viewers)
            assert owner_out < (served["inst-a"] + 2) * copy * 1.5, (owner_out, copy, served)
            # ...while the audience as a whole received about one copy each (RTP headers too).
            assert received > 0.7 * all_viewers, (received, all_viewers)

            status = (await apis[1].get(f"{PREFIX}/session/{sid}/status")).json
            assert status["owner"]["instance_id"] == "inst-a"
            relaying = {i["instance_id"]: i["relaying"] for i in status["relay"]["instances"]}
            await asyncio.sleep(0.6)  # a heartbeat after the links opened
            status = (await apis[1].get(f"{PREFIX}/session/{sid}/status")).json
            relaying = {i["instance_id"]: i["relaying"] for i in status["relay"]["instances"]}
            assert relaying == {"inst-a": False, "inst-b": True, "inst-c": True}, relaying
        finally:
            await _close(lights, publishers)


@pytest.mark.timeout(120)
async def test_relay_link_closes_after_the_last_local_viewer_leaves(
    tmp_path: Path, mongo_url: str
) -> None:
    with cluster(tmp_path, mongo_url, count=2, extra=RELAY_ENV) as procs:
        a, b = (Client(p.base_url) for p in procs)
        sid, _, camera, publishers = await _live_camera(a, screen=True)
        lights: list[Light] = []
        try:
            await asyncio.sleep(1.0)
            viewer_tokens = []
            for _ in range(2):  # B holds no peer, A two publishers': B serves both, one link
                joined = await join(b, sid, {"enabled_streams": ["camera"], "mode": "separate"})
                viewer_tokens.append(joined["viewer_token"])
                lights.append(await light_viewer(b, joined["viewer_token"], camera))
            assert [v.served_by for v in lights] == ["inst-b", "inst-b"]
            tokens = viewer_tokens
            # A request about a relayed connection reaching the owner is sent on to B, which
            # holds it (its id names B): here an end-of-candidates trickle through A.
            assert all(v.pc_id.startswith("pc_r") for v in lights), [v.pc_id for v in lights]
            trickled = await a.post(
                f"{PREFIX}/stream/{camera}/signal/candidate",
                {"pc_id": lights[0].pc_id, "candidate": {"candidate": "", "sdpMid": "0"}},
                token=tokens[0],
            )
            assert trickled.status == 200, trickled.body
            stranger = await a.post(
                f"{PREFIX}/stream/{camera}/signal/candidate",
                {"pc_id": lights[0].pc_id, "candidate": {"candidate": "", "sdpMid": "0"}},
                token=tokens[1],
            )
            assert_error(stranger, 404, "pc_not_found")  # B answers: not this viewer's
            await wait_metric(a, "multistream_relay_links", '{direction="out"}', 1.0, 10)
            await wait_metric(b, "multistream_relay_links", '{direction="in"}', 1.0, 10)
            deadline = time.monotonic() + 20
            while any(v.frames < 5 for v in lights):
                assert time.monotonic() < deadline, [v.frames for v in lights]
                await asyncio.sleep(0.2)

            await lights[0].pc.close()  # one viewer leaves: the other still needs the link
            await asyncio.sleep(2.5)
            assert await metric(b, "multistream_relay_links", '{direction="in"}') == 1.0
            frames = lights[1].frames
            await asyncio.sleep(0.5)
            assert lights[1].frames > frames

            await lights[1].pc.close()  # the last one leaves: the link goes after the linger
            await wait_metric(b, "multistream_relay_links", '{direction="in"}', 0.0, 15)
            await wait_metric(a, "multistream_relay_links", '{direction="out"}', 0.0, 15)
            assert await metric(a, "multistream_viewers_present") == 0.0
        finally:
            await _close(lights, publishers)


async def test_internal_relay_endpoint_refuses_unmarked_and_bad_requests(api: Client, services):
    secret = services.settings.token_secret.reveal()
    path = "/internal/relay/str_nope"
    body = {"type": "offer", "sdp": "v=0\r\n", "instance_id": "inst-x"}
    before = await snapshot(services.store)
    assert_error(await api.post(path, body), 403, "not_internal")
    wrong = {FORWARDED: internal_mark("another-secret", "POST", path)}
    assert_error(await api.post(path, body, headers=wrong), 403, "not_internal")
    other_path = {FORWARDED: internal_mark(secret, "POST", "/internal/relay/other")}
    assert_error(await api.post(path, body, headers=other_path), 403, "not_internal")
    marked = {FORWARDED: internal_mark(secret, "POST", path)}
    assert_error(await api.post(path, {"type": "offer", "sdp": "x"}, headers=marked), 400)
    assert_error(await api.post(path, raw=b"[1", headers=marked), 400)
    assert_error(await api.post(path, body, headers=marked), 404, "stream_not_found")
    assert await snapshot(services.store) == before
    assert services.media.counters()["relays_out"] == 0


@pytest.mark.timeout(120)
async def test_composite_and_whep_viewers_are_served_through_a_relay(
    tmp_path: Path, mongo_url: str
) -> None:
    with cluster(tmp_path, mongo_url, count=2, extra=RELAY_ENV) as procs:
        a, b = (Client(p.base_url) for p in procs)
        await web_broadcaster(a)
        sid, _, publishers = await publish_both(a, (320, 180, 10), (320, 180, 10))
        await wait_live(a, sid, 2)
        opened: list[Any] = []
        try:
            await asyncio.sleep(1.0)
            # Through A, the owner: B holds no peer, so B serves both, composing locally from
            # the two streams it pulls once each.
            composite, joined = await view_composite(a, sid)
            opened.append(composite)
            await composite.wait_frames(5, timeout=40)
            whep, resp = await whep_play(a, joined["viewer_token"], f"{WHEP}/{sid}/camera")
            assert resp.status == 201, resp.body
            assert resp.headers["X-Multistream-Served-By"] == "inst-b"
            opened.append(whep)
            await whep.wait_frames(5, timeout=30)
            assert await metric(a, "multistream_relay_links", '{direction="out"}') == 2.0
            assert await metric(b, "multistream_relay_links", '{direction="in"}') == 2.0
            assert await metric(b, "multistream_composite_layouts") == 1.0
            assert await metric(a, "multistream_composite_layouts") == 0.0
            # The watch page's poll (every connection of this viewer) through A, the owner,
            # finds the viewer's connections on B.
            polled = await a.get(f"{PREFIX}/session/{sid}/quality", token=joined["viewer_token"])
            assert polled.status == 200, polled.body
            found = {c["pc_id"] for c in polled.json["connections"]}
            assert found == {composite.pc_id, whep.pc_id}, (found, composite.pc_id, whep.pc_id)
            # WHEP DELETE through A reaches B, which holds the connection.
            gone = await a.request(
                "DELETE", f"{WHEP}/{sid}/camera/{whep.pc_id}", token=joined["viewer_token"]
            )
            assert gone.status == 200, gone.body
            assert await metric(b, "multistream_peer_connections", '{role="subscriber"}') == 1.0
        finally:
            for item in opened:
                await item.close()
            for publisher in publishers:
                await publisher.pc.close()
