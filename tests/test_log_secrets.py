"""A real server run with tokens in headers, query strings and WebSocket URLs: its whole log, JSON
or plain, is searched for every token and secret involved, and none is there."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import jwt
import pytest
import tornado.httpclient
import tornado.websocket

from server.payments.webhook import sign
from tests.api_helpers import web_broadcaster
from tests.conftest import Client
from tests.media_helpers import PREFIX, join, start_session
from tests.ops_helpers import start_server

TOKEN_SECRET = "log-test-token-secret-" + "t" * 30
WEBHOOK_SECRET = "log-test-webhook-secret-" + "w" * 30


async def _ws(url: str, headers: dict[str, str] | None = None) -> list[dict]:
    """Open a WebSocket, send one message, read what comes back, close."""
    request = tornado.httpclient.HTTPRequest(url, headers=headers or {})
    conn = await tornado.websocket.websocket_connect(request)
    try:
        received = []
        await conn.write_message(json.dumps({"type": "nope"}))
        for _ in range(3):
            message = await conn.read_message()
            if message is None:
                break
            received.append(json.loads(message))
            if received[-1].get("type") == "error":
                break
        return received
    finally:
        conn.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("log_json", ["1", "0"])
async def test_logs_of_a_real_run_hold_no_token_or_secret(tmp_path: Path, log_json: str) -> None:
    server = start_server(
        tmp_path / "data",
        tmp_path / "server.log",
        {
            "MULTISTREAM_LOG_JSON": log_json,
            "MULTISTREAM_TOKEN_SECRET": TOKEN_SECRET,
            "MULTISTREAM_PIX_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "MULTISTREAM_DRAIN_DEADLINE": "0",
        },
    )
    api = Client(server.base_url)
    await web_broadcaster(api)
    ws_base = server.base_url.replace("http://", "ws://")
    try:
        started = await start_session(api)
        sid = started["session"]["id"]
        broadcaster = started["broadcaster_token"]
        streams = {s["kind"]: s for s in started["session"]["streams"]}
        viewer = (await join(api, sid))["viewer_token"]
        forged = jwt.encode({"sid": sid, "role": "broadcaster"}, "not-the-secret" * 3, "HS256")

        # Bearer headers, good and bad.
        assert (await api.get(f"{PREFIX}/session/{sid}/status", token=broadcaster)).status == 200
        assert (await api.get(f"{PREFIX}/session/{sid}/preferences", token=viewer)).status == 200
        assert (await api.post(f"{PREFIX}/session/{sid}/end", token=forged)).status == 401
        # Tokens in query strings, where a browser's WebSocket puts them.
        r = await api.get(f"{PREFIX}/session/{sid}/preferences?access_token={viewer}")
        assert r.status in (200, 401)
        signal_ws = f"{ws_base}{PREFIX}/stream/{streams['screen']['id']}/signal/ws"
        replies = await _ws(f"{signal_ws}?access_token={broadcaster}")
        assert replies and replies[-1]["type"] == "error"
        replies = await _ws(signal_ws, {"Authorization": f"Bearer {broadcaster}"})
        assert replies and replies[-1]["type"] == "error"
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await _ws(f"{signal_ws}?access_token={forged}")
        assert refused.value.code == 401
        chat_ws = f"{ws_base}{PREFIX}/session/{sid}/chat?access_token={viewer}"
        hello = await _ws(chat_ws)
        assert hello and hello[0]["type"] == "hello"
        # A webhook with a valid and a wrong signature.
        body = json.dumps({"pix": []}).encode()
        for signature in (sign(WEBHOOK_SECRET, body), "sha256=" + "0" * 64):
            await api.request(
                "POST", f"{PREFIX}/pix/webhook", raw=body, headers={"X-Pix-Signature": signature}
            )
    finally:
        server.signal(signal.SIGTERM)
        assert server.stop() == 0

    log = server.log_text()
    # The run is really in the log: access lines with paths, WebSocket upgrades, refusals.
    assert f"GET {PREFIX}/stream/{streams['screen']['id']}/signal/ws" in log
    assert " 101 " in log or "101 GET" in log
    assert "401 POST" in log and "401 GET" in log
    if log_json == "1":
        lines = server.json_lines()
        assert len(lines) >= 10 and all({"ts", "level", "logger", "msg"} <= set(x) for x in lines)
        access = [x for x in lines if x["logger"] == "tornado.access"]
        assert any(x.get("session") == sid for x in access)
        assert all("?" not in x["path"] for x in access)
    leaks = {
        "broadcaster token": broadcaster,
        "viewer token": viewer,
        "forged token": forged,
        "broadcaster token signature": broadcaster.rsplit(".", 1)[1],
        "viewer token signature": viewer.rsplit(".", 1)[1],
        "token secret": TOKEN_SECRET,
        "webhook secret": WEBHOOK_SECRET,
        "webhook signature": sign(WEBHOOK_SECRET, body).removeprefix("sha256="),
    }
    found = {name for name, value in leaks.items() if value in log}
    assert not found, f"leaked into the log: {sorted(found)}"
    assert "access_token=" not in log.replace("access_token=[REDACTED]", "")
