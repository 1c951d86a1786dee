"""Helpers for API tests: a standard session body and a snapshot of everything stored."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from server.errors import Conflict
from server.services import Services
from store.protocol import QUERY_FIELDS, Doc, Store

PREFIX = "/api/v1/livestream"
ACCOUNT_PREFIX = "/api/v1/account"

START_BODY: dict[str, Any] = {
    "title": "Refactoring live",
    "streams": ["screen", "camera"],
    "pricing": {"base": 500, "addons": {"screen": 1000, "camera": 700}, "bundle_discount_pct": 15},
    "quality": {
        "screen": {"preset": "1080p", "fps": 15, "content_hint": "text"},
        "camera": {"preset": "720p", "fps": 30},
    },
    "pix": {"key": "dev@example.com", "merchant_name": "Ana Dev", "merchant_city": "Sao Paulo"},
}

FREE_BODY: dict[str, Any] = {"title": "Free session", "streams": ["screen", "camera"]}
BROADCASTER = "broadcaster"


async def make_broadcaster(services: Services, username: str = BROADCASTER) -> tuple[Doc, str]:
    """A token-only broadcaster account (made once per store; no argon2 cost) and a new API token
    for it: what every test that starts a session authenticates with."""
    try:
        user = await services.accounts.create_user(username, None)
    except Conflict:
        user = await services.accounts.by_username(username)
    _, token = await services.accounts.issue_token(user, "tests")
    return user, token


# Lease fields the owner's heartbeat rewrites every few seconds whatever the requests do
# (`server.ownership`); who holds a lease, since when and in which epoch stay in the snapshot.
_HEARTBEAT_FIELDS = {"session_leases": ("expires_at", "cpu", "peers", "v")}
# Written by the heartbeat alone, from the connections open at that moment (`cluster_presence`).
_HEARTBEAT_COLLECTIONS = {"session_viewers", "instances"}


async def snapshot(store: Store) -> str:
    """Every document of every collection, canonically serialised: equal snapshots = nothing written
    (by requests: the lease heartbeat's renewal fields are left out)."""
    out = {}
    for collection in QUERY_FIELDS:
        if collection in _HEARTBEAT_COLLECTIONS:
            continue
        docs = await store.find(collection, limit=100_000)  # type: ignore[arg-type]
        volatile = _HEARTBEAT_FIELDS.get(collection, ())
        docs = [{k: v for k, v in d.items() if k not in volatile} for d in docs]
        out[collection] = sorted(json.dumps(d, sort_keys=True) for d in docs)
    return json.dumps(out, sort_keys=True)


def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The status and the JSON error body, both."""
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json
    assert set(body) == {"error"}
    err = body["error"]
    assert err["status"] == status
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


WEB_PASSWORD = "correct horse battery"


async def web_broadcaster(client: Any, username: str = BROADCASTER) -> str:
    """The zero-setup path over HTTP, for servers running in other processes: sign up (the first
    visitor of a fresh server may), or log in when the account exists, then make an API token with
    the log-in cookie. Sets and returns `client.broadcaster_token`."""
    origin = {"Origin": client.base_url}
    body = {"username": username, "password": WEB_PASSWORD}
    resp = await client.post("/api/v1/auth/signup", body, headers=origin)
    if resp.status == 403:
        resp = await client.post("/api/v1/auth/login", body, headers=origin)
    assert resp.status in (200, 201), resp.body
    cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
    made = await client.post(
        "/api/v1/account/tokens", {"name": "tests"}, headers={**origin, "Cookie": cookie}
    )
    assert made.status == 201, made.body
    client.broadcaster_token = made.json["secret"]
    return str(client.broadcaster_token)


async def login_cookie(server: Any, username: str = "web-user") -> dict[str, str]:
    """Headers of a logged-in browser (the log-in cookie and this site's Origin) for a password
    account made on `server`'s services."""
    accounts = server.services.accounts
    with contextlib.suppress(Conflict):
        await accounts.create_user(username, WEB_PASSWORD)
    origin = {"Origin": server.base_url}
    resp = await server.client.post(
        "/api/v1/auth/login", {"username": username, "password": WEB_PASSWORD}, headers=origin
    )
    assert resp.status == 200, resp.body
    return {**origin, "Cookie": resp.headers["Set-Cookie"].split(";", 1)[0]}
