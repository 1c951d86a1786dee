"""The web client in a real headless Chromium: studio goes live, viewers watch, pay, lay out, rejoin.

One server, one Chromium and one live session are shared by the module (see conftest.py for the
network namespace). The broadcaster and each viewer use their own browser context, as two people
would. Tests run in file order and each sets the viewer state it needs; every page must finish
without console errors. Media checks look at what was decoded: video time advances, frames count
up, and the colours prove which source is where (camera = magenta clip, screen = green card).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

from server import pix

from .cdp import Page
from .chromium import Browser
from .conftest import WebServer, log_in
from .netns import NetnsLoop

# (A 50 % bundle would make both streams cheaper than the camera alone: the studio refuses it.)
PRICING = {"base": 200, "screen": 300, "camera": 400, "bundle_pct": 40}
# base + screen + camera - 40 % of the add-ons
BUNDLE_TOTAL = 200 + 300 + 400 - 280
SCREEN_ONLY_TOTAL = 200 + 300
WEBHOOK_SECRET = "browser-webhook-secret"

# Reads one <video> into a small grid: M = magenta (camera clip), G = green (fake screen).
GRAB = """
(selector, w, h) => {
  const v = document.querySelector(selector);
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  const c = document.createElement('canvas'); c.width = w; c.height = h;
  const x = c.getContext('2d', {willReadFrequently: true});
  x.drawImage(v, 0, 0, w, h);
  const d = x.getImageData(0, 0, w, h).data; let grid = '';
  for (let i = 0; i < d.length; i += 4) {
    const r = d[i], g = d[i + 1], b = d[i + 2];
    grid += (r > 120 && b > 120 && g < r - 60 && g < b - 60) ? 'M'
          : (g > 60 && g > r + 40 && g > b + 40) ? 'G' : '.';
  }
  const q = v.getVideoPlaybackQuality();
  return {w: v.videoWidth, h: v.videoHeight, t: v.currentTime, frames: q.totalVideoFrames,
          grid, role: v.dataset.role || null};
}
"""


@dataclass
class Grab:
    w: int
    h: int
    t: float
    frames: int
    grid: str = field(repr=False)
    role: str | None
    cols: int
    rows: int

    def share(self, letter: str) -> float:
        return self.grid.count(letter) / len(self.grid)

    def corner_share(self, corner: str, letter: str, frac: float = 0.3) -> float:
        cw, ch = max(1, int(self.cols * frac)), max(1, int(self.rows * frac))
        xs = range(0, cw) if corner.endswith("left") else range(self.cols - cw, self.cols)
        ys = range(0, ch) if corner.startswith("top") else range(self.rows - ch, self.rows)
        cells = [self.grid[y * self.cols + x] for y in ys for x in xs]
        return cells.count(letter) / len(cells)

    def camera_corner(self) -> str:
        corners = ("top-left", "top-right", "bottom-left", "bottom-right")
        return max(corners, key=lambda c: self.corner_share(c, "M"))


async def grab(page: Page, selector: str, cols: int = 64, rows: int = 36) -> Grab | None:
    value = await page.evaluate(f"({GRAB})({json.dumps(selector)}, {cols}, {rows})")
    return Grab(**value, cols=cols, rows=rows) if value else None


async def advancing(page: Page, selector: str, timeout: float = 20.0) -> tuple[Grab, Grab]:
    """Two grabs of a playing video, the second with more decoded frames and a later time."""
    deadline = asyncio.get_running_loop().time() + timeout
    first = None
    while asyncio.get_running_loop().time() < deadline:
        first = await grab(page, selector)
        if first and first.frames > 0:
            break
        await asyncio.sleep(0.2)
    assert first is not None and first.frames > 0, f"no frames in {selector}: {page.errors}"
    await asyncio.sleep(1.0)
    second = await grab(page, selector)
    assert second is not None
    assert second.frames > first.frames, (first, second)
    assert second.t > first.t, (first, second)
    return first, second


async def composite_showing(page: Page, corner: str, timeout: float = 15.0) -> Grab:
    """Wait for a composite frame: the green screen fills it and the magenta camera sits in `corner`."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: list[str] = []
    while True:
        frame = await grab(page, "#stage video[data-kind=composite]")
        if frame is not None:
            ok = (
                frame.share("G") > 0.4
                and frame.camera_corner() == corner
                and frame.corner_share(corner, "M") > 0.3
            )
            if ok:
                return frame
            seen.append(f"{frame.w}x{frame.h} G={frame.share('G'):.2f} M={frame.share('M'):.2f}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"composite never showed the camera {corner}: {seen[-5:]} {frame}")
        await asyncio.sleep(0.3)


async def pip_box(page: Page, stage: str, video: str) -> dict[str, float]:
    """Where the small video sits in its stage, as fractions of the stage's width and height."""
    return await page.evaluate(
        f"(() => {{ const s = document.querySelector({json.dumps(stage)}).getBoundingClientRect();"
        f" const v = document.querySelector({json.dumps(video)}).getBoundingClientRect();"
        " return {left: (v.left - s.left) / s.width, top: (v.top - s.top) / s.height,"
        " right: (s.right - v.right) / s.width, bottom: (s.bottom - v.bottom) / s.height,"
        " width: v.width / s.width}; })()"
    )


async def set_value(page: Page, selector: str, value: str, event: str = "change") -> None:
    await page.evaluate(
        f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
        f" el.value = {json.dumps(value)};"
        f" el.dispatchEvent(new Event({json.dumps(event)}, {{bubbles: true}})); }})()"
    )


async def set_checked(page: Page, selector: str, checked: bool) -> None:
    await page.evaluate(
        f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
        f" if (el.checked !== {json.dumps(checked)}) el.click(); }})()",
        user_gesture=True,
    )


async def quote_total(page: Page) -> int:
    value = await page.evaluate("document.querySelector('#quote tr.total')?.dataset.amount ?? null")
    return int(value) if value is not None else -1


async def wait_quote(page: Page, amount: int) -> None:
    await page.wait_for(f"document.querySelector('#quote tr.total')?.dataset.amount === '{amount}'")


async def assert_clean(page: Page) -> None:
    assert page.errors == [], (
        f"console errors on {await page.evaluate('location.href')}: {page.errors}"
    )


def cdp_run(netns: NetnsLoop, coro: Any, timeout: float = 60.0) -> Any:
    return netns.run(coro, timeout)


# ---- fixtures ------------------------------------------------------------------------------------


@dataclass
class Live:
    studio: Page
    session_id: str
    context: str


@pytest.fixture(scope="module")
def live(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, output_dir: Path
) -> Iterator[Live]:
    """The broadcaster's studio, live with screen and camera and priced, for the whole module."""

    async def go_live() -> Live:
        context = await browser.new_context()
        studio = await browser.new_page(context)
        await log_in(studio, web_server.base_url, "/studio")
        await studio.wait_for("document.querySelector('#go-live') !== null")
        # 720p keeps the server's decode load small on a shared 2-core CI machine.
        await set_value(studio, "#screen-preset", "720p")
        await studio.click("#screen-capture")
        await studio.wait_for("document.querySelector('#preview-screen').videoWidth > 0")
        await studio.click("#camera-capture")
        await studio.wait_for("document.querySelector('#preview-camera').videoWidth > 0")
        await set_value(studio, "#title", "Browser test: <b>screen</b> & camera", "input")
        await set_value(studio, "#price-base", "2,00")
        await set_value(studio, "#price-screen", "3,00")
        await set_value(studio, "#price-camera", "4,00")
        await set_value(studio, "#price-bundle", str(PRICING["bundle_pct"]))
        await set_value(studio, "#pix-key", "fulano@example.com")
        await set_value(studio, "#pix-name", "Fulano de Tal")
        await set_value(studio, "#pix-city", "BRASILIA")
        await studio.click("#go-live")
        session_id = await studio.wait_for("document.body.dataset.sessionId")
        for kind in ("screen", "camera"):
            await studio.wait_for(
                f"document.querySelector('.stream-row[data-kind={kind}]')?.dataset.state === 'live'",
                timeout=20,
            )
        return Live(studio, session_id, context)

    session = cdp_run(netns, go_live())
    yield session
    cdp_run(netns, browser.close_context(session.context))


@dataclass
class Viewer:
    page: Page
    context: str
    paid: bool = False


@pytest.fixture(scope="module")
def viewer(
    netns: NetnsLoop, browser: Browser, live: Live, web_server: WebServer
) -> Iterator[Viewer]:
    async def open_viewer() -> Viewer:
        context = await browser.new_context()
        page = await browser.new_page(context)
        await page.goto(f"{web_server.base_url}/watch/{live.session_id}")
        await page.wait_for("document.body.dataset.viewerId")
        return Viewer(page, context)

    v = cdp_run(netns, open_viewer())
    yield v
    cdp_run(netns, browser.close_context(v.context))


async def pay(page: Page, base_url: str) -> None:
    """Pay the PIX code shown on the page, as the payer's bank would: read the code, confirm by webhook."""
    await page.wait_for(
        "!document.querySelector('#payment').hidden && document.querySelector('#payment-code').value"
    )
    code = await page.evaluate("document.querySelector('#payment-code').value")
    brcode = pix.parse(code)
    assert brcode.txid and brcode.amount_centavos
    body = json.dumps(
        {
            "pix": [
                {
                    "endToEndId": "E1234567820261124" + brcode.txid[:10],
                    "txid": brcode.txid,
                    "valor": pix.format_amount(brcode.amount_centavos),
                    "horario": "2026-11-24T08:00:00Z",
                }
            ]
        }
    ).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    client = tornado.httpclient.AsyncHTTPClient()
    response = await client.fetch(
        f"{base_url}/api/v1/payments/pix/webhook",
        method="POST",
        body=body,
        headers={"Content-Type": "application/json", "X-Pix-Signature": signature},
    )
    assert json.loads(response.body)["results"][0]["outcome"] == "paid", response.body
    await page.wait_for("document.querySelector('#payment').dataset.status === 'paid'", timeout=10)


async def set_text_quality(studio: Page) -> None:
    """Set the screen's quality live (text hint, 1500 kbps, 10 fps) and wait until its sender
    applies it (the row's data attributes say what the browser accepted)."""
    row = ".stream-row[data-kind=screen]"
    await set_value(studio, "#screen-hint", "text")
    await set_value(studio, "#screen-bitrate", "1500")
    await set_value(studio, "#screen-fps", "10")
    await studio.wait_for(
        f"(r => r.dataset.hint === 'text' && r.dataset.maxBitrate === '1500000'"
        f" && r.dataset.maxFramerate === '10')(document.querySelector('{row}'))"
    )


# ---- tests ---------------------------------------------------------------------------------------


def test_pages_render_accessibly_at_laptop_and_phone_widths(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, output_dir: Path
) -> None:
    async def check() -> None:
        context = await browser.new_context()
        page = await browser.new_page(context)
        try:
            for path in ("/", "/studio", "/watch/ses_doesnotexist"):
                for width, height, mobile in ((1280, 800, False), (390, 844, True)):
                    await page.set_viewport(width, height, mobile=mobile)
                    await page.goto(f"{web_server.base_url}{path}")
                    # Every form control has an accessible name; nothing overflows sideways.
                    unlabelled = await page.evaluate(
                        "[...document.querySelectorAll('input, select, textarea, button')]"
                        ".filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')"
                        " && !el.textContent.trim()).map(el => el.id || el.outerHTML.slice(0, 60))"
                    )
                    assert unlabelled == [], (path, unlabelled)
                    overflow = await page.evaluate(
                        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                    )
                    assert overflow <= 0, (path, width, overflow)
            # The unknown session says so in words, not with a console error.
            await page.wait_for(
                "document.querySelector('#watch-msg').textContent.includes('does not exist')"
            )
        finally:
            await browser.close_context(context)
        assert [e for e in page.errors if "404" not in e] == []

    cdp_run(netns, check())


def test_denied_capture_shows_a_clear_message(
    netns: NetnsLoop, chromium_path: str, web_server: WebServer, tmp_path: Path
) -> None:
    """A browser whose user blocks camera and screen: the studio explains, nothing breaks."""

    async def check() -> None:
        denying = await Browser.launch(chromium_path, tmp_path / "deny", deny_media=True)
        try:
            page = await denying.new_page(await denying.new_context())
            await log_in(page, web_server.base_url, "/studio")
            await page.wait_for("document.querySelector('#camera-capture') !== null")
            message = (
                "(() => { const m = document.querySelector('#studio-msg');"
                " return !m.hidden && m.dataset.kind === 'error' && m.textContent; })()"
            )
            await page.click("#camera-capture")
            assert "denied" in (await page.wait_for(message)).lower()
            await page.click("#screen-capture")
            await page.wait_for(
                f"({message[:-2]})() && document.querySelector('#studio-msg').textContent.includes('Screen')"
            )
            for video in ("#preview-camera", "#preview-screen"):
                assert await page.evaluate(f"document.querySelector('{video}').srcObject") is None
            # Going live without any source is refused with a message, not a request.
            await page.click("#go-live")
            text = await page.wait_for(message)
            assert "before going live" in text
            await assert_clean(page)
        finally:
            await denying.close()

    cdp_run(netns, check())


def test_studio_goes_live_and_the_stream_list_shows_it(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, live: Live, output_dir: Path
) -> None:
    async def check() -> None:
        await live.studio.wait_for("document.querySelector('#viewer-count').textContent.length > 0")
        # Each sender carries its stream's encoder settings, as read back from the browser.
        applied = await live.studio.evaluate(
            "Object.fromEntries([...document.querySelectorAll('.stream-row')].map(r => [r.dataset.kind,"
            " {bitrate: r.dataset.maxBitrate, fps: r.dataset.maxFramerate,"
            " degradation: r.dataset.degradation, hint: r.dataset.hint}]))"
        )
        assert applied == {
            "screen": {
                "bitrate": "2500000",
                "fps": "15",
                "degradation": "maintain-resolution",
                "hint": "detail",
            },
            "camera": {
                "bitrate": "1200000",
                "fps": "30",
                "degradation": "maintain-framerate",
                "hint": "motion",
            },
        }
        # The preview's PiP follows the corner and size controls.
        await set_value(live.studio, "#preview-corner", "top-left")
        await set_value(live.studio, "#preview-size", "40", "input")
        await asyncio.sleep(0.4)  # the size eases in with a short CSS transition
        box = await pip_box(live.studio, "#preview", "#preview-camera")
        assert box["left"] < 0.05 and box["top"] < 0.06 and abs(box["width"] - 0.40) < 0.02, box
        await set_value(live.studio, "#preview-corner", "bottom-right")
        await set_value(live.studio, "#preview-size", "25", "input")
        await live.studio.screenshot(output_dir / "studio-live.png")
        # The user-provided title is rendered as text, never as markup.
        message = await live.studio.evaluate("document.querySelector('#studio-msg').innerHTML")
        assert "&lt;b&gt;" in message
        context = await browser.new_context()
        page = await browser.new_page(context)
        try:
            await page.goto(f"{web_server.base_url}/")
            card = f".session-card[data-session-id='{live.session_id}']"
            await page.wait_for(f'!!document.querySelector("{card}")', timeout=10)
            kinds = await page.evaluate(
                f'[...document.querySelectorAll("{card} .badge[data-kind]")].map(b => b.dataset.kind)'
            )
            assert kinds == ["screen", "camera"]
            title = await page.evaluate(f'document.querySelector("{card} h2").textContent')
            assert title == "Browser test: <b>screen</b> & camera"
            price = await page.evaluate(f'document.querySelector("{card} .price").textContent')
            assert "5,00" in price  # cheapest single stream: base 2,00 + screen 3,00
            await page.screenshot(output_dir / "stream-list.png")
            await assert_clean(page)
        finally:
            await browser.close_context(context)
        await assert_clean(live.studio)

    cdp_run(netns, check())


def test_viewer_pays_and_receives_screen_and_camera_separately(
    netns: NetnsLoop, viewer: Viewer, web_server: WebServer, output_dir: Path
) -> None:
    async def check() -> None:
        page = viewer.page
        # Default preferences enable every live stream: the bundle, itemised.
        await wait_quote(page, BUNDLE_TOTAL)
        codes = await page.evaluate(
            "[...document.querySelectorAll('#quote tr')].map(r => r.dataset.code)"
        )
        assert codes == ["base", "addon:screen", "addon:camera", "bundle_discount", "total", "due"]
        assert await page.evaluate("document.querySelector('#stage').dataset.showing") == ""
        await pay(page, web_server.base_url)
        viewer.paid = True
        await page.wait_for(
            "document.querySelector('#stage').dataset.showing === 'screen camera'", timeout=20
        )
        _, screen = await advancing(page, "#stage video[data-kind=screen]")
        _, camera = await advancing(page, "#stage video[data-kind=camera]")
        # The chat client mounts itself into the page's chat container.
        await page.wait_for("!!document.querySelector('#chat-panel #chat-input')")
        await page.screenshot(output_dir / "viewer-separate.png")
        assert screen.share("G") > 0.5 and screen.share("M") < 0.05, screen
        assert camera.share("M") > 0.5 and camera.share("G") < 0.05, camera
        assert (screen.role, camera.role) == ("main", "pip")
        await page.screenshot(output_dir / "viewer-separate.png")
        await assert_clean(page)

    cdp_run(netns, check(), timeout=90)


def test_price_follows_the_enabled_streams(netns: NetnsLoop, viewer: Viewer) -> None:
    async def check() -> None:
        page = viewer.page
        # With the keyboard: focus the camera toggle, press Space.
        await page.evaluate("document.querySelector('#enable-camera').focus()")
        await page.press(" ", "Space", 32)
        assert await page.evaluate("document.querySelector('#enable-camera').checked") is False
        await wait_quote(page, SCREEN_ONLY_TOTAL)
        codes = await page.evaluate(
            "[...document.querySelectorAll('#quote tr')].map(r => r.dataset.code)"
        )
        # Already paid for both: the smaller set is covered, nothing is due.
        assert codes == ["base", "addon:screen", "total", "paid", "due"]
        assert await page.evaluate(
            "[...document.querySelectorAll('#quote tr[data-code=paid], #quote tr[data-code=due]')]"
            ".map(r => r.dataset.amount)"
        ) == [str(BUNDLE_TOTAL), "0"]
        await page.wait_for("document.querySelector('#stage').dataset.showing === 'screen'")
        await page.wait_for("!document.querySelector('#stage video[data-kind=camera]')")
        await page.press(" ", "Space", 32)
        assert await page.evaluate("document.querySelector('#enable-camera').checked") is True
        await wait_quote(page, BUNDLE_TOTAL)
        await page.wait_for(
            "document.querySelector('#stage').dataset.showing === 'screen camera'", timeout=20
        )
        await assert_clean(page)

    cdp_run(netns, check())


def test_composite_mode_and_corner_moves_the_camera(
    netns: NetnsLoop, viewer: Viewer, output_dir: Path
) -> None:
    async def check() -> None:
        page = viewer.page
        await set_value(page, "#pip-corner", "bottom-right")
        await set_checked(page, "#mode-composite", True)
        await page.wait_for(
            "document.querySelector('#stage').dataset.showing === 'composite'", timeout=20
        )
        # Separate videos are closed once the composite plays.
        await page.wait_for("document.querySelectorAll('#stage video').length === 1")
        await advancing(page, "#stage video[data-kind=composite]")
        # The server may start a composite camera-only until the screen's first fresh frame.
        frame = await composite_showing(page, "bottom-right")
        await page.screenshot(output_dir / "viewer-composite.png")
        await page.set_viewport(390, 844, mobile=True)
        await page.screenshot(output_dir / "viewer-phone.png")
        await page.set_viewport(1280, 800)

        await set_value(page, "#pip-corner", "top-left")
        frame = await composite_showing(page, "top-left")
        assert frame.corner_share("bottom-right", "M") < 0.05, frame
        await assert_clean(page)

    cdp_run(netns, check(), timeout=90)


def test_the_studios_pip_is_the_default_layout_and_moves_it_live(
    netns: NetnsLoop, browser: Browser, live: Live, web_server: WebServer
) -> None:
    """Issue 14: corner and size chosen in the studio are what a viewer without a layout of its
    own gets, and moving them live moves that viewer's composite (same connection)."""

    async def check() -> None:
        studio = live.studio
        await set_value(studio, "#preview-corner", "top-left")
        await set_value(studio, "#preview-size", "35", "input")
        await studio.wait_for("document.body.dataset.defaultPip === 'top-left 35'")
        context = await browser.new_context()
        try:
            page = await browser.new_page(context)
            await page.goto(f"{web_server.base_url}/watch/{live.session_id}")
            await page.wait_for("document.body.dataset.viewerId")
            controls = await page.evaluate(
                "[document.querySelector('#pip-corner').value, document.querySelector('#pip-size').value]"
            )
            assert controls == ["top-left", "35"]
            assert "broadcaster" in await page.evaluate(
                "document.querySelector('#pip-source').textContent"
            )
            await pay(page, web_server.base_url)
            # Composite mode is not a layout choice: the broadcaster's layout still applies.
            await set_checked(page, "#mode-composite", True)
            await page.wait_for(
                "document.querySelector('#stage').dataset.showing === 'composite'", timeout=20
            )
            await composite_showing(page, "top-left")
            pc_id = await page.evaluate(
                "document.querySelector('#stage video[data-kind=composite]').dataset.pcId"
            )
            # The broadcaster moves it while live: the viewer's composite follows.
            await set_value(studio, "#preview-corner", "bottom-left")
            await studio.wait_for("document.body.dataset.defaultPip === 'bottom-left 35'")
            frame = await composite_showing(page, "bottom-left")
            assert frame.corner_share("top-left", "M") < 0.05, frame
            assert (
                await page.evaluate(
                    "document.querySelector('#stage video[data-kind=composite]').dataset.pcId"
                )
                == pc_id
            )
            await page.wait_for("document.querySelector('#pip-corner').value === 'bottom-left'")
            await assert_clean(page)
        finally:
            await browser.close_context(context)
            await set_value(studio, "#preview-corner", "bottom-right")
            await set_value(studio, "#preview-size", "25", "input")
        await assert_clean(studio)

    cdp_run(netns, check(), timeout=120)


def test_reload_restores_preferences_and_viewer(netns: NetnsLoop, viewer: Viewer) -> None:
    async def check() -> None:
        page = viewer.page
        await set_checked(page, "#mode-composite", True)
        await set_value(page, "#pip-corner", "top-left")
        await set_value(page, "#pip-size", "32", "input")
        viewer_id = await page.evaluate("document.body.dataset.viewerId")
        # The size is saved after a short pause; wait until the server holds all three.
        await page.wait_for(
            "(d => d.savedMode === 'composite' && d.savedCorner === 'top-left'"
            " && d.savedSize === '32')(document.querySelector('#controls').dataset)"
        )
        await page.reload()
        await page.wait_for("document.body.dataset.viewerId")
        assert await page.evaluate("document.body.dataset.viewerId") == viewer_id
        restored = await page.evaluate(
            "({mode: document.querySelector('#mode-composite').checked ? 'composite' : 'separate',"
            " corner: document.querySelector('#pip-corner').value,"
            " size: document.querySelector('#pip-size').value,"
            " screen: document.querySelector('#enable-screen').checked,"
            " camera: document.querySelector('#enable-camera').checked})"
        )
        assert restored == {
            "mode": "composite",
            "corner": "top-left",
            "size": "32",
            "screen": True,
            "camera": True,
        }
        # Already paid: the rejoined viewer plays at once, no payment asked again.
        await page.wait_for(
            "document.querySelector('#stage').dataset.showing === 'composite'", timeout=20
        )
        assert await page.evaluate("document.querySelector('#payment').hidden") is True
        await assert_clean(page)

    cdp_run(netns, check(), timeout=60)


def test_camera_off_in_studio_removes_it_for_the_viewer(
    netns: NetnsLoop, live: Live, viewer: Viewer
) -> None:
    async def check() -> None:
        page = viewer.page
        await set_checked(page, "#mode-separate", True)
        await page.wait_for(
            "document.querySelector('#stage').dataset.showing === 'screen camera'", timeout=20
        )
        # Separate mode lays the camera out locally with the chosen corner and size.
        await set_value(page, "#pip-corner", "top-left")
        await set_value(page, "#pip-size", "32", "input")
        await asyncio.sleep(0.4)  # the size eases in with a short CSS transition
        box = await pip_box(page, "#stage", "#stage video[data-kind=camera]")
        assert box["left"] < 0.05 and box["top"] < 0.06 and abs(box["width"] - 0.32) < 0.02, box
        await live.studio.click(".stream-row[data-kind=camera] button.toggle")
        await live.studio.wait_for(
            "document.querySelector('.stream-row[data-kind=camera]').dataset.state === 'off'"
        )
        await page.wait_for("!document.querySelector('#stage video[data-kind=camera]')", timeout=15)
        assert await page.evaluate("document.querySelector('#stage').dataset.showing") == "screen"
        assert "off air" in await page.evaluate(
            "document.querySelector('#state-camera').textContent"
        )
        await advancing(page, "#stage video[data-kind=screen]")
        # Back on air: the viewer picks it up again without a reload.
        await live.studio.click(".stream-row[data-kind=camera] button.toggle")
        await live.studio.wait_for(
            "document.querySelector('.stream-row[data-kind=camera]').dataset.state === 'live'",
            timeout=20,
        )
        await page.wait_for(
            "document.querySelector('#stage').dataset.showing === 'screen camera'", timeout=20
        )
        await assert_clean(page)
        await assert_clean(live.studio)

    cdp_run(netns, check(), timeout=90)


def test_viewer_reconnects_after_losing_a_stream(
    netns: NetnsLoop, viewer: Viewer, web_server: WebServer
) -> None:
    async def check() -> None:
        page = viewer.page
        await page.wait_for("document.querySelector('#stage').dataset.showing === 'screen camera'")
        selector = "#stage video[data-kind=screen]"
        pc_id = await page.evaluate(f"document.querySelector('{selector}').dataset.pcId")
        assert pc_id
        # The server drops this viewer's screen connection (as a dying network path would).
        web_server.services.media.disconnect(pc_id)
        await page.wait_for(
            f"document.querySelector('{selector}')?.dataset.pcId !== '{pc_id}'"
            " && document.querySelector('#stage').dataset.state === 'playing'",
            timeout=30,
        )
        await advancing(page, selector)
        await assert_clean(page)

    cdp_run(netns, check(), timeout=60)


def test_studio_shows_a_lost_stream_and_reconnects_it(
    netns: NetnsLoop, live: Live, web_server: WebServer
) -> None:
    async def check() -> None:
        studio = live.studio
        row = ".stream-row[data-kind=screen]"
        pc_id = await studio.evaluate(f"document.querySelector('{row}').dataset.pcId")
        media = web_server.services.media
        # No HTTP API drops a publisher: close its server-side connection directly.
        await media.close_peer(pc_id)
        await studio.wait_for(
            f"['lost', 'failed'].includes(document.querySelector('{row}').dataset.state)",
            timeout=30,
        )
        assert await studio.evaluate(f"!!document.querySelector('{row} [role=alert]')")
        # It comes back by itself (a new connection and offer after a short back-off), as it
        # must when the serving instance fails over; no click needed.
        await studio.wait_for(
            f"(r => r.dataset.state === 'live' && r.dataset.pcId && r.dataset.pcId !== '{pc_id}')"
            f"(document.querySelector('{row}'))",
            timeout=30,
        )
        await assert_clean(studio)

    cdp_run(netns, check(), timeout=60)


def test_studio_quality_changes_apply_while_live(
    netns: NetnsLoop, live: Live, viewer: Viewer, output_dir: Path
) -> None:
    async def check() -> None:
        studio = live.studio
        row = ".stream-row[data-kind=screen]"
        await set_text_quality(studio)
        settings = await studio.evaluate(
            "document.querySelector('#preview-screen').srcObject.getVideoTracks()[0].getSettings()"
        )
        assert settings["frameRate"] <= 10
        assert await studio.evaluate(f"document.querySelector('{row}').dataset.state") == "live"
        # The viewer of the earlier tests shows up in the studio's live count.
        await studio.wait_for(
            "document.querySelector('#viewer-count').textContent === '1 watching'"
        )
        await studio.screenshot(output_dir / "studio-on-air.png")
        await assert_clean(studio)

    cdp_run(netns, check())


# Failed 1 in ~10 module runs (the viewer not showing the republished screen within 30 s; the
# failure says what each side showed). Measured once more; a second miss fails the run.
@pytest.mark.flaky(reruns=1)
def test_studio_reload_resumes_the_live_session(
    netns: NetnsLoop, live: Live, viewer: Viewer
) -> None:
    async def check() -> None:
        studio = live.studio
        # The quality set live (text hint, 1500 kbps, 10 fps) survives the reload.
        await set_text_quality(studio)
        await studio.reload()
        await studio.wait_for(f"document.body.dataset.sessionId === '{live.session_id}'")
        assert await studio.evaluate("document.querySelector('#golive-form').hidden") is True
        # The camera goes back on air by itself; the screen needs one click (browsers allow
        # capturing a screen only in answer to one).
        await studio.wait_for(
            "document.querySelector('.stream-row[data-kind=camera]')?.dataset.state === 'live'",
            timeout=20,
        )
        await studio.wait_for("!document.querySelector('#resume').hidden")
        assert await studio.evaluate(
            "document.querySelector('.stream-row[data-kind=screen]').dataset.state"
        ) in ("off", "pending")
        await studio.click("#resume")
        for kind in ("screen", "camera"):
            row = f".stream-row[data-kind={kind}]"
            await studio.wait_for(
                f"document.querySelector('{row}').dataset.state === 'live'", timeout=20
            )
        row = ".stream-row[data-kind=screen]"
        await studio.wait_for(
            f"(r => r.dataset.hint === 'text' && r.dataset.maxBitrate === '1500000'"
            f" && r.dataset.maxFramerate === '10')(document.querySelector('{row}'))"
        )
        assert await studio.evaluate(
            "[document.querySelector('#screen-fps').value, document.querySelector('#screen-hint').value]"
        ) == ["10", "text"]
        # The viewer's retry of the screen backs off while the screen waits for its click, and
        # reconnects as soon as its status poll (3 s) sees the screen back on air.
        try:
            await viewer.page.wait_for(
                "document.querySelector('#stage').dataset.showing === 'screen camera'", timeout=30
            )
        except TimeoutError as exc:
            # What each side showed (it failed 1 in ~10 module runs on the loaded 2-core machine).
            videos = await viewer.page.evaluate(
                "JSON.stringify([...document.querySelectorAll('#stage video')]"
                ".map(v => ({...v.dataset, width: v.videoWidth})))"
            )
            rows = await studio.evaluate(
                "JSON.stringify([...document.querySelectorAll('.stream-row')]"
                ".map(r => ({...r.dataset})))"
            )
            raise AssertionError(f"viewer videos {videos}; studio rows {rows}") from exc
        await advancing(viewer.page, "#stage video[data-kind=camera]")
        await assert_clean(studio)
        await assert_clean(viewer.page)

    cdp_run(netns, check(), timeout=90)


def test_ending_the_session_tells_the_viewer_and_leaves_the_list(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, live: Live, viewer: Viewer
) -> None:
    async def check() -> None:
        # A stream list opened before the end drops the session by itself (no reload).
        list_context = await browser.new_context()
        listing = await browser.new_page(list_context)
        await listing.goto(f"{web_server.base_url}/")
        card = f"document.querySelector(\".session-card[data-session-id='{live.session_id}']\")"
        await listing.wait_for(f"!!{card}")
        # Ending asks first; keeping on streaming changes nothing.
        await live.studio.click("#end-session")
        await live.studio.wait_for("document.querySelector('#end-dialog').open")
        await live.studio.click("#end-cancel")
        await live.studio.wait_for("!document.querySelector('#end-dialog').open")
        assert await live.studio.evaluate("document.querySelector('#live-panel').hidden") is False
        await live.studio.click("#end-session")
        await live.studio.wait_for("document.querySelector('#end-dialog').open")
        await live.studio.click("#end-confirm")
        await live.studio.wait_for("!document.querySelector('#ended-panel').hidden")
        await viewer.page.wait_for(
            "document.querySelector('#stage').dataset.state === 'ended'", timeout=15
        )
        assert "ended" in await viewer.page.evaluate(
            "document.querySelector('#stage-msg').textContent"
        )
        assert await viewer.page.evaluate("document.querySelectorAll('#stage video').length") == 0
        # The ended page: focus on its heading, and the replay offer (recording is off in this
        # suite, so the list is empty and hidden) and other live sessions once they are known.
        await viewer.page.wait_for("document.body.dataset.endedReady === '1'")
        assert await viewer.page.evaluate(
            "!document.querySelector('#ended-panel').hidden"
            " && document.activeElement.id === 'ended-title'"
        )
        await listing.wait_for(f"!{card}", timeout=10)
        await assert_clean(listing)
        await browser.close_context(list_context)
        await assert_clean(viewer.page)
        await assert_clean(live.studio)

    cdp_run(netns, check())
