"""Issue 10, items 4-5: strict bodies and clean edges, each defect with the test that shows it.

Raw sockets where the HTTP client would hide the wire (methods, chunking, keep-alive, timeouts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from dataclasses import replace
from typing import Any

import pytest
import tornado.testing

from multistream.app import make_app, make_http_server
from server.lifespan import open_services
from server.settings import Secret
from tests.api_helpers import FREE_BODY, PREFIX, START_BODY, assert_error, snapshot
from tests.media_helpers import new_pc, offer_of

START = f"{PREFIX}/session/start"


async def free_session(api: Any) -> tuple[str, str]:
    resp = await api.post(START, FREE_BODY, token=api.broadcaster_token)
    assert resp.status == 201, resp.body
    return resp.json["session"]["id"], resp.json["broadcaster_token"]


# -- raw HTTP --------------------------------------------------------------------------------------


async def raw_exchange(port: int, data: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and _complete(out):
                break
    except (TimeoutError, ConnectionResetError):
        pass
    writer.close()
    return out


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, body


# -- item 4: strict, typed request bodies ----------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "code"),
    [
        ("oi \ud800", "invalid_text"),  # was a 500 (SQLite UnicodeEncodeError)
        ("a\u202eb", "invalid_text"),  # bidi override
        ("\u200btitle", "invalid_text"),  # zero-width at the edge
        ("title\u200d", "invalid_text"),
        ("a\u0085b", "invalid_text"),  # C1 control
        ("a\x1bb", "invalid_text"),  # C0 control
    ],
)
async def test_title_refuses_invalid_text(server, api, title: str, code: str) -> None:
    before = await snapshot(server.services.store)
    raw = json.dumps({"title": title}).encode()  # ensure_ascii: "\ud800" travels as an escape
    err = assert_error(await api.post(START, raw=raw, token=api.broadcaster_token), 400, code)
    assert "title" in err["message"]
    assert await snapshot(server.services.store) == before


async def test_title_allows_inner_zero_width_joiner(api) -> None:
    # A ZWJ inside an emoji sequence is legitimate text; only the edges are refused.
    resp = await api.post(
        START, {"title": "family \U0001f468\u200d\U0001f469 live"}, token=api.broadcaster_token
    )
    assert resp.status == 201, resp.body


async def test_raw_utf8_surrogate_and_invalid_utf8_are_400(server, api) -> None:
    before = await snapshot(server.services.store)
    for raw in (b'{"title": "\xed\xa0\x80"}', b'{"title": "\xc3"}', b'{"title": "\xff"}'):
        assert_error(
            await api.post(START, raw=raw, token=api.broadcaster_token), 400, "invalid_json"
        )
    assert await snapshot(server.services.store) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("end", {"admin": True}),  # was accepted
        ("join", {"viewer_id": "someone-else"}),
        ("streams/screen/stop", {"force": True}),
    ],
)
async def test_unknown_fields_refused(server, api, path: str, body: dict) -> None:
    sid, token = await free_session(api)
    before = await snapshot(server.services.store)
    err = assert_error(await api.post(f"{PREFIX}/session/{sid}/{path}", body, token=token), 400)
    assert "unknown fields" in err["message"]
    assert await snapshot(server.services.store) == before


async def test_signaling_unknown_fields_refused(server, api) -> None:
    sid, token = await free_session(api)
    status = (await api.get(f"{PREFIX}/session/{sid}/status")).json
    stream_id = status["streams"][0]["id"]
    for route, body in (
        ("offer", {"sdp": "v=0", "type": "offer", "admin": True}),
        ("candidate", {"pc_id": "x", "candidate": None, "extra": 1}),
    ):
        resp = await api.post(f"{PREFIX}/stream/{stream_id}/signal/{route}", body, token=token)
        assert "unknown fields" in assert_error(resp, 400)["message"]


@pytest.mark.parametrize(
    "ctype",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_non_json_content_type_is_415(server, api, ctype: str) -> None:
    before = await snapshot(server.services.store)
    resp = await api.post(
        START,
        raw=json.dumps(FREE_BODY).encode(),
        headers={"Content-Type": ctype},
        token=api.broadcaster_token,
    )
    assert_error(resp, 415, "unsupported_media_type")
    assert await snapshot(server.services.store) == before


async def test_json_suffix_content_type_is_accepted(api) -> None:
    raw = json.dumps(FREE_BODY).encode()
    resp = await api.post(
        START,
        raw=raw,
        headers={"Content-Type": "application/merge+json"},
        token=api.broadcaster_token,
    )
    assert resp.status == 201


async def test_schema_valid_numbers_and_receiver_accepted(api) -> None:
    # Issue 10 (schemathesis): `size_pct: 35.0` is an integer in JSON and JSON Schema.
    sid, _ = await free_session(api)
    viewer = (await api.post(f"{PREFIX}/session/{sid}/join")).json["viewer_token"]
    body = {"mode": "composite", "pip": {"corner": "top-left", "size_pct": 35.0}}
    resp = await api.put(f"{PREFIX}/session/{sid}/preferences", body, token=viewer)
    assert resp.status == 200, resp.body
    assert resp.json["preferences"]["pip"]["size_pct"] == 35


# -- item 5: clean edges ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["FOO", "TRACE"])
@pytest.mark.parametrize(
    ("path", "allow"),
    [
        (START, {"POST", "OPTIONS"}),
        (f"{PREFIX}/sessions", {"GET", "OPTIONS"}),
        ("/", {"GET", "HEAD"}),
        (f"{PREFIX}/stream/x/signal/ws", {"GET"}),
    ],
)
async def test_unknown_method_is_405_json_with_allow_and_one_log_line(
    server, caplog, method: str, path: str, allow: set[str]
) -> None:
    caplog.set_level(logging.INFO)
    data = await raw_exchange(
        server.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    )
    status, headers, body = parse_response(data)
    assert status == 405
    assert {m.strip() for m in headers["allow"].split(",")} == allow
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["status"] == 405
    access = [r for r in caplog.records if r.name == "tornado.access"]
    assert len(access) == 1 and access[0].getMessage().startswith(f"405 {method} ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback


async def test_known_but_unimplemented_method_is_405_with_allow(api) -> None:
    resp = await api.request("DELETE", f"{PREFIX}/sessions")
    assert_error(resp, 405)
    assert resp.headers["Allow"] == "GET, OPTIONS"


async def test_chunked_body_over_limit_is_413(server) -> None:
    limit = server.services.settings.max_body_bytes
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2))
    data = await raw_exchange(
        server.port,
        (
            f"POST {START} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n",
    )
    status, headers, body = parse_response(data)
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"
    assert headers.get("connection", "").lower() == "close"


async def test_refused_preflight_says_connection_close_or_keeps_alive(server) -> None:
    request = (
        f"OPTIONS {START} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n"
        "Access-Control-Request-Method: POST\r\n\r\n"
        f"GET {PREFIX}/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 10)
    status, headers, body = parse_response(data)
    assert status == 403 and json.loads(body[: int(headers["content-length"])])["error"]
    rest = data[data.index(b"\r\n\r\n") + 4 + int(headers["content-length"]) :]
    with contextlib.suppress(TimeoutError):
        rest += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    if headers.get("connection", "").lower() != "close":
        # Kept alive: the pipelined request must be answered.
        assert rest.startswith(b"HTTP/1.1 200"), rest[:100]


@pytest.mark.parametrize(
    "path", [f"{PREFIX}/stream/x/signal/ws", f"{PREFIX}/session/x/composite/signal/ws"]
)
async def test_plain_get_to_websocket_route_is_json_426(api, path: str) -> None:
    _, token = await free_session(api)
    assert_error(await api.get(path), 401)  # no token: refused first, in JSON
    resp = await api.get(path, token=token)
    assert_error(resp, 426, "upgrade_required")
    assert resp.headers["Upgrade"] == "websocket"


async def test_sdp_without_mid_is_400_over_http_and_websocket(server, api) -> None:
    media = server.services.media
    sid, _token = await free_session(api)
    stream_id = (await api.get(f"{PREFIX}/session/{sid}/status")).json["streams"][0]["id"]
    viewer = (await api.post(f"{PREFIX}/session/{sid}/join")).json["viewer_token"]
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    sdp = (await offer_of(pc))["sdp"]
    await pc.close()
    no_mid = "".join(ln for ln in sdp.splitlines(True) if not ln.startswith("a=mid:"))
    path = f"{PREFIX}/stream/{stream_id}/signal/offer"
    resp = await api.post(path, {"sdp": no_mid, "type": "offer"}, token=viewer)
    assert_error(resp, 400, "invalid_sdp")
    assert media.counters()["peer_connections"] == 0
    import tornado.httpclient
    import tornado.websocket

    conn = await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(
            f"ws://127.0.0.1:{server.port}{PREFIX}/stream/{stream_id}/signal/ws",
            headers={"Authorization": f"Bearer {viewer}"},
        )
    )
    await conn.write_message(json.dumps({"type": "offer", "sdp": no_mid}))
    msg = json.loads(await conn.read_message())
    assert msg["type"] == "error" and msg["error"]["code"] == "invalid_sdp"
    assert media.counters()["peer_connections"] == 0
    conn.close()


@pytest.fixture
async def impatient(settings) -> Any:
    """The real app with 1-second header and body timeouts."""
    quick = replace(settings, header_timeout_s=1, body_timeout_s=1)
    async with open_services(quick) as svc:
        sock, port = tornado.testing.bind_unused_port()
        http_server = make_http_server(make_app(svc.settings, svc), svc.settings)
        http_server.add_sockets([sock])
        try:
            yield port
        finally:
            http_server.stop()
            await http_server.close_all_connections()


async def _closed_by_server(port: int, first: bytes, drip: bytes, seconds: float) -> float:
    """Send `first`, then one byte of `drip` every 0.2 s; seconds until the server closed."""
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    start = loop.time()
    try:
        await loop.sock_sendall(sock, first)
        for byte in drip:
            await asyncio.sleep(0.2)
            try:
                await loop.sock_sendall(sock, bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return loop.time() - start
            if loop.time() - start > seconds:
                break
        data = await asyncio.wait_for(loop.sock_recv(sock, 1024), 3)
        assert data == b"" or b"408" in data or b"400" in data
        return loop.time() - start
    finally:
        sock.close()


async def test_slow_headers_are_cut_off(impatient) -> None:
    elapsed = await _closed_by_server(
        impatient, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: " + b"a" * 100, 10
    )
    assert elapsed < 8


async def test_slow_body_is_cut_off(impatient) -> None:
    head = f"POST {START} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += "Content-Length: 500\r\n\r\n"
    elapsed = await _closed_by_server(impatient, head.encode(), b"{" + b" " * 200, 10)
    assert elapsed < 8


@pytest.fixture
async def guarded_metrics(settings) -> Any:
    guarded = replace(settings, metrics_token=Secret("scrape-me"))
    async with open_services(guarded) as svc:
        sock, port = tornado.testing.bind_unused_port()
        http_server = make_http_server(make_app(svc.settings, svc), svc.settings)
        http_server.add_sockets([sock])
        try:
            from tests.conftest import Client

            yield Client(f"http://127.0.0.1:{port}")
        finally:
            http_server.stop()
            await http_server.close_all_connections()


async def test_metrics_token_restricts_metrics(guarded_metrics) -> None:
    client = guarded_metrics
    assert_error(await client.get("/metrics"), 401)
    assert_error(await client.get("/metrics", token="wrong"), 401)
    ok = await client.get("/metrics", token="scrape-me")
    assert ok.status == 200 and b"# TYPE" in ok.body
    assert (await client.get("/healthz")).status == 200  # probes stay open


async def test_metrics_open_without_token(api) -> None:
    assert (await api.get("/metrics")).status == 200


async def test_start_body_still_accepted(api) -> None:
    assert (await api.post(START, START_BODY, token=api.broadcaster_token)).status == 201
