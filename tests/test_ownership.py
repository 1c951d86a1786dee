"""Ownership leases (`server.ownership`): settings, take-over after expiry, release, loss, and what
operators see in the status and `/metrics` -- on a real SQLite store shared by two `Ownership`s
standing for two instances, with a clock the test moves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.ownership import Ownership
from server.settings import Settings
from store.sqlite import SqliteStore
from tests.api_helpers import PREFIX
from tests.media_helpers import start_session
from tests.test_ops import samples


def test_lease_settings_defaults_and_validation() -> None:
    s = Settings.from_env({})
    assert (s.lease_ttl_s, s.lease_heartbeat_s, s.internal_url) == (8.0, 2.0, "")
    s = Settings.from_env(
        {"MULTISTREAM_LEASE_TTL": "3", "MULTISTREAM_INTERNAL_URL": "http://10.0.0.5:8080/"}
    )
    # A short lease alone brings the heartbeat down with it (a third of the lease).
    assert (s.lease_ttl_s, s.lease_heartbeat_s, s.internal_url) == (
        3.0,
        1.0,
        "http://10.0.0.5:8080",
    )
    bad = (
        {"MULTISTREAM_LEASE_TTL": "0.5"},
        {"MULTISTREAM_LEASE_TTL": "nan"},
        {"MULTISTREAM_LEASE_TTL": "ten"},
        {"MULTISTREAM_LEASE_TTL": "10", "MULTISTREAM_LEASE_HEARTBEAT": "4"},
        {"MULTISTREAM_INTERNAL_URL": "10.0.0.5:8080"},
    )
    for env in bad:
        with pytest.raises(ValueError, match="MULTISTREAM_"):
            Settings.from_env(env)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _live_session(store: SqliteStore, sid: str, owner: str) -> None:
    await store.insert(
        "broadcast_sessions",
        {"id": sid, "status": "live", "instance_id": owner, "signaling_url": ""},
    )


async def test_takeover_after_expiry_release_and_loss(tmp_path: Path) -> None:
    clock = Clock()
    stores = [SqliteStore(tmp_path / "shared.sqlite3") for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        a, b = (
            Ownership(
                store,
                Settings(instance_id=name, lease_ttl_s=10, public_url=f"https://{name}.example"),
                peers=lambda: 3,
                clock=clock,
            )
            for store, name in zip(stores, ("inst-a", "inst-b"), strict=True)
        )
        a.address, b.address = "http://a:1", "http://b:1"
        lost: list[str] = []

        async def on_lost(sid: str) -> None:
            lost.append(sid)

        a.on_lost = on_lost
        await _live_session(stores[0], "ses1", "inst-a")
        assert (await a.claim("ses1"))["holder"] == "inst-a"
        # B forwards to A while A's lease runs; A serves locally.
        assert await b.route("ses1") == "http://a:1"
        assert await a.route("ses1") is None
        owner = await b.describe("ses1")
        assert owner is not None
        assert (owner["instance_id"], owner["epoch"], owner["peers"]) == ("inst-a", 1, 3)
        assert owner["answered_by"] == "inst-b" and owner["expires_in_s"] == 10

        # A stops renewing (a crash): past the lease, the first instance asked takes over, and
        # the session now names it (SessionSync replays control writes to `instance_id`).
        clock.now += 9.9
        assert await b.route("ses1") == "http://a:1"
        clock.now += 0.2
        assert await b.route("ses1") is None
        assert "ses1" in b.held
        session = await stores[1].get("broadcast_sessions", "ses1")
        assert session is not None
        assert (session["instance_id"], session["signaling_url"]) == (
            "inst-b",
            "https://inst-b.example",
        )
        # A, back, learns at its next heartbeat that it lost the lease: its media must stop.
        await a.renew()
        assert lost == ["ses1"] and "ses1" not in a.held
        assert await a.route("ses1") == "http://b:1"

        # A release (drain) hands over without waiting for the lease.
        assert await b.release_all() == 1
        assert await b.describe("ses1") is None
        assert await a.route("ses1") is None
        assert (await a.describe("ses1") or {}).get("epoch") == 3

        # An ended session's lease goes at the next heartbeat; nobody takes an ended session.
        await stores[0].update("broadcast_sessions", "ses1", {"status": "ended"})
        await a.renew()
        assert a.held == {} and await a.describe("ses1") is None
        assert await b.route("ses1") is None and b.held == {}
    finally:
        for store in stores:
            await store.close()


async def test_status_and_metrics_show_the_owner(server, api) -> None:
    started = await start_session(api)
    sid = started["session"]["id"]
    status = (await api.get(f"{PREFIX}/session/{sid}/status")).json
    owner = status["owner"]
    assert owner["instance_id"] == "test-instance" == owner["answered_by"]
    assert owner["epoch"] == 1 and 0 < owner["expires_in_s"] <= 8
    assert owner["peers"] == 0 and owner["cpu"] >= 0
    values = samples((await api.get("/metrics")).body.decode())
    owned = [v for (name, _), v in values.items() if name == "multistream_sessions_owned"]
    assert owned == [1.0]
    assert 0 < values[("multistream_lease_min_expires_in_seconds", ())] <= 8
    assert ("multistream_instance_cpu", ()) in values
    # Ending the session releases its lease at once.
    end = await api.post(f"{PREFIX}/session/{sid}/end", token=started["broadcaster_token"])
    assert end.status == 200
    await asyncio.sleep(0)
    assert (await api.get(f"{PREFIX}/session/{sid}/status")).json["owner"] is None
    values = samples((await api.get("/metrics")).body.decode())
    assert [v for (name, _), v in values.items() if name == "multistream_sessions_owned"] == [0.0]
