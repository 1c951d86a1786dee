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
from .conftest import WebServer, log_in
from .netns import NetnsLoop

# The whole WHEP exchange a generic player does: offer, POST application/sdp, answer from the 201.
WHEP_PLAY = r"""
(async () => {
  const url = %(url)s, token = %(token)s, trickle = %(trickle)s;
  // Chromium only gathers a 127.0.0.1 candidate once camera permission exists.
  (await navigator.mediaDevices.getUserMedia({video: true})).getTracks().forEach(t => t.stop());
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const video = document.createElement("video");
  video.muted = true; video.autoplay = true; video.id = "whep-video";
  document.body.append(video);
  pc.ontrack = (e) => { if (e.track.kind === "video") video.srcObject = new MediaStream([e.track]); };
  const auth = {"Authorization": "Bearer " + token};
  // Trickle (RFC 8840 fragments by PATCH, If-Match: the ETag) or wait for all candidates.
  const pending = [];
  let resource = null, etag = null;
  window.whepPatches = [];
  const patch = async (lines) => {
    const local = pc.localDescription.sdp;
    const ufrag = local.match(/a=ice-ufrag:(.*)/)[1], pwd = local.match(/a=ice-pwd:(.*)/)[1];
    const body = `a=ice-ufrag:${ufrag}\r\na=ice-pwd:${pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\n` +
      `a=mid:0\r\n` + lines.map((l) => l + "\r\n").join("");
    const r = await fetch(resource, {method: "PATCH", body, headers: {...auth,
      "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": etag}});
    window.whepPatches.push(r.status);
  };
  if (trickle) {
    pc.onicecandidate = (e) => {
      const line = e.candidate ? "a=" + e.candidate.candidate : "a=end-of-candidates";
      if (e.candidate && !e.candidate.candidate) return;
      if (resource) patch([line]); else pending.push(line);
    };
  }
  await pc.setLocalDescription(await pc.createOffer());
  if (!trickle) {
    await new Promise((ok) => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
    });
  }
  const offer = trickle ? pc.localDescription.sdp.split("\r\n")
      .filter((l) => !l.startsWith("a=candidate:") && l !== "a=end-of-candidates").join("\r\n")
    : pc.localDescription.sdp;
  const resp = await fetch(url, {method: "POST", body: offer,
    headers: {...auth, "Content-Type": "application/sdp"}});
  if (resp.status !== 201) return {status: resp.status, body: await resp.text()};
  resource = window.whepResource = resp.headers.get("Location");
  etag = resp.headers.get("ETag");
  await pc.setRemoteDescription({type: "answer", sdp: await resp.text()});
  if (pending.length) await patch(pending.splice(0));
  window.whepPc = pc;
  return {status: 201, location: resource, etag, offerHadCandidates: offer.includes("a=candidate")};
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

    api = Client(web_server.base_url, broadcaster_token=web_server.broadcaster_token)

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
        # The screen without trickle (all candidates in the offer), the composite with trickle.
        for target, trickle in (("screen", False), ("composite?corner=top-left&size=30", True)):
            context = await browser.new_context()
            page = await browser.new_page(context)
            await page.goto(f"{web_server.base_url}/")
            url = f"/api/v1/whep/{published.session_id}/{target}"
            result = await page.evaluate(
                WHEP_PLAY
                % {"url": repr(url), "token": repr(token), "trickle": str(trickle).lower()},
                user_gesture=True,
            )
            assert result["status"] == 201, result
            assert result["offerHadCandidates"] is not trickle
            pc_id = result["location"].rsplit("/", 1)[1]
            assert media.peer(pc_id) is not None
            # Frames arrive and keep arriving.
            await page.wait_for("document.querySelector('#whep-video').videoWidth > 0", 20)
            t0 = await page.evaluate("document.querySelector('#whep-video').currentTime")
            await page.wait_for(f"document.querySelector('#whep-video').currentTime > {t0}", 10)
            if trickle:  # candidates went by PATCH, each answered 204
                patches = await page.evaluate("window.whepPatches")
                assert patches and set(patches) == {204}, patches
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
        await log_in(page, web_server.base_url, "/studio")
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
