"""The bad-input matrix: every case answers the right status with the JSON error body, and writes
nothing (the whole store is snapshotted before and after)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from tests.api_helpers import FREE_BODY, PREFIX, START_BODY, assert_error, snapshot

# The whole module runs on SQLite and on MongoDB (the wire server started by conftest).
pytestmark = pytest.mark.store_backends


@pytest.fixture
async def world(server, api) -> dict[str, Any]:
    """Two live sessions, a viewer of the first, and every kind of token."""
    a = (await api.post(f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token)).json
    b = (await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)).json
    viewer = (await api.post(f"{PREFIX}/session/{a['session']['id']}/join")).json
    secret = server.services.settings.token_secret.reveal()
    now = int(time.time())
    expired = jwt.encode(
        {
            "iss": "multistream",
            "role": "broadcaster",
            "sid": a["session"]["id"],
            "iat": now - 100,
            "exp": now - 10,
        },
        secret,
        algorithm="HS256",
    )
    forged = jwt.encode(
        {
            "iss": "multistream",
            "role": "broadcaster",
            "sid": a["session"]["id"],
            "iat": now,
            "exp": now + 100,
        },
        "not-the-secret-" + "y" * 30,
        algorithm="HS256",
    )
    return {
        "sid": a["session"]["id"],
        "other_sid": b["session"]["id"],
        "tokens": {
            "broadcaster": a["broadcaster_token"],
            "other_broadcaster": b["broadcaster_token"],
            "viewer": viewer["viewer_token"],
            "expired": expired,
            "forged": forged,
            "garbage": "not.a.token",
            None: None,
        },
    }


def _raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


START = f"{PREFIX}/session/start"
PREFS = PREFIX + "/session/{sid}/preferences"

BAD_START_BODIES = [
    (b"{", "invalid_json"),
    (b'{"title": NaN}', "invalid_json"),
    (b'{"pricing": {"base": Infinity}}', "invalid_json"),
    (b'{"pricing": {"base": -Infinity}}', "invalid_json"),
    (b"[]", "invalid_json"),
    (b'"title"', "invalid_json"),
    (b"", "invalid_json"),
    (b'{"title": "a", "title": "b"}', "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b"[" * 100_000, "invalid_json"),
    ({"$where": "1"}, "forbidden_key"),
    ({"title": {"$ne": ""}}, "forbidden_key"),
    ({"pricing": {"addons": {"screen.x": 1}}}, "forbidden_key"),
    ({"title": ["x"]}, "invalid"),
    ({"title": "x" * 201}, "invalid"),
    ({"title": "bad\x00title"}, "invalid_text"),  # NUL: refused in any string of any body
    ({"streams": ["video"]}, "invalid"),
    ({"streams": []}, "invalid"),
    ({"streams": "screen"}, "invalid"),
    ({"streams": ["screen", "screen"]}, "invalid"),
    ({"pricing": {"base": -1}}, "invalid_amount"),
    ({"pricing": {"base": 10.5}}, "invalid_amount"),
    ({"pricing": {"base": 10**30}}, "invalid_amount"),
    ({"pricing": {"addons": {"screen": "100"}}}, "invalid_amount"),
    ({"pricing": {"bundle_discount_pct": 150}}, "invalid"),
    ({"pricing": {"base": 100}}, "pix_required"),
    (
        {
            "pricing": {
                "base": 500,
                "addons": {"screen": 1000, "camera": 700},
                "bundle_discount_pct": 50,
            },
            "pix": {"key": "dev@example.com", "merchant_name": "Ana", "merchant_city": "Recife"},
        },
        "bundle_cheaper",
    ),
    ({"quality": {"screen": {"fps": 60}}}, "invalid"),
    ({"quality": {"screen": {"fps": 15.5}}}, "invalid"),
    ({"quality": {"camera": {"preset": "2160p"}}}, "invalid"),
    ({"quality": {"screen": {"content_hint": "motion"}}}, "invalid"),
    ({"quality": {"audio": {}}}, "invalid"),
    ({"streams": ["camera"], "quality": {"screen": {}}}, "invalid"),
    ({"unknown": 1}, "invalid"),
    ({"pix": {"key": "k", "merchant_name": "n" * 40, "merchant_city": "c"}}, "invalid"),
]


@pytest.mark.parametrize(("body", "code"), BAD_START_BODIES, ids=lambda v: repr(v)[:40])
async def test_bad_start_bodies(server, api, world, body: Any, code: str) -> None:
    before = await snapshot(server.services.store)
    resp = await api.post(
        START,
        raw=_raw(body),
        headers={"Content-Type": "application/json"},
        token=api.broadcaster_token,
    )
    assert_error(resp, 400, code)
    assert await snapshot(server.services.store) == before


BAD_PREFS = [
    ({"pip": {"size_pct": 9}}, "invalid"),
    ({"pip": {"size_pct": 41}}, "invalid"),
    ({"pip": {"size_pct": 25.5}}, "invalid"),
    ({"pip": {"size_pct": "25"}}, "invalid"),
    ({"pip": {"corner": "middle"}}, "invalid"),
    ({"pip": "top-left"}, "invalid"),
    ({"mode": "pip"}, "invalid"),
    ({"enabled_streams": ["audio"]}, "invalid"),
    ({"enabled_streams": {"$in": ["screen"]}}, "forbidden_key"),
    ({"$set": {"mode": "composite"}}, "forbidden_key"),
    ({"viewer_id": "someone-else"}, "invalid"),
    (b'{"pip": {"size_pct": NaN}}', "invalid_json"),
]


@pytest.mark.parametrize(("body", "code"), BAD_PREFS, ids=lambda v: repr(v)[:40])
async def test_bad_preferences(server, api, world, body: Any, code: str) -> None:
    before = await snapshot(server.services.store)
    resp = await api.put(
        PREFS.format(sid=world["sid"]), raw=_raw(body), token=world["tokens"]["viewer"]
    )
    assert_error(resp, 400, code)
    assert await snapshot(server.services.store) == before


async def test_enabling_a_stream_the_session_lacks(server, api) -> None:
    r = (await api.post(START, {"streams": ["camera"]}, token=api.broadcaster_token)).json
    sid = r["session"]["id"]
    viewer = (await api.post(f"{PREFIX}/session/{sid}/join")).json
    before = await snapshot(server.services.store)
    resp = await api.put(
        PREFS.format(sid=sid), {"enabled_streams": ["screen"]}, token=viewer["viewer_token"]
    )
    assert_error(resp, 400, "unknown_stream")
    assert await snapshot(server.services.store) == before


AUTH_CASES = [
    # (method, path, body, token name, status, code)
    ("POST", "/session/{sid}/end", None, None, 401, "missing_token"),
    ("POST", "/session/{sid}/end", None, "garbage", 401, "invalid_token"),
    ("POST", "/session/{sid}/end", None, "forged", 401, "invalid_token"),
    ("POST", "/session/{sid}/end", None, "expired", 401, "token_expired"),
    ("POST", "/session/{sid}/end", None, "viewer", 403, "forbidden"),
    ("POST", "/session/{sid}/end", None, "other_broadcaster", 403, "forbidden"),
    ("POST", "/session/{sid}/streams/camera/stop", None, "viewer", 403, "forbidden"),
    ("POST", "/session/{sid}/streams/camera/stop", None, "other_broadcaster", 403, "forbidden"),
    ("POST", "/session/{sid}/streams/screen/start", None, None, 401, "missing_token"),
    ("PUT", "/session/{sid}/preferences", {"mode": "composite"}, None, 401, "missing_token"),
    ("PUT", "/session/{sid}/preferences", {"mode": "composite"}, "broadcaster", 403, "forbidden"),
    ("PUT", "/session/{other}/preferences", {"mode": "composite"}, "viewer", 403, "forbidden"),
    ("GET", "/session/{other}/preferences", None, "viewer", 403, "forbidden"),
    ("POST", "/session/{sid}/join", None, "forged", 401, "invalid_token"),
    ("POST", "/{sid}/stop", None, "viewer", 403, "forbidden"),
]


@pytest.mark.parametrize(("method", "path", "body", "token", "status", "code"), AUTH_CASES)
async def test_auth(server, api, world, method, path, body, token, status, code) -> None:
    before = await snapshot(server.services.store)
    resp = await api.request(
        method,
        PREFIX + path.format(sid=world["sid"], other=world["other_sid"]),
        body,
        token=world["tokens"][token],
    )
    assert_error(resp, status, code)
    assert await snapshot(server.services.store) == before


async def test_malformed_authorization_header(server, api, world) -> None:
    before = await snapshot(server.services.store)
    resp = await api.post(
        f"{PREFIX}/session/{world['sid']}/end", headers={"Authorization": "Basic dXNlcjpwYXNz"}
    )
    assert_error(resp, 401, "invalid_token")
    assert await snapshot(server.services.store) == before


NOT_FOUND = [
    ("GET", "/session/ses_doesnotexist/status"),
    ("POST", "/session/ses_doesnotexist/join"),
    ("GET", "/session/%24ne/status"),
    ("GET", "/session/" + "a" * 65 + "/status"),
    ("GET", "/ses_doesnotexist"),
    ("GET", "/no/such/route/at/all"),
]


@pytest.mark.parametrize(("method", "path"), NOT_FOUND)
async def test_unknown_ids(server, api, world, method, path) -> None:
    before = await snapshot(server.services.store)
    assert_error(await api.request(method, PREFIX + path), 404)
    assert await snapshot(server.services.store) == before


async def test_unknown_stream_kind(server, api, world) -> None:
    before = await snapshot(server.services.store)
    resp = await api.post(
        f"{PREFIX}/session/{world['sid']}/streams/audio/start", token=world["tokens"]["broadcaster"]
    )
    assert_error(resp, 404, "stream_not_found")
    assert await snapshot(server.services.store) == before


async def test_body_over_limit_is_413(server, api, world) -> None:
    before = await snapshot(server.services.store)
    big = json.dumps({"title": "x" * (server.services.settings.max_body_bytes + 10)}).encode()
    assert_error(
        await api.post(START, raw=big, token=api.broadcaster_token), 413, "payload_too_large"
    )
    assert await snapshot(server.services.store) == before


async def test_controls_on_ended_session_conflict(server, api, world) -> None:
    tokens = world["tokens"]
    await api.post(f"{PREFIX}/session/{world['sid']}/end", token=tokens["broadcaster"])
    before = await snapshot(server.services.store)
    resp = await api.post(
        f"{PREFIX}/session/{world['sid']}/streams/camera/start", token=tokens["broadcaster"]
    )
    assert_error(resp, 409, "session_ended")
    resp = await api.put(
        PREFS.format(sid=world["sid"]), {"mode": "composite"}, token=tokens["viewer"]
    )
    assert_error(resp, 409, "session_ended")
    assert await snapshot(server.services.store) == before


async def test_the_server_survives_all_of_it(api, world) -> None:
    """After garbage, the API still answers normally."""
    for body in BAD_START_BODIES:
        await api.post(START, raw=_raw(body[0]), token=api.broadcaster_token)
    assert (await api.post(START, FREE_BODY, token=api.broadcaster_token)).status == 201
