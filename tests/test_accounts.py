"""Broadcaster accounts over the real app: zero-setup sign-up, log-in cookies, CSRF, the log-in rate
limit, API tokens, and "starting a session needs a broadcaster" (SQLite and MongoDB)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from server.settings import Settings
from tests.api_helpers import (
    FREE_BODY,
    PREFIX,
    START_BODY,
    WEB_PASSWORD,
    assert_error,
    login_cookie,
    snapshot,
)
from tests.conftest import RunningServer, serve

pytestmark = pytest.mark.store_backends
AUTH = "/api/v1/auth"
ACCOUNT = "/api/v1/account"


@pytest.fixture
async def fresh(services: Any) -> AsyncIterator[RunningServer]:
    """A server with no account at all: what `multistream serve` is on its first start."""
    async with serve(services, broadcaster=False) as srv:
        yield srv


def _origin(srv: RunningServer) -> dict[str, str]:
    return {"Origin": srv.base_url}


def _cookie(resp: Any) -> dict[str, str]:
    return {"Cookie": resp.headers["Set-Cookie"].split(";", 1)[0]}


async def test_first_visitor_creates_the_account_then_sign_up_closes(fresh) -> None:
    api = fresh.client
    state = (await api.get(f"{AUTH}/state")).json
    assert state == {"user": None, "signup_open": True}
    body = {"username": "Ana.Dev", "password": WEB_PASSWORD, "display_name": "Ana Dev"}
    resp = await api.post(f"{AUTH}/signup", body, headers=_origin(fresh))
    assert resp.status == 201, resp.body
    user = resp.json["user"]
    assert user["username"] == "ana.dev" and user["display_name"] == "Ana Dev"
    cookie = resp.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain HTTP on loopback; Secure behind HTTPS
    # Stored: an argon2id hash, never the password.
    stored = (await fresh.services.store.find("users", {"username": "ana.dev"}))[0]
    assert stored["password_hash"].startswith("$argon2id$")
    assert WEB_PASSWORD not in await snapshot(fresh.services.store)
    logged = (await api.get(f"{AUTH}/state", headers=_cookie(resp))).json
    assert logged["user"]["id"] == user["id"] and logged["signup_open"] is False
    # The second visitor cannot: accounts now come from the operator.
    before = await snapshot(fresh.services.store)
    again = await api.post(
        f"{AUTH}/signup", {"username": "mallory", "password": "x" * 12}, headers=_origin(fresh)
    )
    assert_error(again, 403, "signup_closed")
    assert await snapshot(fresh.services.store) == before


async def test_open_sign_up_refuses_taken_names(settings: Settings) -> None:
    from tests.conftest import running

    async with running(replace(settings, signup="open")) as srv:
        first = await srv.client.post(
            f"{AUTH}/signup", {"username": "bia", "password": "x" * 8}, headers=_origin(srv)
        )
        assert first.status == 201
        taken = await srv.client.post(
            f"{AUTH}/signup", {"username": "BIA", "password": "y" * 8}, headers=_origin(srv)
        )
        assert_error(taken, 409, "username_taken")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"username": "ab", "password": "x" * 8}, "invalid_username"),
        ({"username": "a b c", "password": "x" * 8}, "invalid_username"),
        ({"username": "ana", "password": "short"}, "invalid_password"),
        ({"username": "ana", "password": "x" * 8, "admin": True}, "invalid"),
    ],
)
async def test_bad_sign_ups_are_400_and_write_nothing(fresh, body, code) -> None:
    before = await snapshot(fresh.services.store)
    assert_error(await fresh.client.post(f"{AUTH}/signup", body, headers=_origin(fresh)), 400, code)
    assert await snapshot(fresh.services.store) == before


async def test_log_in_and_out(server) -> None:
    api = server.client
    headers = await login_cookie(server, "carla")
    me = await api.get(ACCOUNT, headers=headers)
    assert me.status == 200 and me.json["user"]["username"] == "carla"
    for body in (
        {"username": "carla", "password": "wrong password"},
        {"username": "nobody", "password": WEB_PASSWORD},
        {"username": "x", "password": ""},
    ):
        resp = await api.post(f"{AUTH}/login", body, headers=_origin(server))
        assert_error(resp, 401, "bad_credentials")  # one answer: no hint which part was wrong
    out = await api.post(f"{AUTH}/logout", {}, headers=headers)
    assert out.status == 200 and "ms_login=;" in out.headers["Set-Cookie"].replace('""', "")
    assert_error(await api.get(ACCOUNT, headers=headers), 401, "invalid_token")  # revoked


async def test_token_only_accounts_cannot_log_in(server) -> None:
    # The test broadcaster `serve` made has no password (scripts only).
    body = {"username": "broadcaster", "password": WEB_PASSWORD}
    assert_error(
        await server.client.post(f"{AUTH}/login", body, headers=_origin(server)),
        401,
        "bad_credentials",
    )


async def test_cookie_writes_need_this_sites_origin(server) -> None:
    """CSRF: a logged-in write without `Origin`, or from another site, changes nothing."""
    api = server.client
    headers = await login_cookie(server)
    cookie = {"Cookie": headers["Cookie"]}
    before = await snapshot(server.services.store)
    for bad in (cookie, {**cookie, "Origin": "https://evil.example"}, {**cookie, "Origin": "null"}):
        resp = await api.post(f"{PREFIX}/session/start", FREE_BODY, headers=bad)
        assert_error(resp, 403, "csrf_refused")
        assert_error(await api.post(f"{ACCOUNT}/tokens", {}, headers=bad), 403, "csrf_refused")
    assert await snapshot(server.services.store) == before
    # Reads need no Origin; the same write from the site's own page works.
    assert (await api.get(ACCOUNT, headers=cookie)).status == 200
    started = await api.post(f"{PREFIX}/session/start", FREE_BODY, headers=headers)
    assert started.status == 201, started.body
    session = started.json["session"]
    assert session["owner_name"] == "web-user"
    stored = await server.services.store.get("broadcast_sessions", session["id"])
    assert stored["owner_id"] == (await api.get(ACCOUNT, headers=cookie)).json["user"]["id"]


async def test_starting_a_session_needs_a_broadcaster(server, api) -> None:
    before = await snapshot(server.services.store)
    assert_error(await api.post(f"{PREFIX}/session/start", FREE_BODY), 401, "login_required")
    assert_error(await api.post(f"{PREFIX}/start", {"title": "old"}), 401, "login_required")
    bad = await api.post(f"{PREFIX}/session/start", FREE_BODY, token="ms_not-a-token")
    assert_error(bad, 401, "invalid_token")
    assert await snapshot(server.services.store) == before
    # A session token is not an account: it cannot start more sessions.
    started = await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
    assert started.status == 201
    session_token = started.json["broadcaster_token"]
    resp = await api.post(f"{PREFIX}/session/start", FREE_BODY, token=session_token)
    assert_error(resp, 401, "login_required")
    legacy = await api.post(f"{PREFIX}/start", {"title": "old"}, token=api.broadcaster_token)
    assert legacy.status == 201 and legacy.json["token"]


async def test_api_tokens_control_only_their_owners_sessions(server, api) -> None:
    started = await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
    sid = started.json["session"]["id"]
    # The owner's API token works where the session token does.
    stop = await api.post(
        f"{PREFIX}/session/{sid}/streams/camera/stop", token=api.broadcaster_token
    )
    assert stop.status == 200 and stop.json["stream"]["status"] == "stopped"
    # Another broadcaster's token does not.
    other = await server.services.accounts.create_user("other", None)
    _, other_token = await server.services.accounts.issue_token(other, "x")
    resp = await api.post(f"{PREFIX}/session/{sid}/end", token=other_token)
    assert_error(resp, 403, "not_owner")
    ended = await api.post(f"{PREFIX}/session/{sid}/end", token=api.broadcaster_token)
    assert ended.status == 200 and ended.json["session"]["status"] == "ended"


async def test_token_lifecycle_and_disabled_accounts(server) -> None:
    api = server.client
    headers = await login_cookie(server)
    made = await api.post(f"{ACCOUNT}/tokens", {"name": "OBS"}, headers=headers)
    assert made.status == 201
    secret, token = made.json["secret"], made.json["token"]
    assert secret.startswith("ms_") and token["name"] == "OBS"
    listed = (await api.get(f"{ACCOUNT}/tokens", token=secret)).json["tokens"]
    assert [t["id"] for t in listed] == [token["id"]]
    assert secret not in str(await server.services.store.find("api_tokens"))  # only its hash
    started = await api.post(f"{PREFIX}/session/start", FREE_BODY, token=secret)
    assert started.status == 201
    # Disabled: every secret of the account stops at once.
    await server.services.accounts.set_disabled("web-user", True)
    assert_error(await api.get(ACCOUNT, token=secret), 401, "account_disabled")
    assert_error(await api.get(ACCOUNT, headers=headers), 401, "account_disabled")
    resp = await api.post(
        f"{AUTH}/login", {"username": "web-user", "password": WEB_PASSWORD}, headers=_origin(server)
    )
    assert_error(resp, 403, "account_disabled")
    await server.services.accounts.set_disabled("web-user", False)
    revoked = await api.request("DELETE", f"{ACCOUNT}/tokens/{token['id']}", headers=headers)
    assert revoked.status == 200
    assert_error(await api.get(ACCOUNT, token=secret), 401, "invalid_token")
    again = await api.request("DELETE", f"{ACCOUNT}/tokens/{token['id']}", headers=headers)
    assert_error(again, 404, "token_not_found")


async def test_saved_pix_receiver_is_validated_once_and_reused(server, api) -> None:
    headers = await login_cookie(server)
    bad = {"key": "not a key", "merchant_name": "Ana", "merchant_city": "Sao Paulo"}
    before = await snapshot(server.services.store)
    assert_error(await api.put(f"{ACCOUNT}/pix", {"pix": bad}, headers=headers), 400)
    assert await snapshot(server.services.store) == before
    saved = await api.put(f"{ACCOUNT}/pix", {"pix": START_BODY["pix"]}, headers=headers)
    assert saved.status == 200 and saved.json["pix"]["key"] == "dev@example.com"
    priced = {k: v for k, v in START_BODY.items() if k != "pix"}
    started = await api.post(f"{PREFIX}/session/start", priced, headers=headers)
    assert started.status == 201, started.body
    assert started.json["session"]["pix"]["merchant_name"] == "Ana Dev"
    # Cleared: a priced start without a receiver is refused again.
    await api.put(f"{ACCOUNT}/pix", {"pix": None}, headers=headers)
    resp = await api.post(f"{PREFIX}/session/start", priced, headers=headers)
    assert_error(resp, 400, "pix_required")


async def test_log_in_is_rate_limited_per_address_and_per_account(settings: Settings) -> None:
    from tests.conftest import running

    async with running(replace(settings, rate_login=(3, 1))) as srv:
        api, origin = srv.client, _origin(srv)
        for _ in range(3):
            body = {"username": "broadcaster", "password": "guess"}
            assert_error(await api.post(f"{AUTH}/login", body, headers=origin), 401)
        resp = await api.post(
            f"{AUTH}/login", {"username": "broadcaster", "password": "guess"}, headers=origin
        )
        assert_error(resp, 429, "rate_limited")
        assert int(resp.headers["Retry-After"]) >= 1

    # Guesses spread over many addresses still meet the account's own bucket.
    proxied = replace(settings, rate_login=(3, 1), trusted_proxy_header="X-Forwarded-For")
    async with running(proxied) as srv:
        body = {"username": "spread", "password": "guess"}
        for i in range(3):
            hdrs = {**_origin(srv), "X-Forwarded-For": f"192.0.2.{i}"}
            assert_error(await srv.client.post(f"{AUTH}/login", body, headers=hdrs), 401)
        hdrs = {**_origin(srv), "X-Forwarded-For": "192.0.2.99"}
        assert_error(await srv.client.post(f"{AUTH}/login", body, headers=hdrs), 429)
        other = {"username": "someone-else", "password": "guess"}
        assert_error(await srv.client.post(f"{AUTH}/login", other, headers=hdrs), 401)
