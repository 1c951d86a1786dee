"""Journeys of issue #14 in real headless Chromium: PIX keys as people type them in the studio,
every payment state in the viewer's panel, the phone layout, a free session, the player's controls,
chat names, and the ended page with its replay.

Sessions here are published by aiortc over WHIP (a pattern screen and camera), so Chromium only
plays the viewer; the studio tests capture Chromium's fake camera. Each test starts its own
session; payments are confirmed through the real signed webhook, as a bank would.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from server import pix
from server.clock import utc_now
from server.settings import Secret, Settings
from tests.conftest import Client
from tests.media_helpers import PatternTrack

from .cdp import Page
from .chromium import Browser
from .conftest import WebServer, log_in, serve_in
from .netns import NetnsLoop
from .test_web_client import advancing, assert_clean, set_value

PREFIX = "/api/v1/livestream"
WEBHOOK_SECRET = "browser-webhook-secret"
RECEIVER = {"key": "+5511912345678", "merchant_name": "Ana Dev", "merchant_city": "Recife"}
# base 5,00 + screen 10,00 + camera 7,00, 15 % off the add-ons together.
PRICING = {"base": 500, "addons": {"screen": 1000, "camera": 700}, "bundle_discount_pct": 15}
BUNDLE = 500 + 1700 - 255


@dataclass
class Broadcast:
    session_id: str
    token: str
    pcs: list[Any]


async def broadcast(server: WebServer, body: dict[str, Any]) -> Broadcast:
    """A session started with the test broadcaster's API token and published by aiortc over
    WHIP: a 320x180 pattern screen and camera (with audio)."""
    from tests.whip_helpers import whip_publish

    api = Client(server.base_url)
    resp = await api.post(f"{PREFIX}/session/start", body, token=server.broadcaster_token)
    assert resp.status == 201, resp.body
    sid, token = resp.json["session"]["id"], resp.json["broadcaster_token"]
    pcs = []
    for kind in ("screen", "camera"):
        track = PatternTrack(kind, 320, 180, 10)
        pub, answer = await whip_publish(api, token, sid, kind, track, audio=kind == "camera")
        assert pub is not None and answer.status == 201, answer.body
        pcs.append(pub.pc)
    return Broadcast(sid, token, pcs)


async def stop(b: Broadcast, server: WebServer) -> None:
    await Client(server.base_url).post(f"{PREFIX}/session/{b.session_id}/end", token=b.token)
    for pc in b.pcs:
        await pc.close()


async def webhook(base_url: str, code: str, valor: str, e2e: str) -> str:
    """What the payer's bank sends when `code` is paid with `valor`; returns the outcome."""
    brcode = pix.parse(code)
    assert brcode.txid
    body = json.dumps({"pix": [{"endToEndId": e2e, "txid": brcode.txid, "valor": valor}]}).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    resp = await Client(base_url).post(
        "/api/v1/payments/pix/webhook",
        raw=body,
        headers={"Content-Type": "application/json", "X-Pix-Signature": signature},
    )
    assert resp.status == 200, resp.body
    return str(resp.json["results"][0]["outcome"])


@asynccontextmanager
async def page_in(browser: Browser, url: str, **viewport: Any) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        page = await browser.new_page(context)
        if viewport:
            await page.set_viewport(**viewport)
        await page.goto(url)
        yield page
    finally:
        await browser.close_context(context)


def field_msg(input_id: str) -> str:
    return (
        f"(m => !m.hidden && ({{kind: m.dataset.kind, text: m.textContent}}))"
        f"(document.querySelector('#{input_id}-msg'))"
    )


async def wait_field(page: Page, input_id: str, kind: str, fragment: str) -> str:
    value = await page.wait_for(
        f"(v => v && v.kind === {json.dumps(kind)} && v.text.includes({json.dumps(fragment)})"
        f" && v.text)({field_msg(input_id)})",
        timeout=10,
    )
    return str(value)


def not_http(errors: list[str], *statuses: int) -> list[str]:
    """Page errors other than the network log lines of the given (expected) statuses."""
    return [e for e in errors if not any(f"status of {s}" in e for s in statuses)]


# ---- PIX keys and pricing in the studio ----------------------------------------------------------


def test_studio_checks_pix_key_city_and_bundle_while_typing_and_goes_live_normalised(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, output_dir: Path
) -> None:
    async def check() -> None:
        async with page_in(browser, "about:blank") as studio:
            await log_in(studio, web_server.base_url, "/studio")
            # A phone typed without +55 is a phone, never a CPF.
            await set_value(studio, "#pix-key", "11912345678", "input")
            await wait_field(studio, "pix-key", "ok", "Phone key, stored as +5511912345678")
            # A CPF with a wrong check digit is refused beside the field, in words.
            await set_value(studio, "#pix-key", "123.456.789-00", "input")
            text = await wait_field(studio, "pix-key", "error", "check digits are wrong")
            assert "pix.key" not in text  # the person's message, not the server's field path
            assert (
                await studio.evaluate(
                    "document.querySelector('#pix-key').getAttribute('aria-invalid')"
                )
                == "true"
            )
            await set_value(studio, "#pix-key", "123.456.789-09", "input")
            await wait_field(studio, "pix-key", "ok", "CPF key, stored as 12345678909")
            # The city: warned, with exactly what payers will see, before anything is cut.
            await set_value(studio, "#pix-city", "São José dos Campos", "input")
            await wait_field(studio, "pix-city", "warn", "“SAO JOSE DOS CA”")
            assert await studio.evaluate("document.querySelector('#pix-city').value") == (
                "São José dos Campos"
            )
            await set_value(studio, "#pix-name", "Ana Dev", "input")
            # A bundle that makes both streams cheaper than the screen alone: warned while typing.
            await set_value(studio, "#price-base", "5,00", "input")
            await set_value(studio, "#price-screen", "10,00", "input")
            await set_value(studio, "#price-camera", "7,00", "input")
            await set_value(studio, "#price-bundle", "50", "input")
            await wait_field(studio, "price-bundle", "error", "less than the screen alone")
            await wait_field(studio, "price-bundle", "error", "at most 41%")
            await set_value(studio, "#price-bundle", "15", "input")
            await studio.wait_for("document.querySelector('#price-bundle-msg').hidden")
            await studio.screenshot(output_dir / "studio-pix-checks.png")

            # Going live with a key the server refuses: the message lands beside the key field.
            await studio.click("#camera-capture")
            await studio.wait_for("document.querySelector('#preview-camera').videoWidth > 0")
            await set_value(studio, "#title", "PIX journey", "input")
            await set_value(studio, "#broadcaster-name", "Ana Dev", "input")
            await set_value(studio, "#pix-key", "123.456.789-00", "input")
            await studio.click("#go-live")
            await wait_field(studio, "pix-key", "error", "check digits are wrong")
            assert await studio.evaluate("document.activeElement.id") == "pix-key"
            assert await studio.evaluate("document.querySelector('#golive-form').hidden") is False

            # As people write it: "+55 11 91234-5678" goes live stored as the DICT writes it.
            await set_value(studio, "#pix-key", "+55 11 91234-5678", "input")
            await studio.click("#go-live")
            sid = await studio.wait_for("document.body.dataset.sessionId", timeout=15)
            # Focus stays where the person works (the live panel), not the top of the page.
            assert await studio.evaluate("document.activeElement.id") == "live-title"
            status = (await Client(web_server.base_url).get(f"{PREFIX}/session/{sid}/status")).json
            assert status["session"]["pix"] == {
                "key": "+5511912345678",
                "merchant_name": "Ana Dev",
                "merchant_city": "SAO JOSE DOS CA",
            }
            assert status["session"]["broadcaster_name"] == "Ana Dev"

            # Mic mute and unmute while live: the camera's audio track goes silent and back.
            await studio.wait_for(
                "document.querySelector('.stream-row[data-kind=camera]').dataset.mic === 'on'"
            )
            await studio.click("#mic-toggle")
            await studio.wait_for(
                "document.querySelector('.stream-row[data-kind=camera]').dataset.mic === 'muted'"
                " && !document.querySelector('#preview-camera').srcObject.getAudioTracks()[0].enabled"
            )
            await studio.click("#mic-toggle")
            await studio.wait_for(
                "document.querySelector('#preview-camera').srcObject.getAudioTracks()[0].enabled"
            )

            # The form remembers its last values in a new tab of the same browser (never the token).
            stored = await studio.evaluate("localStorage.getItem('multistream.studio.form')")
            assert "+55 11 91234-5678" in stored and "São José dos Campos" in stored
            token = await studio.evaluate(
                "JSON.parse(sessionStorage.getItem('multistream.studio')).token"
            )
            assert token not in stored
            info = await studio.cdp.send("Target.getTargetInfo", {"targetId": studio.target_id})
            fresh = await browser.new_page(info["targetInfo"]["browserContextId"])
            await fresh.goto(f"{web_server.base_url}/studio")
            remembered = await fresh.evaluate(
                "['title', 'broadcaster-name', 'price-bundle', 'pix-key', 'pix-name', 'pix-city']"
                ".map(id => document.getElementById(id).value)"
            )
            assert remembered == [
                "PIX journey",
                "Ana Dev",
                "15",
                "+55 11 91234-5678",
                "Ana Dev",
                "São José dos Campos",
            ]
            assert await fresh.evaluate("document.querySelector('#golive-form').hidden") is False
            await assert_clean(fresh)
            await fresh.close()

            await studio.click("#end-session")
            await studio.wait_for("document.querySelector('#end-dialog').open")
            await studio.click("#end-confirm")
            await studio.wait_for("!document.querySelector('#ended-panel').hidden")
            # The refused go-live answered 400 (logged by the browser as a failed load): nothing else.
            assert not_http(studio.errors, 400) == [], studio.errors

    netns.run(check(), 90)


# ---- payment states ----------------------------------------------------------------------------


def test_viewer_panel_follows_every_order_state_without_reload_or_402s(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, output_dir: Path
) -> None:
    base = web_server.base_url

    async def check() -> None:
        b = await broadcast(web_server, {"title": "Priced", "pricing": PRICING, "pix": RECEIVER})
        try:
            async with page_in(browser, f"{base}/watch/{b.session_id}") as page:
                await page.wait_for(
                    "document.querySelector('#payment').dataset.status === 'pending'"
                )
                code = await page.evaluate("document.querySelector('#payment-code').value")
                status = await page.evaluate(
                    "document.querySelector('#payment-status').textContent"
                )
                assert "R$ 19,45" in status.replace("\xa0", " ")
                assert "valid until" in await page.evaluate(
                    "document.querySelector('#payment-next').textContent"
                )
                # Nothing unpaid is asked of the server meanwhile.
                assert await page.evaluate("document.querySelectorAll('#stage video').length") == 0

                # A wrong amount: the panel says what arrived and what to do next.
                assert await webhook(base, code, "19.00", "EWRONG") == "mismatch"
                await page.wait_for(
                    "document.querySelector('#payment').dataset.status === 'mismatch'", timeout=10
                )
                said = (
                    await page.evaluate(
                        "document.querySelector('#payment-status').textContent + ' ' +"
                        " document.querySelector('#payment-next').textContent"
                    )
                ).replace("\xa0", " ")
                assert "R$ 19,00" in said and "R$ 19,45" in said and "refund" in said, said
                # The same code stays payable, copy-paste and QR.
                assert await page.evaluate("document.querySelector('#payment-code').value") == code
                await page.screenshot(output_dir / "viewer-payment-mismatch.png")
                await asyncio.sleep(1.5)
                assert await page.evaluate("document.querySelectorAll('#stage video').length") == 0

                # The right amount: paid, and the video starts without a reload.
                assert await webhook(base, code, "19.45", "ERIGHT") == "paid"
                await page.wait_for(
                    "document.querySelector('#payment').dataset.status === 'paid'", timeout=10
                )
                await page.wait_for(
                    "document.querySelector('#stage').dataset.showing === 'screen camera'",
                    timeout=20,
                )
                await advancing(page, "#stage video[data-kind=screen]")
                assert "Paid" in await page.evaluate(
                    "document.querySelector('#payment-status').textContent"
                )
                assert await page.evaluate("document.querySelector('#payment-code-box').hidden")
                # The price table now says it is paid; nothing is due.
                rows = await page.evaluate(
                    "Object.fromEntries([...document.querySelectorAll('#quote tr')]"
                    ".map(r => [r.dataset.code, r.dataset.amount || null]))"
                )
                assert rows["paid"] == str(BUNDLE) and rows["due"] == "0", rows
                # Once paid, the page stops asking about the order.
                count = "performance.getEntriesByType('resource').filter(e => e.name.includes('/payments/orders/') && !e.name.endsWith('.svg')).length"
                before = await page.evaluate(count)
                await asyncio.sleep(4)
                assert await page.evaluate(count) == before
                # No 402 (or any other error) ever reached the console.
                await assert_clean(page)
        finally:
            await stop(b, web_server)

    netns.run(check(), 120)


def test_an_expired_code_offers_a_new_one(
    netns: NetnsLoop, browser: Browser, web_server: WebServer
) -> None:
    base = web_server.base_url
    payments = web_server.services.payments  # type: ignore[attr-defined]

    async def check() -> None:
        b = await broadcast(web_server, {"title": "Expiring", "pricing": PRICING, "pix": RECEIVER})
        try:
            async with page_in(browser, f"{base}/watch/{b.session_id}") as page:
                await page.wait_for(
                    "document.querySelector('#payment').dataset.status === 'pending'"
                )
                first = await page.evaluate("document.querySelector('#payment-code').value")
                ttl = web_server.services.settings.order_ttl_s  # type: ignore[attr-defined]
                payments.clock = lambda: utc_now() + timedelta(seconds=ttl + 1)
                try:
                    await page.wait_for(
                        "document.querySelector('#payment').dataset.status === 'expired'",
                        timeout=10,
                    )
                    assert "expired" in await page.evaluate(
                        "document.querySelector('#payment-status').textContent"
                    )
                    # An expired code is no longer shown; a button gets a new one.
                    assert await page.evaluate("document.querySelector('#payment-code-box').hidden")
                    assert await page.evaluate("document.querySelector('#payment-qr').hidden")
                    await page.wait_for("!document.querySelector('#payment-renew').hidden")
                finally:
                    payments.clock = utc_now
                await page.click("#payment-renew")
                await page.wait_for(
                    "document.querySelector('#payment').dataset.status === 'pending'", timeout=10
                )
                second = await page.evaluate("document.querySelector('#payment-code').value")
                assert second and second != first
                assert pix.parse(second).txid != pix.parse(first).txid
                await assert_clean(page)
        finally:
            await stop(b, web_server)

    netns.run(check(), 90)


# ---- phone layout, free session, player controls, chat names -------------------------------------


def test_on_a_phone_paying_comes_first_and_the_caption_links_to_it(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, output_dir: Path
) -> None:
    base = web_server.base_url

    async def check() -> None:
        b = await broadcast(web_server, {"title": "Phone", "pricing": PRICING, "pix": RECEIVER})
        try:
            url = f"{base}/watch/{b.session_id}"
            async with page_in(browser, url, width=390, height=844, mobile=True) as page:
                await page.wait_for(
                    "document.querySelector('#payment').dataset.status === 'pending'"
                )
                await page.wait_for("!document.querySelector('#payment-qr').hidden")
                box = "(s => document.querySelector(s).getBoundingClientRect().top + scrollY)"
                tops = await page.evaluate(
                    f"[{box}('#payment'), {box}('#stage'), {box}('#payment-code'), {box}('#payment-qr')]"
                )
                payment, stage, code, qr = tops
                # The payment panel is the first thing under the title, within the first screen.
                assert payment < stage and payment < 400, tops
                # On the paying phone the copy-paste code comes before the QR.
                assert code < qr, tops
                await page.screenshot(output_dir / "viewer-phone-pay.png")
                # The caption's "Pay with PIX" is a link to the panel.
                await page.wait_for("!!document.querySelector('#stage-msg a#pay-link')")
                assert (
                    await page.evaluate("document.querySelector('#pay-link').getAttribute('href')")
                    == "#payment"
                )
                await page.click("#pay-link")
                await page.wait_for("document.activeElement.id === 'payment'")
                overflow = await page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0
                await assert_clean(page)
            # On a laptop the QR (to scan with the phone) comes first.
            async with page_in(browser, url) as page:
                await page.wait_for("!document.querySelector('#payment-qr').hidden")
                assert await page.evaluate(
                    "document.querySelector('#payment-qr').getBoundingClientRect().top"
                    " < document.querySelector('#payment-code').getBoundingClientRect().top"
                )
        finally:
            await stop(b, web_server)

    netns.run(check(), 90)


def test_free_session_player_controls_and_chat_name(
    netns: NetnsLoop, browser: Browser, web_server: WebServer
) -> None:
    base = web_server.base_url

    async def check() -> None:
        b = await broadcast(web_server, {"title": "Free", "broadcaster_name": "Ana Dev"})
        try:
            async with page_in(browser, f"{base}/watch/{b.session_id}") as page:
                await page.wait_for(
                    "document.querySelector('#stage').dataset.showing === 'screen camera'",
                    timeout=20,
                )
                # A free session shows no table of R$ 0,00 lines and no payment.
                assert await page.evaluate("document.querySelector('#price-panel').hidden")
                assert await page.evaluate("document.querySelector('#payment').hidden")
                assert "R$" not in await page.evaluate("document.querySelector('main').innerText")
                assert (
                    await page.evaluate("document.querySelector('#session-byline').textContent")
                    == "by Ana Dev"
                )
                # Volume: the camera's video follows the slider, and turning it up unmutes.
                await set_value(page, "#volume", "30", "input")
                assert await page.evaluate(
                    "(v => [v.volume, v.muted])(document.querySelector('#stage video[data-kind=camera]'))"
                ) == [0.3, False]
                assert (
                    await page.evaluate("document.querySelector('#unmute').textContent") == "Mute"
                )
                # Full screen is the stage (videos and caption together), and back.
                await page.click("#fullscreen")
                await page.wait_for(
                    "document.fullscreenElement?.id === 'stage' && document.querySelector"
                    "('#fullscreen').getAttribute('aria-pressed') === 'true'"
                )
                await page.click("#fullscreen")
                await page.wait_for("!document.fullscreenElement")
                # The quality menu: Auto plus the ladder's rungs, for the connection playing.
                await page.wait_for(
                    "!document.querySelector('#quality').disabled"
                    " && document.querySelector('#quality').options.length > 1",
                    timeout=15,
                )
                assert await page.evaluate("document.querySelector('#quality').value") == "auto"
                # Choosing a rung reaches the server (the connection's choice), and stays chosen.
                rung = await page.evaluate(
                    "[...document.querySelector('#quality').options].at(-1).value"
                )
                await set_value(page, "#quality", rung)
                token = await page.evaluate(
                    f"localStorage.getItem('multistream.viewer.{b.session_id}')"
                )
                choices = (
                    "fetch('/api/v1/livestream/session/"
                    f"{b.session_id}/quality', {{headers: {{Authorization: 'Bearer {token}'}}}})"
                    ".then(r => r.json()).then(j => (j.connections || [j]).map(c => c.choice))"
                )
                await page.wait_for(f"{choices}.then(c => c.includes({json.dumps(rung)}))")
                await asyncio.sleep(3.5)  # a status poll later, the menu still shows the choice
                assert await page.evaluate("document.querySelector('#quality').value") == rung
                # A display name in chat, checked here and by the server.
                await set_value(page, "#chat-name", "x" * 41)
                await page.evaluate(
                    "document.querySelector('#chat-name-form').requestSubmit()", user_gesture=True
                )
                await wait_field(page, "chat-name", "error", "at most 40")
                await set_value(page, "#chat-name", "  Bia   Souza ")
                await page.evaluate(
                    "document.querySelector('#chat-name-form').requestSubmit()", user_gesture=True
                )
                await wait_field(page, "chat-name", "ok", "Bia Souza")
                await page.wait_for(
                    "!!document.querySelector('#chat-input') && !document.querySelector('#chat-input').disabled"
                )
                await asyncio.sleep(0.3)
                await page.evaluate(
                    "(() => { document.querySelector('#chat-input').value = 'oi!';"
                    " document.querySelector('#chat-panel form').requestSubmit(); })()",
                    user_gesture=True,
                )
                await page.wait_for(
                    "[...document.querySelectorAll('#chat-panel .chat-who')]"
                    ".some(n => n.textContent === 'Bia Souza')",
                    timeout=10,
                )
                await assert_clean(page)
        finally:
            await stop(b, web_server)

    netns.run(check(), 90)


# ---- stream list, not-found page ------------------------------------------------------------------


def test_stream_list_cards_have_a_live_thumbnail_duration_and_name(
    netns: NetnsLoop, browser: Browser, web_server: WebServer, output_dir: Path
) -> None:
    base = web_server.base_url

    async def check() -> None:
        b = await broadcast(web_server, {"title": "Listed", "broadcaster_name": "Ana Dev"})
        try:
            async with page_in(browser, f"{base}/") as page:
                card = f".session-card[data-session-id='{b.session_id}']"
                await page.wait_for(
                    f'document.querySelector("{card} img.thumb")?.naturalWidth === 320',
                    timeout=20,
                )
                # The thumbnail is the screen (a light, colourless page), not a placeholder.
                rgb = await page.evaluate(
                    f"""(() => {{ const i = document.querySelector("{card} img.thumb");
                    const c = document.createElement('canvas'); c.width = 32; c.height = 18;
                    const x = c.getContext('2d'); x.drawImage(i, 0, 0, 32, 18);
                    const d = x.getImageData(0, 0, 32, 18).data; let r = 0, g = 0, b = 0;
                    for (let k = 0; k < d.length; k += 4) {{ r += d[k]; g += d[k + 1]; b += d[k + 2]; }}
                    const n = d.length / 4; return [r / n, g / n, b / n]; }})()"""
                )
                assert min(rgb) > 150 and max(rgb) - min(rgb) < 30, rgb
                texts = await page.evaluate(
                    f'["{card} .byline", "{card} .duration"]'
                    ".map(s => document.querySelector(s).textContent)"
                )
                assert texts[0] == "by Ana Dev"
                assert texts[1].startswith("live for"), texts
                await page.screenshot(output_dir / "stream-list-thumbnails.png")
                await assert_clean(page)
        finally:
            await stop(b, web_server)

    netns.run(check(), 60)


def test_unknown_session_is_a_real_not_found_page(
    netns: NetnsLoop, browser: Browser, web_server: WebServer
) -> None:
    async def check() -> None:
        async with page_in(browser, f"{web_server.base_url}/watch/ses_nobodyhere") as page:
            assert await page.evaluate("document.body.dataset.page") == "not-found"
            assert await page.evaluate("document.querySelector('h1').textContent") == (
                "Session not found"
            )
            # No disabled player: the page offers the live list instead.
            assert await page.evaluate("!document.querySelector('#stage')")
            assert await page.evaluate("!!document.querySelector('#sessions')")
            assert not_http(page.errors, 404) == []

    netns.run(check(), 30)


# ---- the ended page with its replay (a server that records) ---------------------------------------


@pytest.fixture(scope="module")
def recording_server(
    netns: NetnsLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("recording-data"),
        token_secret=Secret("browser-test-secret-" + "y" * 32),
        ice_hosts=("127.0.0.1",),
        ice_servers=(),
        record=True,
        instance_id="browser-record",
        pix_webhook_secret=Secret(WEBHOOK_SECRET),
    )
    yield from serve_in(netns, settings)


def test_ended_page_offers_the_replay_and_other_live_sessions(
    netns: NetnsLoop, browser: Browser, recording_server: WebServer
) -> None:
    base = recording_server.base_url

    async def check() -> None:
        other = await broadcast(recording_server, {"title": "Still live"})
        b = await broadcast(
            recording_server, {"title": "Ending", "pricing": PRICING, "pix": RECEIVER}
        )
        try:
            async with page_in(browser, f"{base}/watch/{b.session_id}") as page:
                await page.wait_for(
                    "document.querySelector('#payment').dataset.status === 'pending'"
                )
                code = await page.evaluate("document.querySelector('#payment-code').value")
                assert await webhook(base, code, "19.45", "EPAID") == "paid"
                await page.wait_for(
                    "document.querySelector('#stage').dataset.showing === 'screen camera'",
                    timeout=20,
                )
                await asyncio.sleep(2)  # a little of both streams in the recordings
                await Client(base).post(f"{PREFIX}/session/{b.session_id}/end", token=b.token)
                await page.wait_for("document.body.dataset.endedReady === '1'", timeout=20)
                links = await page.evaluate(
                    "[...document.querySelectorAll('#replay-list a')].map(a => a.href)"
                )
                # A paid viewer gets the recordings of what it paid for, downloadable.
                assert len(links) >= 2 and all("access_token=" in h for h in links), links
                first = await page.evaluate(
                    f"fetch({json.dumps(links[0])}).then(r => [r.status, r.headers.get('content-type')])"
                )
                assert first == [200, "video/x-matroska"]
                live = await page.evaluate(
                    "[...document.querySelectorAll('#more-live-list a')].map(a => a.textContent)"
                )
                assert live == ["Still live"]
                await assert_clean(page)
                # Coming back later (a new tab, the same browser): the replay is still offered.
                info = await page.cdp.send("Target.getTargetInfo", {"targetId": page.target_id})
                back = await browser.new_page(info["targetInfo"]["browserContextId"])
                await back.goto(f"{base}/watch/{b.session_id}")
                await back.wait_for("document.body.dataset.endedReady === '1'", timeout=20)
                again = await back.evaluate(
                    "[...document.querySelectorAll('#replay-list a')].map(a => a.href)"
                )
                assert len(again) == len(links), again
                await assert_clean(back)
                await back.close()
            # Someone who never watched it gets the ended page without a replay (and no errors).
            async with page_in(browser, f"{base}/watch/{b.session_id}") as stranger:
                await stranger.wait_for("document.body.dataset.endedReady === '1'", timeout=20)
                assert await stranger.evaluate("document.querySelector('#replay').hidden")
                assert (
                    await stranger.evaluate("document.querySelectorAll('#more-live-list a').length")
                    == 1
                )
                await assert_clean(stranger)
        finally:
            await stop(other, recording_server)
            for pc in b.pcs:
                await pc.close()

    netns.run(check(), 120)


def test_chat_form_stays_closed_until_the_server_says_hello(
    netns: NetnsLoop, browser: Browser, web_server: WebServer
) -> None:
    """A message typed before the chat socket was open used to be dropped silently (the form was
    open from the start); the form now opens with the server's hello."""
    base = web_server.base_url

    async def check() -> None:
        b = await broadcast(web_server, {"title": "Chat hello"})
        try:
            joined = (await Client(base).post(f"{PREFIX}/session/{b.session_id}/join")).json
            async with page_in(browser, f"{base}/") as page:
                detail = json.dumps(
                    {"sessionId": b.session_id, "token": joined["viewer_token"], "role": "viewer"}
                )
                # Read in the same task as the mount: no socket event can have arrived yet.
                closed_at_mount = await page.evaluate(
                    "(async () => { await import('/static/js/chat.js');"
                    " const panel = document.createElement('section'); panel.id = 'chat-panel';"
                    " document.body.append(panel);"
                    " document.dispatchEvent(new CustomEvent('multistream:chat',"
                    f" {{detail: {detail}}}));"
                    " return document.querySelector('#chat-input').disabled"
                    " && document.querySelector('#chat-panel button[type=submit]').disabled; })()"
                )
                assert closed_at_mount is True
                # The hello opens it.
                await page.wait_for("!document.querySelector('#chat-input').disabled", timeout=10)
        finally:
            await stop(b, web_server)

    netns.run(check(), 30)
