"""Chat across two real `multistream serve` processes sharing one MongoDB (the wire server): what a
socket on instance A does reaches a socket on instance B over change streams, within 2 s, and
survives B's change stream being cut (nothing is lost; it resumes from its last event)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from tests import mongodb
from tests.api_helpers import FREE_BODY, PREFIX, web_broadcaster
from tests.conftest import Client
from tests.ops_helpers import ServerProcess, free_port, start_server

pytestmark = pytest.mark.mongodb_live

SECRET = "chat-instances-shared-token-secret-" + "c" * 24
WITHIN_S = 2.0
Conn = tornado.websocket.WebSocketClientConnection


@pytest.fixture
def instances(
    tmp_path: Path, mongodb_server: mongodb.WireServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    db = mongodb.unique_db("chat")
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            started.append(
                start_server(
                    tmp_path / name,
                    tmp_path / f"{name}.log",
                    {
                        # appName: so a test can cut this instance's change streams only.
                        "MULTISTREAM_STORE": mongodb_server.uri(db, appName=f"inst-{name}"),
                        "MULTISTREAM_TOKEN_SECRET": SECRET,
                        "MULTISTREAM_INSTANCE_ID": f"inst-{name}",
                        "MULTISTREAM_PUBLIC_URL": f"http://127.0.0.1:{port}",
                        "MULTISTREAM_DRAIN_DEADLINE": "0",
                    },
                    port=port,
                )
            )
        yield started[0], started[1]
    finally:
        for server in started:
            assert server.stop() == 0, server.log_text()[-2000:]
        mongodb_server.drop(db)


@pytest.fixture
async def sockets() -> AsyncIterator[list[Conn]]:
    opened: list[Conn] = []
    yield opened
    for conn in opened:
        conn.close()


async def connect(opened: list[Conn], base_url: str, sid: str, token: str) -> Conn:
    url = base_url.replace("http://", "ws://") + f"{PREFIX}/session/{sid}/chat"
    request = tornado.httpclient.HTTPRequest(
        url, headers={"Authorization": f"Bearer {token}"}, request_timeout=10
    )
    conn = await tornado.websocket.websocket_connect(request)
    opened.append(conn)
    hello = await recv(conn)
    assert hello["type"] == "hello", hello
    return conn


async def recv(conn: Conn, timeout: float = 10) -> dict[str, Any]:
    raw = await asyncio.wait_for(conn.read_message(), timeout)
    assert raw is not None, f"closed: {conn.close_code} {conn.close_reason}"
    return json.loads(raw)


async def recv_type(conn: Conn, kind: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event = await recv(conn, max(0.01, deadline - time.monotonic()))
        if event["type"] == kind:
            return event


async def timed(conn: Conn, kind: str) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    event = await recv_type(conn, kind, timeout=WITHIN_S)
    return event, time.monotonic() - t0


async def send(conn: Conn, frame: dict[str, Any]) -> None:
    await conn.write_message(json.dumps(frame))


async def session_with_viewers(a: Client, b: Client) -> dict[str, Any]:
    """A session started on A; viewer Bob joins through A, viewer Alice through B."""
    r = await a.post(f"{PREFIX}/session/start", FREE_BODY, token=a.broadcaster_token)
    assert r.status == 201, r.body
    sid = r.json["session"]["id"]
    bob = (await a.post(f"{PREFIX}/session/{sid}/join")).json
    alice = (await b.post(f"{PREFIX}/session/{sid}/join")).json
    return {"sid": sid, "broadcaster": r.json["broadcaster_token"], "bob": bob, "alice": alice}


@pytest.mark.timeout(90)
async def test_message_delete_mute_and_end_on_a_reach_a_socket_on_b(
    instances: tuple[ServerProcess, ServerProcess], sockets: list[Conn]
) -> None:
    a_proc, b_proc = instances
    a, b = Client(a_proc.base_url), Client(b_proc.base_url)
    await web_broadcaster(a)
    s = await session_with_viewers(a, b)
    sid = s["sid"]
    studio = await connect(sockets, a_proc.base_url, sid, s["broadcaster"])
    bob = await connect(sockets, a_proc.base_url, sid, s["bob"]["viewer_token"])
    alice = await connect(sockets, b_proc.base_url, sid, s["alice"]["viewer_token"])
    latencies: dict[str, float] = {}

    await send(bob, {"type": "message", "text": "olá from A"})
    event, latencies["message"] = await timed(alice, "message")
    message = event["message"]
    assert message["text"] == "olá from A"
    assert message["author"]["viewer_id"] == s["bob"]["viewer_id"]

    await send(studio, {"type": "delete", "id": message["id"]})
    event, latencies["delete"] = await timed(alice, "deleted")
    assert event == {"type": "deleted", "id": message["id"]}

    await send(studio, {"type": "mute", "viewer_id": s["bob"]["viewer_id"], "muted": True})
    event, latencies["mute"] = await timed(alice, "mutes")
    assert event == {"type": "mutes", "muted": [s["bob"]["viewer_id"]]}

    # And the other way: Alice on B is heard by the studio on A (which also saw Bob's message).
    assert (await recv_type(studio, "message"))["message"]["text"] == "olá from A"
    await send(alice, {"type": "message", "text": "hi from B"})
    event, latencies["b_to_a"] = await timed(studio, "message")
    assert event["message"]["text"] == "hi from B"

    # History through either instance is the same store.
    history = await b.get(f"{PREFIX}/session/{sid}/chat", token=s["alice"]["viewer_token"])
    assert [m["text"] for m in history.json["messages"]] == ["hi from B"]

    # Preferences put through B are read back through A.
    put = await b.put(
        f"{PREFIX}/session/{sid}/preferences",
        {"mode": "composite", "pip": {"corner": "top-left", "size_pct": 30}},
        token=s["alice"]["viewer_token"],
    )
    assert put.status == 200, put.body
    got = await a.get(f"{PREFIX}/session/{sid}/preferences", token=s["alice"]["viewer_token"])
    assert got.json["preferences"]["mode"] == "composite"
    assert got.json["preferences"]["pip"] == {"corner": "top-left", "size_pct": 30}

    # Ending on A closes Alice's socket on B.
    r = await a.post(f"{PREFIX}/session/{sid}/end", token=s["broadcaster"])
    assert r.status == 200, r.body
    _, latencies["ended"] = await timed(alice, "ended")
    print("chat A->B latencies (s):", {k: round(v, 3) for k, v in latencies.items()})
    assert "chat: fan-out over MongoDB change streams" in b_proc.log_text()


@pytest.mark.timeout(90)
async def test_b_resumes_after_its_change_stream_is_cut_and_loses_nothing(
    instances: tuple[ServerProcess, ServerProcess],
    sockets: list[Conn],
    mongodb_server: mongodb.WireServer,
) -> None:
    a_proc, b_proc = instances
    a, b = Client(a_proc.base_url), Client(b_proc.base_url)
    await web_broadcaster(a)
    s = await session_with_viewers(a, b)
    sid = s["sid"]
    bob = await connect(sockets, a_proc.base_url, sid, s["bob"]["viewer_token"])
    alice = await connect(sockets, b_proc.base_url, sid, s["alice"]["viewer_token"])
    await send(bob, {"type": "message", "text": "before"})
    assert (await recv_type(alice, "message"))["message"]["text"] == "before"

    async with mongodb.feeds_cut(mongodb_server, "inst-b"):
        # B's server-side stream is closed and cannot reopen: wait until B says so.
        deadline = time.monotonic() + 15
        while "chat change stream interrupted" not in b_proc.log_text():
            assert time.monotonic() < deadline, b_proc.log_text()[-2000:]
            await asyncio.sleep(0.05)
        for i in range(3):
            await send(bob, {"type": "message", "text": f"during {i}"})
            await recv_type(bob, "message")  # stored and delivered on A
        # Nothing reaches B while its stream is down (the cut is real).
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(alice.read_message(), 1.0)
    # Let back in, B resumes after "before" and delivers the three, in order, once.
    texts = [(await recv_type(alice, "message", timeout=10))["message"]["text"] for _ in range(3)]
    assert texts == ["during 0", "during 1", "during 2"]
    await send(bob, {"type": "message", "text": "after"})
    assert (await recv_type(alice, "message"))["message"]["text"] == "after"
    assert "chat change stream lost its position" not in b_proc.log_text()
