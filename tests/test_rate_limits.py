"""Rate limits on anonymous and expensive writes, and a session list that cannot be flooded
(issue 10.3): per-client token buckets kept in the store, 429 JSON with Retry-After, changing
nothing; a trusted proxy header only when configured; limits shared by instances on one store;
`GET /sessions` paginated by cursor so every live session stays reachable."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import tornado.websocket

from server.ratelimit import client_address
from tests.api_helpers import FREE_BODY, PREFIX, START_BODY, assert_error, snapshot, web_broadcaster
from tests.conftest import Client, make_settings, running
from tests.ops_helpers import start_server
from tests.test_payments import callback, signed

WEBHOOK = "/api/v1/payments/pix/webhook"
ONE_PER_MINUTE = 1  # per-minute refill in these tests: the next token is 60 s away


def assert_limited(resp: Any, wait_s: int = 60) -> None:
    assert_error(resp, 429, "rate_limited")
    assert resp.headers["Retry-After"] == str(wait_s)


async def test_session_start_is_limited_and_a_refusal_writes_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rate_session_start=(3, ONE_PER_MINUTE))
    async with running(settings) as srv:
        api = srv.client
        for _ in range(2):
            assert (
                await api.post(f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token)
            ).status == 201
        # The legacy start spends from the same bucket.
        assert (
            await api.post(f"{PREFIX}/start", {"title": "old"}, token=api.broadcaster_token)
        ).status == 201
        before = await snapshot(srv.services.store)
        assert_limited(
            await api.post(f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token)
        )
        assert_limited(
            await api.post(f"{PREFIX}/start", {"title": "old"}, token=api.broadcaster_token)
        )
        assert await snapshot(srv.services.store) == before


async def test_join_is_limited_so_anonymous_joins_cannot_pile_up_rows(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rate_join=(5, ONE_PER_MINUTE))
    async with running(settings) as srv:
        api, store = srv.client, srv.services.store
        sid = (
            await api.post(f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token)
        ).json["session"]["id"]
        for _ in range(5):
            assert (await api.post(f"{PREFIX}/session/{sid}/join")).status == 200
        before = await snapshot(store)
        for _ in range(20):
            assert_limited(await api.post(f"{PREFIX}/session/{sid}/join"))
        assert await snapshot(store) == before
        assert await store.count("viewer_preferences") == 5
        assert await store.count("orders") == 5
        text = (await api.get("/metrics")).body.decode()
        assert 'multistream_rate_limited_total{action="join"} 20.0' in text


async def test_signaling_offers_are_limited_over_http_and_websocket(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rate_offer=(2, ONE_PER_MINUTE))
    async with running(settings) as srv:
        api = srv.client
        started = (
            await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
        ).json
        sid = started["session"]["id"]
        screen = next(s["id"] for s in started["session"]["streams"] if s["kind"] == "screen")
        token = (await api.post(f"{PREFIX}/session/{sid}/join")).json["viewer_token"]
        offer = f"{PREFIX}/stream/{screen}/signal/offer"
        # Two offers (malformed ones are cheap and spend a token all the same) ...
        assert_error(await api.post(offer, {"sdp": "nonsense"}, token=token), 400)
        assert_error(
            await api.post(
                f"{PREFIX}/session/{sid}/composite/signal/offer", {"sdp": "x"}, token=token
            ),
            409,
        )
        before = await snapshot(srv.services.store)
        # ... then the limit, on both HTTP routes and on the WebSocket.
        assert_limited(await api.post(offer, {"sdp": "nonsense"}, token=token))
        assert_limited(
            await api.post(
                f"{PREFIX}/session/{sid}/composite/signal/offer", {"sdp": "x"}, token=token
            )
        )
        ws = await tornado.websocket.websocket_connect(
            f"ws://127.0.0.1:{srv.port}{PREFIX}/stream/{screen}/signal/ws?access_token={token}"
        )
        try:
            ws.write_message(json.dumps({"type": "offer", "sdp": "nonsense"}))
            msg = json.loads(await asyncio.wait_for(ws.read_message(), 10))  # type: ignore[arg-type]
            assert msg["type"] == "error" and msg["retry_after"] == 60
            assert msg["error"]["status"] == 429 and msg["error"]["code"] == "rate_limited"
        finally:
            ws.close()
        assert await snapshot(srv.services.store) == before
        assert srv.services.media.counters()["peer_connections"] == 0


async def test_webhook_is_limited_before_its_signature_is_checked(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rate_webhook=(2, ONE_PER_MINUTE))
    async with running(settings) as srv:
        api = srv.client
        body = signed(callback("NoSuchTxid", "1.00"))  # answered 200, changes nothing
        for _ in range(2):
            assert (await api.post(WEBHOOK, **body)).status == 200
        before = await snapshot(srv.services.store)
        assert_limited(await api.post(WEBHOOK, **body))
        assert_limited(await api.post(WEBHOOK, raw=b"{}", headers={"X-Pix-Signature": "bad"}))
        assert await snapshot(srv.services.store) == before


async def test_forwarded_header_is_ignored_unless_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rate_join=(2, ONE_PER_MINUTE))
    async with running(settings) as srv:
        api = srv.client
        sid = (
            await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
        ).json["session"]["id"]
        path = f"{PREFIX}/session/{sid}/join"
        for i in range(2):
            hdr = {"X-Forwarded-For": f"10.0.0.{i}"}
            assert (await api.post(path, headers=hdr)).status == 200
        # A client cannot pick a fresh address by sending the header itself.
        assert_limited(await api.post(path, headers={"X-Forwarded-For": "10.0.0.99"}))


async def test_trusted_proxy_header_separates_clients_when_configured(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data", rate_join=(2, ONE_PER_MINUTE), trusted_proxy_header="X-Forwarded-For"
    )
    async with running(settings) as srv:
        api = srv.client
        sid = (
            await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
        ).json["session"]["id"]
        path = f"{PREFIX}/session/{sid}/join"

        async def join_as(xff: str) -> Any:
            return await api.post(path, headers={"X-Forwarded-For": xff})

        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            assert (await join_as(ip)).status == 200
        # The proxy appends the address it saw: earlier entries are the client's to forge.
        assert (await join_as("6.6.6.6, 10.0.0.1")).status == 200
        assert_limited(await join_as("7.7.7.7, 10.0.0.1"))
        assert (await join_as("10.0.0.2")).status == 200
        assert_limited(await join_as("10.0.0.2"))


def test_client_address() -> None:
    plain = make_settings(Path("/nonexistent"))
    proxied = make_settings(Path("/nonexistent"), trusted_proxy_header="X-Real-IP")
    assert client_address("192.0.2.7", {"X-Real-IP": "198.51.100.1"}, plain) == "192.0.2.7"
    assert client_address("192.0.2.7", {"X-Real-IP": "198.51.100.1"}, proxied) == "198.51.100.1"
    assert client_address("192.0.2.7", {}, proxied) == "192.0.2.7"
    # One IPv6 host usually holds a /64: limited as one client; v4-mapped is the v4 address.
    a = client_address("2001:db8:1:2:aaaa::1", {}, plain)
    assert a == client_address("2001:db8:1:2:bbbb::9", {}, plain) == "2001:db8:1:2::/64"
    assert client_address("::ffff:192.0.2.7", {}, plain) == "192.0.2.7"


@pytest.mark.timeout(120)
async def test_limit_is_shared_by_two_instances_on_one_sqlite_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared.sqlite3"
    env = {
        "MULTISTREAM_STORE": f"sqlite:///{shared}",
        "MULTISTREAM_TOKEN_SECRET": "rate-limit-shared-secret-" + "r" * 24,
        "MULTISTREAM_RATE_JOIN": "4/1",
        "MULTISTREAM_DRAIN_DEADLINE": "0",
        "MULTISTREAM_RECORD": "0",
    }
    procs = []
    try:
        for name in ("a", "b"):
            procs.append(
                start_server(
                    tmp_path / name,
                    tmp_path / f"{name}.log",
                    {**env, "MULTISTREAM_INSTANCE_ID": f"inst-{name}"},
                )
            )
        a, b = Client(procs[0].base_url), Client(procs[1].base_url)
        await web_broadcaster(a)
        sid = (await a.post(f"{PREFIX}/session/start", FREE_BODY, token=a.broadcaster_token)).json[
            "session"
        ]["id"]
        path = f"{PREFIX}/session/{sid}/join"
        # Alternating instances: four joins in all, then both refuse.
        for client in (a, b, a, b):
            assert (await client.post(path)).status == 200
        assert_limited(await a.post(path))
        assert_limited(await b.post(path))
    finally:
        for proc in procs:
            assert proc.stop() == 0


async def test_session_list_pages_reach_every_live_session(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path / "data")) as srv:
        api = srv.client
        first = (
            await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
        ).json["session"]["id"]
        # A flood of newer sessions (what 100 anonymous starts did to the old, capped list).
        flood = [
            (
                await api.post(
                    f"{PREFIX}/session/start", {"title": f"spam {i}"}, token=api.broadcaster_token
                )
            ).json["session"]["id"]
            for i in range(120)
        ]
        default = (await api.get(f"{PREFIX}/sessions")).json
        assert len(default["sessions"]) == 100 and default["next"]
        assert first not in {s["id"] for s in default["sessions"]}

        seen: list[str] = []
        cursor = None
        while True:
            q = "?limit=37" + (f"&cursor={cursor}" if cursor else "")
            page = await api.get(f"{PREFIX}/sessions{q}")
            assert page.status == 200, page.body
            seen += [s["id"] for s in page.json["sessions"]]
            cursor = page.json["next"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 121
        assert set(seen) == {first, *flood}
        assert seen[-1] == first  # newest first

        for bad in ("?limit=0", "?limit=101", "?limit=x"):
            assert_error(await api.get(f"{PREFIX}/sessions{bad}"), 400, "invalid_limit")
        for bad in ("nope", "e30", "W10", "WyJhIl0", "%00"):
            assert_error(await api.get(f"{PREFIX}/sessions?cursor={bad}"), 400, "invalid_cursor")


async def test_whip_and_whep_offers_spend_the_offer_bucket(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rate_offer=(2, ONE_PER_MINUTE))
    sdp = {"Content-Type": "application/sdp"}
    async with running(settings) as srv:
        api = srv.client
        started = (
            await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
        ).json
        sid, token = started["session"]["id"], started["broadcaster_token"]
        viewer = (await api.post(f"{PREFIX}/session/{sid}/join")).json["viewer_token"]
        # Malformed offers are cheap to refuse but spend a token all the same.
        assert_error(
            await api.post(f"/api/v1/whip/{sid}/screen", raw=b"x", token=token, headers=sdp), 400
        )
        assert_error(
            await api.post(f"/api/v1/whep/{sid}/screen", raw=b"x", token=viewer, headers=sdp), 400
        )
        before = await snapshot(srv.services.store)
        for path, who in (
            (f"/api/v1/whip/{sid}/screen", token),
            (f"/api/v1/whep/{sid}/camera", viewer),
            (f"/api/v1/whep/{sid}/composite", viewer),
        ):
            assert_limited(await api.post(path, raw=b"x", token=who, headers=sdp))
        assert await snapshot(srv.services.store) == before
        assert srv.services.media.counters()["peer_connections"] == 0
