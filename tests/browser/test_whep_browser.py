"""Headless Chromium as a plain WHEP player (fetch + RTCPeerConnection, no app code), and the studio's
copyable WHIP URLs. The publisher is aiortc speaking WHIP; everything runs in the lo-only namespace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Client
from tests.media_helpers import PatternTrack, start_session

from .chromium import Browser
from .conftest import WebServer
from .netns import NetnsLoop

# The whole WHEP exchange a generic player does: offer, POST application/sdp, answer from the 201.
WHEP_PLAY = """
(async () => {
  const url = %(url)s, token = %(token)s;
  // Chromium only gathers a 127.0.0.1 candidate once camera permission exists.
  (await navigator.mediaDevices.getUserMedia({video: true})).getTracks().forEach(t => t.stop());
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const video = document.createElement("video");
  video.muted = true; video.autoplay = true; video.id = "whep-video";
  document.body.append(video);
  pc.ontrack = (e) => { if (e.track.kind === "video") video.srcObject = new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => {
    if (pc.iceGatheringState === "complete") return ok();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
  });
  const resp = await fetch(url, {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  if (resp.status !== 201) return {status: resp.status, body: await resp.text()};
  window.whepResource = resp.headers.get("Location");
  await pc.setRemoteDescription({type: "answer", sdp: await resp.text()});
  window.whepPc = pc;
  return {status: 201, location: window.whepResource, etag: resp.headers.get("ETag")};
})()
"""


@dataclass
class Published:
    session_id: str
    token: str
    pcs: list[Any]


@pytest.fixture(scope="module")
def published(netns: NetnsLoop, web_server: WebServer) -> Iterator[Published]:
    """A free session whose screen and camera are published by aiortc over WHIP."""
    from tests.whip_helpers import whip_publish

    api = Client(web_server.base_url)

    async def go() -> Published:
        started = await start_session(api)
        sid, token = started["session"]["id"], started["broadcaster_token"]
        pcs = []
        for kind in ("screen", "camera"):
            pub, resp = await whip_publish(api, token, sid, kind, PatternTrack(kind, 320, 180, 15))
            assert resp.status == 201, resp.body
            pcs.append(pub.pc)
        return Published(sid, token, pcs)

    pub = netns.run(go())
    yield pub

    async def close() -> None:
        for pc in pub.pcs:
            await pc.close()

    netns.run(close())


async def _viewer_token(api: Client, session_id: str) -> str:
    resp = await api.post(f"/api/v1/livestream/session/{session_id}/join")
    assert resp.status == 200, resp.body
    return str(resp.json["viewer_token"])


def test_chromium_plays_a_stream_and_the_composite_over_whep(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, published: Published
) -> None:
    api = Client(web_server.base_url)

    async def check() -> None:
        token = await _viewer_token(api, published.session_id)
        media = web_server.services.media  # type: ignore[attr-defined]
        for target in ("screen", "composite?corner=top-left&size=30"):
            context = await browser.new_context()
            page = await browser.new_page(context)
            await page.goto(f"{web_server.base_url}/")
            url = f"/api/v1/whep/{published.session_id}/{target}"
            result = await page.evaluate(
                WHEP_PLAY % {"url": repr(url), "token": repr(token)}, user_gesture=True
            )
            assert result["status"] == 201, result
            pc_id = result["location"].rsplit("/", 1)[1]
            assert media.peer(pc_id) is not None
            # Frames arrive and keep arriving.
            await page.wait_for("document.querySelector('#whep-video').videoWidth > 0", 20)
            t0 = await page.evaluate("document.querySelector('#whep-video').currentTime")
            await page.wait_for(f"document.querySelector('#whep-video').currentTime > {t0}", 10)
            # DELETE from the page frees the server's peer.
            status = await page.evaluate(
                "fetch(window.whepResource, {method: 'DELETE', headers: "
                f"{{Authorization: 'Bearer {token}'}}}}).then(r => r.status)"
            )
            assert status == 200
            assert media.peer(pc_id) is None
            await browser.close_context(context)

    netns.run(check(), 90)


def test_studio_shows_copyable_whip_urls_and_token(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, published: Published
) -> None:
    async def check() -> None:
        context = await browser.new_context()
        page = await browser.new_page(context)
        await page.goto(f"{web_server.base_url}/studio")
        saved = {"sessionId": published.session_id, "token": published.token}
        await page.evaluate(
            f"sessionStorage.setItem('multistream.studio', {json.dumps(json.dumps(saved))})"
        )
        await page.reload()
        await page.wait_for("!document.querySelector('#whip-panel').hidden", 15)
        sid = published.session_id
        for kind in ("screen", "camera"):
            value = await page.evaluate(f"document.querySelector('#whip-url-{kind}').value")
            assert value == f"{web_server.base_url}/api/v1/whip/{sid}/{kind}"
        assert await page.evaluate("document.querySelector('#whip-token').value") == published.token
        await browser.close_context(context)

    netns.run(check(), 60)
