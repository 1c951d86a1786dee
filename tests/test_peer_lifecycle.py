"""Viewer connections that never connect are closed and counted; pending ones are capped (issue
10.2). Offers are real aiortc offers with their candidates stripped -- what a trickle-ICE client
sends first -- from clients that then go away without ever doing ICE."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection

from tests.api_helpers import PREFIX, assert_error, snapshot
from tests.conftest import RunningServer, make_settings, running
from tests.media_helpers import (
    PatternTrack,
    join,
    new_pc,
    offer_of,
    publish,
    start_session,
    view,
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def without_candidates(sdp: str) -> str:
    keep = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    return "\r\n".join(keep) + "\r\n"


async def abandoned_offer(api: Any, token: str, path: str) -> Any:
    """Offer recvonly video without candidates, read the answer, and go away (never any ICE)."""
    pc: RTCPeerConnection = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    offer = await offer_of(pc)
    await pc.close()
    assert "a=candidate:" not in without_candidates(offer["sdp"])
    return await api.post(path, {**offer, "sdp": without_candidates(offer["sdp"])}, token=token)


async def metric(srv: RunningServer, name: str) -> float:
    text = (await srv.client.get("/metrics")).body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_fifty_abandoned_offers_are_closed_within_the_timeout(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", peer_connect_timeout_s=2, record=False)
    async with running(settings) as srv:
        api, media = srv.client, srv.services.media
        started = await start_session(api)
        sid = started["session"]["id"]
        screen = next(s["id"] for s in started["session"]["streams"] if s["kind"] == "screen")
        tokens = [(await join(api, sid))["viewer_token"] for _ in range(13)]
        await asyncio.sleep(0.2)
        base_peers, base_fds = media.counters()["peer_connections"], open_fds()

        for i in range(50):
            # Four per viewer: the per-viewer allowance.
            resp = await abandoned_offer(
                api, tokens[i // 4], f"{PREFIX}/stream/{screen}/signal/offer"
            )
            assert resp.status == 200, resp.body
        t_offers = time.monotonic()
        assert media.counters()["peer_connections"] == base_peers + 50
        assert media.counters()["peers_pending"] == 50
        assert open_fds() > base_fds
        # Answered but never connected: not viewers.
        status = (await api.get(f"{PREFIX}/session/{sid}/status")).json
        assert status["viewer_count"] == 0
        assert await metric(srv, 'multistream_viewers{mode="separate"}') == 0
        assert await metric(srv, "multistream_peers_pending") == 50

        deadline = t_offers + settings.peer_connect_timeout_s + 3
        while time.monotonic() < deadline:
            if media.counters()["peer_connections"] == base_peers and open_fds() <= base_fds:
                break
            await asyncio.sleep(0.05)
        assert media.counters()["peer_connections"] == base_peers
        assert media.counters()["peers_pending"] == 0
        assert open_fds() <= base_fds, (open_fds(), base_fds)
        assert await metric(srv, "multistream_peer_connect_timeouts_total") == 50


async def test_pending_offers_per_session_are_capped(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data", peer_connect_timeout_s=30, max_pending_peers=5, record=False
    )
    async with running(settings) as srv:
        api = srv.client
        started = await start_session(api)
        sid = started["session"]["id"]
        screen = next(s["id"] for s in started["session"]["streams"] if s["kind"] == "screen")
        path = f"{PREFIX}/stream/{screen}/signal/offer"
        tokens = [(await join(api, sid))["viewer_token"] for _ in range(5)]
        for token in tokens:
            assert (await abandoned_offer(api, token, path)).status == 200
        late = (await join(api, sid))["viewer_token"]
        before = await snapshot(srv.services.store)
        resp = await abandoned_offer(api, late, path)
        assert_error(resp, 429, "too_many_pending")
        assert resp.headers["Retry-After"] == "30"
        assert srv.services.media.counters()["peer_connections"] == 5
        assert await snapshot(srv.services.store) == before
        # Another session is not affected by this one's pending connections.
        other = await start_session(api)
        other_screen = next(s["id"] for s in other["session"]["streams"] if s["kind"] == "screen")
        other_token = (await join(api, other["session"]["id"]))["viewer_token"]
        ok = await abandoned_offer(api, other_token, f"{PREFIX}/stream/{other_screen}/signal/offer")
        assert ok.status == 200, ok.body


async def test_a_connected_viewer_outlives_the_connect_timeout(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", peer_connect_timeout_s=1, record=False)
    async with running(settings) as srv:
        api = srv.client
        started = await start_session(api, ("screen",))
        sid, btoken = started["session"]["id"], started["broadcaster_token"]
        screen = started["session"]["streams"][0]["id"]
        pub = await publish(api, btoken, screen, PatternTrack("screen", 160, 96, 15))
        viewer, resp = await view(
            api, (await join(api, sid))["viewer_token"], f"{PREFIX}/stream/{screen}/signal/offer"
        )
        assert resp.status == 200, resp.body
        try:
            await viewer.wait_frames(3)
            status = (await api.get(f"{PREFIX}/session/{sid}/status")).json
            assert status["viewer_count"] == 1
            await asyncio.sleep(1.5)
            await viewer.wait_frames(5)
            assert viewer.pc.connectionState == "connected"
            assert srv.services.media.counters()["peer_connect_timeouts"] == 0
            assert await metric(srv, 'multistream_viewers{mode="separate"}') == 1
        finally:
            await viewer.close()
            await pub.pc.close()


async def test_caps_hold_for_concurrent_offers(tmp_path: Path) -> None:
    """Offers racing each other are counted while they negotiate, not only once answered."""
    settings = make_settings(
        tmp_path / "data", peer_connect_timeout_s=30, max_pending_peers=5, record=False
    )
    async with running(settings) as srv:
        api = srv.client
        started = await start_session(api)
        sid = started["session"]["id"]
        screen = next(s["id"] for s in started["session"]["streams"] if s["kind"] == "screen")
        path = f"{PREFIX}/stream/{screen}/signal/offer"
        tokens = [(await join(api, sid))["viewer_token"] for _ in range(12)]
        answers = await asyncio.gather(*(abandoned_offer(api, t, path) for t in tokens))
        assert sorted(r.status for r in answers) == [200] * 5 + [429] * 7
        assert srv.services.media.counters()["peer_connections"] == 5

        other = await start_session(api)
        other_screen = next(s["id"] for s in other["session"]["streams"] if s["kind"] == "screen")
        token = (await join(api, other["session"]["id"]))["viewer_token"]
        path = f"{PREFIX}/stream/{other_screen}/signal/offer"
        answers = await asyncio.gather(*(abandoned_offer(api, token, path) for _ in range(8)))
        statuses = sorted(r.status for r in answers)
        assert statuses == [200] * 4 + [429] * 4, statuses  # one viewer: at most 4 connections
