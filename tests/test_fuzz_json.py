"""Hostile JSON and WebSocket garbage over every JSON route and socket (issue 10, item 7).

Each attack is answered with a 4xx JSON error (never a 5xx, never a dropped connection) and
changes nothing: the whole store is snapshotted before and after.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from server.payments import sign
from tests.api_helpers import FREE_BODY, PREFIX, assert_error, snapshot

pytestmark = pytest.mark.timeout(240)
WEBHOOK = "/api/v1/payments/pix/webhook"
DEPTH = 40  # past the validator's MAX_DEPTH (32), far below the parser's recursion limit

# Every body here is invalid for every JSON route (none carries a `pix` list, so even the webhook
# refuses it as a whole). Raw bytes, so invalid UTF-8 and JSON-invalid text reach the server as is.
ATTACKS: list[tuple[str, bytes]] = [
    ("deep-array", b"[" * 100_000),
    ("deep-object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    ("nested-past-limit", json.dumps({"title": json.loads("[" * DEPTH + "]" * DEPTH)}).encode()),
    ("nested-object-past-limit", (b'{"x":' * DEPTH + b"{}" + b"}" * DEPTH)),
    ("huge-int", b'{"title": 1' + b"0" * 5000 + b"}"),
    ("huge-float", b'{"title": 1e999}'),
    ("neg-huge-float", b'{"sdp": -1e999, "pc_id": -1e999}'),
    ("big-int-field", b'{"max_height": 100000000000000000000000000000}'),
    ("nan", b'{"title": NaN}'),
    ("infinity", b'{"size_pct": Infinity}'),
    ("duplicate-keys", b'{"title": "a", "title": "b"}'),
    ("array-body", b"[1, 2, 3]"),
    ("string-body", b'"hello"'),
    ("number-body", b"42"),
    ("null-body", b"null"),
    ("true-body", b"true"),
    ("trailing-garbage", b"{} x"),
    ("two-documents", b"{}{}"),
    ("truncated", b'{"title": "abc'),
    ("escaped-surrogate", b'{"title": "oi \\ud800"}'),
    ("escaped-low-surrogate", b'{"sdp": "\\udc00", "pc_id": "\\udc00"}'),
    ("surrogate-key", b'{"\\ud800": 1}'),
    ("utf8-encoded-surrogate", b'{"title": "\xed\xa0\x80"}'),
    ("invalid-utf8", b'{"title": "\xff\xfe"}'),
    ("overlong-utf8", b'{"title": "\xc0\xaf"}'),
    ("utf16-body", '{"title": "x"}'.encode("utf-16")),
    ("bom", b'\xef\xbb\xbf{"title": "x"}'),
    ("nul-escaped", b'{"title": "a\\u0000b", "sdp": "\\u0000"}'),
    ("nul-key", b'{"a\\u0000": 1}'),
    ("operator-key", b'{"$where": "1"}'),
    ("dotted-key", b'{"a.b": 1}'),
    ("unknown-field", b'{"admin": true}'),
    ("wrong-types", b'{"title": 5, "streams": "screen", "mode": [], "sdp": 1, "pc_id": {}}'),
    ("overlong-string", json.dumps({"title": "x" * 500_000, "sdp": "x" * 500_000}).encode()),
    ("bidi-title", json.dumps({"title": "a\u202eb", "mode": "a\u202eb"}).encode()),
    ("control-chars", b'{"title": "a\\u001bb\\u0085", "sdp": "\\u0085"}'),
]


async def _world(api: Any) -> dict[str, str]:
    started = await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
    session = started.json["session"]
    joined = await api.post(f"{PREFIX}/session/{session['id']}/join")
    legacy = await api.post(f"{PREFIX}/start", {"title": "legacy"}, token=api.broadcaster_token)
    return {
        "sid": session["id"],
        "stream": session["streams"][0]["id"],
        "broadcaster": started.json["broadcaster_token"],
        "viewer": joined.json["viewer_token"],
        "legacy": legacy.json["livestream"]["id"],
        "legacy_token": legacy.json["token"],
        "account": api.broadcaster_token,
    }


def _routes(w: dict[str, str]) -> list[tuple[str, str, str | None]]:
    """(method, path, token) of every route that reads a JSON body."""
    return [
        ("POST", f"{PREFIX}/session/start", w["account"]),
        ("POST", f"{PREFIX}/session/{w['sid']}/join", None),
        ("PUT", f"{PREFIX}/session/{w['sid']}/preferences", w["viewer"]),
        ("POST", f"{PREFIX}/session/{w['sid']}/streams/screen/stop", w["broadcaster"]),
        ("POST", f"{PREFIX}/session/{w['sid']}/end", w["broadcaster"]),
        ("POST", f"{PREFIX}/stream/{w['stream']}/signal/offer", w["viewer"]),
        ("POST", f"{PREFIX}/stream/{w['stream']}/signal/offer", w["broadcaster"]),
        ("POST", f"{PREFIX}/stream/{w['stream']}/signal/candidate", w["viewer"]),
        ("POST", f"{PREFIX}/session/{w['sid']}/composite/signal/offer", w["viewer"]),
        ("POST", WEBHOOK, None),
        ("POST", f"{PREFIX}/start", w["account"]),
        ("POST", f"{PREFIX}/{w['legacy']}/stop", w["legacy_token"]),
    ]


async def test_json_attacks_on_every_route_are_4xx_and_change_nothing(server, api) -> None:
    w = await _world(api)
    peers = server.services.media.counters()["peer_connections"]
    before = await snapshot(server.services.store)
    statuses: dict[int, int] = {}
    for method, path, token in _routes(w):
        for name, raw in ATTACKS:
            headers = {"Content-Type": "application/json"}
            if path == WEBHOOK:
                headers["X-Pix-Signature"] = sign("webhook-secret", raw)
            resp = await api.request(method, path, raw=raw, token=token, headers=headers)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            assert 400 <= resp.status < 500, (method, path, name, resp.status, resp.body[:200])
            assert_error(resp, resp.status)
            if resp.status == 400 and name in ("escaped-surrogate", "nul-escaped", "bidi-title"):
                # Text problems name the field (or the JSON-level rule that caught them first).
                assert (
                    "body" in resp.json["error"]["message"]
                    or "field" in resp.json["error"]["message"]
                ), (path, name, resp.json)
    assert await snapshot(server.services.store) == before
    assert server.services.media.counters()["peer_connections"] == peers
    # Still serving, and the world is as it was: the session is live, the viewer can save.
    status = await api.get(f"{PREFIX}/session/{w['sid']}/status")
    assert status.status == 200 and status.json["session"]["status"] == "live"
    print(f"statuses={statuses}")


# -- WebSocket garbage -----------------------------------------------------------------------------


async def _ws(server: Any, path: str, token: str) -> tornado.websocket.WebSocketClientConnection:
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{server.port}{path}",
        headers={"Authorization": f"Bearer {token}"},
        request_timeout=10,
    )
    return await tornado.websocket.websocket_connect(request, max_message_size=1 << 20)


async def _next(conn: tornado.websocket.WebSocketClientConnection) -> dict[str, Any] | None:
    msg = await asyncio.wait_for(conn.read_message(), 10)
    return None if msg is None else json.loads(msg)


GARBAGE_TEXT = [
    "not json",
    "",
    "[]",
    "null",
    '"offer"',
    "{",
    '{"type": "offer", "type": "offer"}',
    '{"type": "offer", "sdp": "\\ud800"}',
    '{"type": "message", "text": "\\ud800"}',
    '{"type": "message", "text": "a\\u0000"}',
    '{"type": "offer", "sdp": 1e999}',
    '{"type": "offer", "sdp": "v=0", "admin": true}',
    '{"type": "candidate", "pc_id": "x", "candidate": {"candidate": "", "$ne": 1}}',
    '{"type": "shout"}',
    '{"$where": 1}',
    "[" * 10_000,
    '{"type": "message", "text": "' + "x" * 600 + '"}',
    json.dumps({"type": "offer", "sdp": "x" * 70_000}),
]


async def test_signaling_socket_garbage_gets_error_frames_and_changes_nothing(server, api) -> None:
    w = await _world(api)
    before = await snapshot(server.services.store)
    for token in (w["viewer"], w["broadcaster"]):
        conn = await _ws(server, f"{PREFIX}/stream/{w['stream']}/signal/ws", token)
        for text in GARBAGE_TEXT:
            await conn.write_message(text)
            reply = await _next(conn)
            if reply is None:  # only a frame over the size limit may close the socket
                assert len(text.encode()) > 64 * 1024 and conn.close_code == 1009, text[:60]
                conn = await _ws(server, f"{PREFIX}/stream/{w['stream']}/signal/ws", token)
                continue
            assert reply["type"] == "error", (text[:60], reply)
            assert 400 <= reply["error"]["status"] < 500 and reply["error"]["message"]
        await conn.write_message(b"\x00\x01binary", binary=True)
        reply = await _next(conn)
        assert reply is not None and reply["error"]["code"] == "invalid_frame"
        await _assert_invalid_utf8_closes_1007(conn)
    assert await snapshot(server.services.store) == before
    assert server.services.media.counters()["peer_connections"] == 0


async def test_chat_socket_garbage_gets_error_frames_and_changes_nothing(server, api) -> None:
    w = await _world(api)
    chat = f"{PREFIX}/session/{w['sid']}/chat"
    conn = await _ws(server, chat, w["viewer"])
    assert (await _next(conn))["type"] == "hello"  # type: ignore[index]
    before = await snapshot(server.services.store)
    sent = 0
    for text in [*GARBAGE_TEXT[:-1], "x" * 9000]:
        if sent and sent % 4 == 0:
            await asyncio.sleep(1.1 * 4)  # stay under the chat's rate limit (burst 5, 1/s)
        sent += 1
        await conn.write_message(text)
        reply = await _next(conn)
        if reply is None:
            assert len(text.encode()) > 8 * 1024 and conn.close_code == 1009, text[:60]
            conn = await _ws(server, chat, w["viewer"])
            assert (await _next(conn))["type"] == "hello"  # type: ignore[index]
            continue
        assert reply["type"] == "error", (text[:60], reply)
        assert 400 <= reply["error"]["status"] < 500 and reply["error"]["message"]
    await conn.write_message(b"\x00\x01binary", binary=True)
    reply = await _next(conn)
    assert reply is not None and reply["error"]["code"] == "invalid_frame"
    await _assert_invalid_utf8_closes_1007(conn)
    assert await snapshot(server.services.store) == before


async def _assert_invalid_utf8_closes_1007(
    conn: tornado.websocket.WebSocketClientConnection,
) -> None:
    """A text frame with invalid UTF-8 (which no client library will send for you): the server
    answers with a close frame 1007, not a dropped connection."""
    protocol = conn.protocol
    assert protocol is not None
    protocol._write_frame(True, 0x1, b'{"type": "\xff"}')  # type: ignore[attr-defined]
    assert await asyncio.wait_for(conn.read_message(), 10) is None
    assert conn.close_code == 1007
