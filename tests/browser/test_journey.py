"""The broadcaster's journey in Chromium on a fresh, recording server: the first visitor signs up
(zero-setup), goes live from the studio with the fake camera and screen, a viewer pays by PIX
(the signed webhook), the session ends, and the dashboard shows the earnings, plays a recording and
renders the composite replay with its progress, then plays it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.settings import Secret, Settings

from .chromium import Browser
from .conftest import WebServer, serve_in
from .netns import NetnsLoop
from .test_web_client import assert_clean, cdp_run, pay, set_value, wait_quote

USER, PASSWORD = "journey", "a long journey password"
PRICE = {"base": "1,00", "screen": "2,00", "camera": "3,00"}
TOTAL = 100 + 200 + 300  # both streams, no bundle discount


@pytest.fixture(scope="module")
def fresh_server(netns: NetnsLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """`multistream serve` as on its first start (no account, sign-up `first`), recording."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("journey-data"),
        token_secret=Secret("journey-secret-" + "x" * 32),
        ice_hosts=("127.0.0.1",),
        ice_servers=(),
        record=True,
        instance_id="journey-test",
        pix_webhook_secret=Secret("browser-webhook-secret"),
    )
    yield from serve_in(netns, settings, studio_user=False, stop_timeout=60)


PLAYS = """
async (selector) => {
  const v = document.querySelector(selector);
  v.muted = true;
  try { await v.play(); } catch (e) { return 'error: ' + e.message; }
  const t0 = v.currentTime;
  await new Promise((r) => setTimeout(r, 1500));
  return {advanced: v.currentTime - t0, width: v.videoWidth, error: v.error && v.error.code};
}
"""


@pytest.mark.timeout(300)
def test_sign_up_go_live_get_paid_and_watch_the_replay(
    netns: NetnsLoop, browser: Browser, fresh_server: WebServer, output_dir: Path
) -> None:
    base = fresh_server.base_url
    services = fresh_server.services

    async def journey() -> None:
        studio_ctx, viewer_ctx = await browser.new_context(), await browser.new_context()
        studio = await browser.new_page(studio_ctx)
        # 1. The first visitor: the studio sends them to log in, where sign-up is offered.
        await studio.goto(f"{base}/studio")
        await studio.wait_for("document.body.dataset.ready === '1'")
        assert await studio.evaluate("location.pathname") == "/login"
        assert await studio.evaluate("!document.querySelector('#signup-first').hidden")
        await set_value(studio, "#signup-username", USER)
        await set_value(studio, "#signup-display", "Journey Tester")
        await set_value(studio, "#signup-password", PASSWORD)
        await studio.evaluate("document.querySelector('#signup-form').requestSubmit(), true")
        await studio.wait_for(
            "location.pathname === '/studio' && document.readyState === 'complete'", timeout=15
        )
        await studio.wait_for("document.querySelector('#go-live') !== null")
        # 2. Go live, priced, with the fake screen and camera.
        await set_value(studio, "#screen-preset", "720p")
        await studio.click("#screen-capture")
        await studio.wait_for("document.querySelector('#preview-screen').videoWidth > 0")
        await studio.click("#camera-capture")
        await studio.wait_for("document.querySelector('#preview-camera').videoWidth > 0")
        await set_value(studio, "#title", "Journey", "input")
        await set_value(studio, "#price-base", PRICE["base"])
        await set_value(studio, "#price-screen", PRICE["screen"])
        await set_value(studio, "#price-camera", PRICE["camera"])
        await set_value(studio, "#price-bundle", "0")
        await set_value(studio, "#pix-key", "journey@example.com")
        await set_value(studio, "#pix-name", "Journey Tester")
        await set_value(studio, "#pix-city", "BRASILIA")
        await studio.click("#go-live")
        sid = await studio.wait_for("document.body.dataset.sessionId")
        for kind in ("screen", "camera"):
            await studio.wait_for(
                f"document.querySelector('.stream-row[data-kind={kind}]')?.dataset.state === 'live'",
                timeout=20,
            )
        session = await services.sessions.get_session(sid)  # type: ignore[attr-defined]
        user = (await services.store.find("users", {"username": USER}))[0]  # type: ignore[attr-defined]
        assert session["owner_id"] == user["id"] and session["owner_name"] == "Journey Tester"
        # 3. A viewer pays for both streams through the PIX webhook and watches a moment.
        viewer = await browser.new_page(viewer_ctx)
        await viewer.goto(f"{base}/watch/{sid}")
        await viewer.wait_for("document.body.dataset.viewerId")
        await wait_quote(viewer, TOTAL)
        await pay(viewer, base)
        await viewer.wait_for(
            "document.querySelector('#stage').dataset.showing === 'screen camera'", timeout=20
        )
        await viewer.wait_for(
            "(() => { const v = document.querySelector('#stage video[data-kind=screen]');"
            " return v && v.currentTime > 2; })()",
            timeout=20,
        )
        # 4. The session ends (the owner's log-in, from the studio page).
        ended = await studio.evaluate(
            f"fetch('/api/v1/livestream/session/{sid}/end', {{method: 'POST',"
            " headers: {'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)"
        )
        assert ended == 200
        await viewer.wait_for(
            "document.querySelector('#stage').dataset.state === 'ended'", timeout=15
        )
        # 5. The dashboard: the earnings, a recording that plays, the composite rendered.
        dash = await browser.new_page(studio_ctx)
        await dash.goto(f"{base}/dashboard")
        await dash.wait_for("document.body.dataset.ready === '1'")
        row = f"document.querySelector(\"#sessions-body tr[data-session-id='{sid}']\")"
        assert await dash.evaluate(f"{row}.dataset.status") == "ended"
        assert await dash.evaluate(f"{row}.querySelector('.paid-orders').textContent") == "1"
        earned = await dash.evaluate(f"{row}.querySelector('.earnings').textContent")
        assert earned.replace("\xa0", " ") == "R$ 6,00", earned
        # Recordings are finalised just after the end; reopen the replay until both are listed.
        deadline = time.monotonic() + 20
        while True:
            await dash.evaluate(f"{row}.querySelector('.replay-open').click(), true")
            await dash.wait_for("!document.querySelector('#replay').hidden")
            count = await dash.wait_for(
                "document.querySelector('#replay-recordings').children.length || null", timeout=5
            )
            if count >= 2 or time.monotonic() > deadline:
                break
            await dash.evaluate("new Promise((r) => setTimeout(r, 500))")
        assert count >= 2
        played = await dash.evaluate(f"({PLAYS})('#replay-recordings li[data-kind=screen] video')")
        await dash.click("#composite-render")
        # Progress is shown while it renders (the bar and the percentage), then the video plays.
        seen = await dash.wait_for(
            "document.querySelector('#replay').dataset.composite === 'rendering'"
            " ? document.querySelector('#composite-state').textContent : null",
            timeout=10,
        )
        assert "Rendering" in seen
        await dash.wait_for(
            "document.querySelector('#replay').dataset.composite === 'done'", timeout=120
        )
        composite = await dash.evaluate(f"({PLAYS})('#composite-video')")
        await dash.evaluate("document.querySelector('#composite-video').scrollIntoView(), true")
        await dash.screenshot(output_dir / "dashboard-replay.png")
        replay = await services.store.get("replays", sid)  # type: ignore[attr-defined]
        print(
            f"\ncomposite replay: {replay['duration_s']} s rendered in {replay['render_s']} s "
            f"({replay['speed_x_realtime']}x realtime), {replay['width']}x{replay['height']}; "
            f"recording playback in Chromium: {json.dumps(played)}"
        )
        assert composite["advanced"] > 0.5 and composite["width"] > 0, composite
        # The recordings are Matroska: Chromium's verdict is recorded above and asserted here.
        assert isinstance(played, dict) and played["advanced"] > 0.5, played
        for page in (dash, viewer):
            await assert_clean(page)
        await browser.close_context(viewer_ctx)
        await browser.close_context(studio_ctx)

    cdp_run(netns, journey(), timeout=280)
