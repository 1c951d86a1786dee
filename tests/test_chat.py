"""Session chat over real WebSockets on the real app (ephemeral port; SQLite and MongoDB stores)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
import tornado.httpclient
import tornado.websocket

from server.chat import CLOSE_RATE_LIMITED, CLOSE_SESSION_ENDED
from server.chat.changestream import events_from_change
from server.chat.ratelimit import TokenBucket
from store.changes import Change
from tests.api_helpers import FREE_BODY, PREFIX, assert_error, snapshot
from tests.conftest import RunningServer

# The whole module runs on SQLite and on MongoDB (the wire server started by conftest).
pytestmark = pytest.mark.store_backends

Conn = tornado.websocket.WebSocketClientConnection
TIMEOUT = 5.0


class Session:
    def __init__(self, sid: str, broadcaster: str) -> None:
        self.id = sid
        self.broadcaster = broadcaster


async def start_session(server: RunningServer) -> Session:
    r = await server.client.post(
        f"{PREFIX}/session/start", FREE_BODY, token=server.client.broadcaster_token
    )
    assert r.status == 201, r.body
    return Session(r.json["session"]["id"], r.json["broadcaster_token"])


async def join(server: RunningServer, sid: str) -> tuple[str, str]:
    r = await server.client.post(f"{PREFIX}/session/{sid}/join")
    assert r.status == 200, r.body
    return r.json["viewer_id"], r.json["viewer_token"]


def chat_url(server: RunningServer, sid: str, **query: str) -> str:
    qs = f"?{urlencode(query)}" if query else ""
    return f"ws://127.0.0.1:{server.port}{PREFIX}/session/{sid}/chat{qs}"


@pytest.fixture
async def connect(server: RunningServer) -> AsyncIterator[Callable[..., Awaitable[Conn]]]:
    """Factory for chat sockets; reads the hello frame and closes every socket at teardown."""
    opened: list[Conn] = []

    async def _connect(sid: str, token: str | None, *, hello: bool = True, **kw: Any) -> Conn:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = tornado.httpclient.HTTPRequest(
            chat_url(server, sid, **kw), headers=headers, request_timeout=TIMEOUT
        )
        conn = await tornado.websocket.websocket_connect(request)
        opened.append(conn)
        if hello:
            first = await recv(conn)
            assert first["type"] == "hello", first
            conn.hello = first  # type: ignore[attr-defined]
        return conn

    yield _connect
    for conn in opened:
        conn.close()


async def recv(conn: Conn) -> dict[str, Any]:
    raw = await asyncio.wait_for(conn.read_message(), TIMEOUT)
    assert raw is not None, f"closed: {conn.close_code} {conn.close_reason}"
    return json.loads(raw)


async def recv_type(conn: Conn, kind: str) -> dict[str, Any]:
    while True:
        event = await recv(conn)
        if event["type"] == kind:
            return event


async def closed(conn: Conn) -> tuple[int | None, str | None]:
    """Read until the server closes; return its close code and reason."""
    while True:
        raw = await asyncio.wait_for(conn.read_message(), TIMEOUT)
        if raw is None:
            return conn.close_code, conn.close_reason


async def say(conn: Conn, text: str) -> None:
    await conn.write_message(json.dumps({"type": "message", "text": text}))


async def handshake(server: RunningServer, sid: str, headers: dict[str, str]) -> Any:
    """A raw upgrade request, to see the JSON the server answers when it refuses the upgrade."""
    return await server.client.get(
        f"{PREFIX}/session/{sid}/chat",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            **headers,
        },
    )


# -- live chat -----------------------------------------------------------------------------------


async def test_message_reaches_everyone(server, connect) -> None:
    s = await start_session(server)
    (va, ta), (_vb, tb) = await join(server, s.id), await join(server, s.id)
    studio = await connect(s.id, s.broadcaster)
    alice = await connect(s.id, ta, name="  Alice  ")
    bob = await connect(s.id, tb)
    assert alice.hello["you"] == {"role": "viewer", "viewer_id": va, "name": "Alice"}
    assert studio.hello["you"] == {"role": "broadcaster", "viewer_id": None}

    text = "<b>nice</b> & <script>alert(1)</script> — ótimo 🎉"
    await say(alice, text)
    got = [await recv_type(c, "message") for c in (studio, alice, bob)]
    assert all(g == got[0] for g in got)
    message = got[0]["message"]
    assert message["text"] == text  # stored and sent exactly as typed; clients render as text
    assert message["author"] == {"role": "viewer", "viewer_id": va, "name": "Alice"}
    assert message["session_id"] == s.id
    stored = await server.services.store.get("chat_messages", message["id"])
    assert stored["text"] == text and stored["deleted"] is False

    await say(studio, "thanks!")
    reply = await recv_type(bob, "message")
    assert reply["message"]["author"]["role"] == "broadcaster"


async def test_late_joiner_gets_history(server, connect) -> None:
    s = await start_session(server)
    _, ta = await join(server, s.id)
    alice = await connect(s.id, ta)
    for i in range(3):
        await say(alice, f"m{i}")
        await recv_type(alice, "message")
    _, tc = await join(server, s.id)
    late = await connect(s.id, tc)
    assert [m["text"] for m in late.hello["history"]] == ["m0", "m1", "m2"]
    assert late.hello["next_before"] is None


async def test_history_pages_back(server) -> None:
    s = await start_session(server)
    _, token = await join(server, s.id)
    chat = server.services.chat
    claims = server.services.tokens.verify(token)
    for i in range(7):
        await chat.post(claims, s.id, f"m{i}", None)
    path = f"{PREFIX}/session/{s.id}/chat"
    r = await server.client.get(f"{path}?limit=3", token=token)
    assert r.status == 200, r.body
    assert [m["text"] for m in r.json["messages"]] == ["m4", "m5", "m6"]
    r2 = await server.client.get(f"{path}?limit=3&before={r.json['next_before']}", token=token)
    assert [m["text"] for m in r2.json["messages"]] == ["m1", "m2", "m3"]
    r3 = await server.client.get(f"{path}?limit=3&before={r2.json['next_before']}", token=token)
    assert [m["text"] for m in r3.json["messages"]] == ["m0"]
    assert r3.json["next_before"] is None
    # The broadcaster reads the same history.
    r4 = await server.client.get(path, token=s.broadcaster)
    assert [m["text"] for m in r4.json["messages"]] == [f"m{i}" for i in range(7)]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("?limit=0", 400, "invalid_limit"),
        ("?limit=101", 400, "invalid_limit"),
        ("?limit=abc", 400, "invalid_limit"),
        ("?limit=", 400, "invalid_limit"),  # schemathesis: an empty value is not an integer
        ("?before=not-a-seq", 400, "invalid_cursor"),
        ("?before=%7B%22%24gt%22%3A%22%22%7D", 400, "invalid_cursor"),
    ],
)
async def test_history_bad_query(server, query: str, status: int, code: str) -> None:
    s = await start_session(server)
    _, token = await join(server, s.id)
    before = await snapshot(server.services.store)
    r = await server.client.get(f"{PREFIX}/session/{s.id}/chat{query}", token=token)
    assert_error(r, status, code)
    assert await snapshot(server.services.store) == before


async def test_history_needs_a_token_of_the_session(server) -> None:
    s, other = await start_session(server), await start_session(server)
    _, other_token = await join(server, other.id)
    path = f"{PREFIX}/session/{s.id}/chat"
    assert_error(await server.client.get(path), 401, "missing_token")
    assert_error(await server.client.get(path, token="forged.token.here"), 401, "invalid_token")
    assert_error(await server.client.get(path, token=other_token), 403, "forbidden")
    r = await server.client.get(
        path, token=s.broadcaster, headers={"Origin": "https://evil.example"}
    )
    assert_error(r, 403, "origin_not_allowed")


async def test_delete_is_seen_by_everyone(server, connect) -> None:
    s = await start_session(server)
    _, ta = await join(server, s.id)
    _, tb = await join(server, s.id)
    studio = await connect(s.id, s.broadcaster)
    alice, bob = await connect(s.id, ta), await connect(s.id, tb)
    await say(alice, "oops")
    mid = (await recv_type(bob, "message"))["message"]["id"]

    # A viewer cannot delete.
    await bob.write_message(json.dumps({"type": "delete", "id": mid}))
    assert (await recv_type(bob, "error"))["error"]["code"] == "not_broadcaster"
    assert (await server.services.store.get("chat_messages", mid))["deleted"] is False

    await studio.write_message(json.dumps({"type": "delete", "id": mid}))
    for conn in (studio, alice, bob):
        assert await recv_type(conn, "deleted") == {"type": "deleted", "id": mid}
    assert (await server.services.store.get("chat_messages", mid))["deleted"] is True
    r = await server.client.get(f"{PREFIX}/session/{s.id}/chat", token=tb)
    assert r.json["messages"] == []
    # Unknown ids are refused without effect.
    before = await snapshot(server.services.store)
    await studio.write_message(json.dumps({"type": "delete", "id": "msg_nope"}))
    assert (await recv_type(studio, "error"))["error"]["code"] == "message_not_found"
    assert await snapshot(server.services.store) == before


async def test_muted_viewer_is_refused(server, connect) -> None:
    s = await start_session(server)
    va, ta = await join(server, s.id)
    _, tb = await join(server, s.id)
    studio = await connect(s.id, s.broadcaster)
    alice, bob = await connect(s.id, ta), await connect(s.id, tb)

    await alice.write_message(json.dumps({"type": "mute", "viewer_id": va}))
    assert (await recv_type(alice, "error"))["error"]["code"] == "not_broadcaster"

    await studio.write_message(json.dumps({"type": "mute", "viewer_id": va, "muted": True}))
    for conn in (studio, alice, bob):
        assert await recv_type(conn, "mutes") == {"type": "mutes", "muted": [va]}
    before = await snapshot(server.services.store)
    await say(alice, "let me speak")
    err = (await recv_type(alice, "error"))["error"]
    assert err["code"] == "muted" and err["status"] == 403
    assert await snapshot(server.services.store) == before
    await say(bob, "I can")
    assert (await recv_type(studio, "message"))["message"]["text"] == "I can"
    # A reconnect does not escape the mute.
    again = await connect(s.id, ta)
    assert again.hello["muted"] == [va]
    await say(again, "still me")
    assert (await recv_type(again, "error"))["error"]["code"] == "muted"

    await studio.write_message(json.dumps({"type": "mute", "viewer_id": va, "muted": False}))
    assert await recv_type(alice, "mutes") == {"type": "mutes", "muted": []}
    await say(alice, "back")
    texts = [(await recv_type(bob, "message"))["message"]["text"] for _ in range(2)]
    assert texts == ["I can", "back"]


async def test_flood_is_throttled_then_closed(server, connect) -> None:
    s = await start_session(server)
    _, ta = await join(server, s.id)
    limits = server.services.chat.limits
    flooder = await connect(s.id, ta)
    for i in range(limits.burst + limits.max_strikes + 5):
        try:
            await say(flooder, f"spam {i}")
        except tornado.websocket.WebSocketClosedError:
            break
    events: list[dict[str, Any]] = []
    while True:
        raw = await asyncio.wait_for(flooder.read_message(), TIMEOUT)
        if raw is None:
            break
        events.append(json.loads(raw))
    assert flooder.close_code == CLOSE_RATE_LIMITED == 4008
    assert flooder.close_reason == "rate limit exceeded: too many messages"
    throttled = [e for e in events if e["type"] == "error"]
    assert throttled and all(
        e["error"]["code"] == "rate_limited" and e["error"]["status"] == 429 for e in throttled
    )
    stored = await server.services.store.count("chat_messages", {"session_id": s.id})
    # The burst went through first: its echoes may reach the flooder after the first refusals when
    # the bus is a change stream, so read what was stored rather than the order of the frames.
    docs = await server.services.store.find("chat_messages", {"session_id": s.id})
    texts = {d["text"] for d in docs}
    assert {f"spam {i}" for i in range(limits.burst)} <= texts
    # Only the burst (plus at most what refilled during the test) was stored.
    assert limits.burst <= stored <= limits.burst + 2


async def test_oversized_frame_closes_and_long_text_is_refused(server, connect) -> None:
    s = await start_session(server)
    _, ta = await join(server, s.id)
    limits = server.services.chat.limits
    conn = await connect(s.id, ta)
    before = await snapshot(server.services.store)
    await say(conn, "x" * (limits.max_text_chars + 1))
    err = (await recv_type(conn, "error"))["error"]
    assert err["code"] == "message_too_long" and err["status"] == 413
    await conn.write_message(json.dumps({"type": "message", "text": "x" * limits.max_frame_bytes}))
    assert await closed(conn) == (1009, "message too big")
    assert await snapshot(server.services.store) == before


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"type": "shout", "text": "hi"}', "invalid_frame"),
        ('{"type": "message", "text": "   "}', "invalid_message"),
        ('{"type": "message", "text": 5}', "invalid_message"),
        ('{"type": "message", "text": "a\\u0000b"}', "invalid_text"),
        ('{"type": "message", "text": "oi \\ud800"}', "invalid_text"),
        ('{"type": "message", "text": "a\\u202eb"}', "invalid_message"),
        ('{"type": "message", "text": "\\u200bhi"}', "invalid_message"),
        ('{"type": "message", "text": "a\\u0085b"}', "invalid_message"),
        ('{"type": "message", "text": "hi", "$where": 1}', "forbidden_key"),
    ],
)
async def test_bad_frames_answer_errors_and_keep_the_socket(
    server, connect, frame: str, code: str
) -> None:
    s = await start_session(server)
    _, ta = await join(server, s.id)
    conn = await connect(s.id, ta)
    before = await snapshot(server.services.store)
    await conn.write_message(frame)
    err = (await recv_type(conn, "error"))["error"]
    assert err["code"] == code and err["status"] in (400, 413)
    await conn.write_message(json.dumps({"type": "ping"}))
    assert await recv_type(conn, "pong") == {"type": "pong"}
    assert await snapshot(server.services.store) == before


@pytest.mark.parametrize(
    ("who", "headers", "status", "code"),
    [
        ("none", {}, 401, "missing_token"),
        ("forged", {}, 401, "invalid_token"),
        ("other-session", {}, 403, "forbidden"),
        ("viewer", {"Origin": "https://evil.example"}, 403, "origin_not_allowed"),
    ],
)
async def test_upgrade_refused_with_json(
    server, who: str, headers: dict[str, str], status: int, code: str
) -> None:
    s, other = await start_session(server), await start_session(server)
    tokens = {
        "none": None,
        "forged": "eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
        "other-session": (await join(server, other.id))[1],
        "viewer": (await join(server, s.id))[1],
    }
    if tokens[who]:
        headers = {**headers, "Authorization": f"Bearer {tokens[who]}"}
    before = await snapshot(server.services.store)
    r = await handshake(server, s.id, headers)
    assert_error(r, status, code)
    # The browser path (token in the query) is refused the same way by a real WebSocket client.
    query = {"access_token": tokens[who]} if tokens[who] else {}
    request = tornado.httpclient.HTTPRequest(
        chat_url(server, s.id, **query), headers={k: v for k, v in headers.items() if k == "Origin"}
    )
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await tornado.websocket.websocket_connect(request)
    assert info.value.code == status
    assert server.services.chat.peer_count(s.id) == 0
    assert await snapshot(server.services.store) == before


async def test_access_token_query_and_same_origin_are_accepted(server, connect) -> None:
    s = await start_session(server)
    _, ta = await join(server, s.id)
    conn = await connect(
        s.id, None, access_token=ta, headers={"Origin": f"http://127.0.0.1:{server.port}"}
    )
    assert conn.hello["you"]["role"] == "viewer"
    assert server.services.chat.peer_count(s.id) == 1


async def test_ended_session_closes_chat_and_refuses_new_sockets(server, connect) -> None:
    s = await start_session(server)
    _, ta = await join(server, s.id)
    conn = await connect(s.id, ta)
    r = await server.client.post(f"{PREFIX}/session/{s.id}/end", token=s.broadcaster)
    assert r.status == 200, r.body
    assert await recv_type(conn, "ended") == {"type": "ended"}
    assert await closed(conn) == (CLOSE_SESSION_ENDED, "session ended")
    r = await handshake(server, s.id, {"Authorization": f"Bearer {ta}"})
    assert_error(r, 409, "session_ended")
    # History stays readable after the end.
    r = await server.client.get(f"{PREFIX}/session/{s.id}/chat", token=ta)
    assert r.status == 200 and r.json["messages"] == []


async def test_shutdown_closes_chat_sockets(server, connect) -> None:
    s = await start_session(server)
    _, ta = await join(server, s.id)
    conn = await connect(s.id, ta)
    await server.services.chat.close()
    assert await closed(conn) == (1001, "server shutting down")


# -- pure parts ----------------------------------------------------------------------------------


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(burst=3, rate=2.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.4  # 0.8 of a token
    assert bucket.take() is False
    now[0] = 0.6  # 1.2 - 0 spent since → one token
    assert bucket.take() is True
    now[0] = 100.0  # refills to the burst, not beyond
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0)


MESSAGE_DOC = {
    "id": "msg_1",
    "session_id": "ses_1",
    "seq": "0001763900000000000abcdef01",
    "author": {"role": "viewer", "viewer_id": "vwr_1"},
    "text": "hi",
    "created_at": "2026-11-24T07:00:00.000+00:00",
    "deleted": False,
}
TOKEN = {"_data": "x"}


def test_change_stream_translation() -> None:
    """Committed writes (as the store's change feed hands them over) become chat events; the feed
    itself runs against a real server in tests/test_store_changes.py and test_chat_instances.py."""
    insert = Change("chat_messages", "insert", "msg_1", MESSAGE_DOC, TOKEN)
    [(sid, event)] = events_from_change(insert)
    assert sid == "ses_1" and event["type"] == "message"
    assert event["message"]["id"] == "msg_1" and "_id" not in event["message"]

    deleted = Change(
        "chat_messages",
        "update",
        "msg_1",
        {**MESSAGE_DOC, "deleted": True},
        TOKEN,
        {"deleted": True, "deleted_at": "x"},
    )
    assert events_from_change(deleted) == [("ses_1", {"type": "deleted", "id": "msg_1"})]

    muted = Change(
        "broadcast_sessions", "update", "ses_1", None, TOKEN, {"chat_muted": ["vwr_2", "vwr_1"]}
    )
    assert events_from_change(muted) == [("ses_1", {"type": "mutes", "muted": ["vwr_1", "vwr_2"]})]
    ended = replace(muted, updated_fields={"status": "ended", "ended_at": "x"})
    assert events_from_change(ended) == [("ses_1", {"type": "ended"})]
    other = replace(muted, updated_fields={"title": "new"})
    assert events_from_change(other) == []
    assert events_from_change(Change("chat_messages", "delete", "msg_1", None, TOKEN)) == []


async def test_configured_cross_origin_can_read_history_and_connect(server, connect) -> None:
    server.services.settings = replace(
        server.services.settings, allowed_origins=("https://studio.example",)
    )
    s = await start_session(server)
    _, token = await join(server, s.id)
    path = f"{PREFIX}/session/{s.id}/chat"
    preflight = {"Origin": "https://studio.example", "Access-Control-Request-Method": "GET"}
    r = await server.client.request("OPTIONS", path, headers=preflight)
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://studio.example"
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = await server.client.get(path, token=token, headers={"Origin": "https://studio.example"})
    assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://studio.example"
    conn = await connect(s.id, token, headers={"Origin": "https://studio.example"})
    assert conn.hello["type"] == "hello"
    evil = {**preflight, "Origin": "https://evil.example"}
    assert_error(
        await server.client.request("OPTIONS", path, headers=evil), 403, "origin_not_allowed"
    )


@pytest.mark.parametrize(
    "name",
    # (C0 controls never arrive: Tornado's get_argument turns them into spaces.)
    ["N" * 41, "Ana\u202eevil", "\u200bAna", "Ana\u2066x"],
    ids=["too-long", "bidi-override", "zero-width-edge", "bidi-isolate"],
)
async def test_a_display_name_is_checked_before_the_socket_opens(server, connect, name) -> None:
    """Display names (the watch page's "Your name") are validated server-side: length and the one
    text rule; the refusal is the API's JSON error, before any WebSocket traffic."""
    s = await start_session(server)
    _, ta = await join(server, s.id)
    request = tornado.httpclient.HTTPRequest(chat_url(server, s.id, access_token=ta, name=name))
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await tornado.websocket.websocket_connect(request)
    assert info.value.code == 400
    body = json.loads(info.value.response.body)
    assert body["error"]["code"] == "invalid_name"
    assert server.services.chat.peer_count(s.id) == 0
    # A name at the limit is taken, trimmed and with inner runs of spaces folded.
    ok = await connect(s.id, ta, name=" Ana   Maria " + "a" * 28)
    assert ok.hello["you"]["name"] == "Ana Maria " + "a" * 28
