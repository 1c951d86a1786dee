"""The chat panel (handlers/static/js/chat.js) in real headless Chromium: two people chat, the
broadcaster deletes and mutes, and message text is shown as text (never run as HTML)."""

from __future__ import annotations

import json
from typing import Any

import tornado.httpclient

from .chromium import Browser
from .conftest import WebServer
from .netns import NetnsLoop

PREFIX = "/api/v1/livestream"
HOSTILE = '<img src=x onerror="window.__pwned=1"> & <b>bold</b>'


async def _post(base: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = await tornado.httpclient.AsyncHTTPClient().fetch(
        base + path, method="POST", body=json.dumps(body or {}), headers=headers
    )
    return json.loads(resp.body)


def _mount(session_id: str, token: str, role: str, name: str = "") -> str:
    detail = json.dumps({"sessionId": session_id, "token": token, "role": role, "name": name})
    return (
        "(async () => { await import('/static/js/chat.js');"
        f" document.dispatchEvent(new CustomEvent('multistream:chat', {{detail: {detail}}}));"
        " return true; })()"
    )


def _texts() -> str:
    return "[...document.querySelectorAll('#chat-panel .chat-text')].map(n => n.textContent)"


async def _send(page: Any, text: str) -> None:
    await page.evaluate(
        "(() => { const i = document.querySelector('#chat-input');"
        f" i.value = {json.dumps(text)};"
        " document.querySelector('#chat-panel form').requestSubmit(); return true; })()",
        user_gesture=True,
    )


def test_chat_between_viewer_and_studio(
    netns: NetnsLoop, web_server: WebServer, browser: Browser
) -> None:
    base = web_server.base_url

    async def scenario() -> None:
        started = await _post(
            base,
            f"{PREFIX}/session/start",
            {"title": "chat ui"},
            token=web_server.broadcaster_token,
        )
        sid, btoken = started["session"]["id"], started["broadcaster_token"]
        joined = await _post(base, f"{PREFIX}/session/{sid}/join")
        vtoken, vid = joined["viewer_token"], joined["viewer_id"]

        viewer_ctx, studio_ctx = await browser.new_context(), await browser.new_context()
        viewer, studio = await browser.new_page(viewer_ctx), await browser.new_page(studio_ctx)
        try:
            # Both pages carry the app's strict CSP, so the module must work under it.
            for page in (viewer, studio):
                await page.goto(f"{base}/watch/{sid}")
                await page.wait_for("document.querySelector('#chat-panel') !== null")
            await viewer.evaluate(_mount(sid, vtoken, "viewer", "Ana"))
            await studio.evaluate(_mount(sid, btoken, "broadcaster"))
            # The form opens once the server has said hello: nothing typed before is lost.
            for page in (viewer, studio):
                await page.wait_for(
                    "document.querySelector('#chat-input') !== null"
                    " && !document.querySelector('#chat-input').disabled"
                )

            await _send(viewer, HOSTILE)
            await studio.wait_for(f"{_texts()}.includes({json.dumps(HOSTILE)})")
            who = await studio.evaluate(
                "document.querySelector('#chat-panel li .chat-who').textContent"
            )
            assert who == "Ana"
            assert await studio.evaluate("document.querySelectorAll('#chat-panel img').length") == 0
            assert await studio.evaluate("window.__pwned === undefined")
            assert await viewer.evaluate("window.__pwned === undefined")

            await _send(studio, "thanks")
            await viewer.wait_for(f"{_texts()}.includes('thanks')")
            # Viewers get no moderation buttons; the studio does.
            assert await viewer.evaluate("document.querySelectorAll('.chat-action').length") == 0

            # Delete: gone on both pages.
            await studio.click("#chat-panel li .chat-action")  # the first message's Delete
            await viewer.wait_for(f"!{_texts()}.includes({json.dumps(HOSTILE)})")
            await studio.wait_for(f"!{_texts()}.includes({json.dumps(HOSTILE)})")

            # Mute: the viewer's input is disabled with a message; the server refuses anyway.
            await _send(viewer, "before mute")
            await studio.wait_for(f"{_texts()}.includes('before mute')")
            await studio.click(f"#chat-panel button[data-mute='{vid}']")
            await viewer.wait_for("document.querySelector('#chat-input').disabled")
            status = await viewer.evaluate(
                "document.querySelector('#chat-panel .chat-status').textContent"
            )
            assert "muted" in status

            # A late joiner's page shows the history (without the deleted message).
            late = await browser.new_page(viewer_ctx)
            try:
                await late.goto(f"{base}/watch/{sid}")
                await late.evaluate(_mount(sid, vtoken, "viewer"))
                await late.wait_for(f"{_texts()}.includes('before mute')")
                history = await late.evaluate(_texts())
                assert history == ["thanks", "before mute"]
            finally:
                await late.close()
            for page in (viewer, studio):
                chat_errors = [e for e in page.errors if "chat" in e.lower()]
                assert chat_errors == [], chat_errors
        finally:
            await viewer.close()
            await studio.close()
            await browser.close_context(viewer_ctx)
            await browser.close_context(studio_ctx)

    netns.run(scenario())
