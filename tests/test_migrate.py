"""`migrate_legacy`: legacy `livestreams` become sessions with one camera stream, exactly once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _store_backends import BACKENDS, Backend, backend_fixture

from server.clock import parse_iso
from server.migrate import MigrationResult, migrate_legacy, session_id_for, stream_id_for
from store import Store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from backend_fixture(request, tmp_path)


LEGACY: list[dict[str, Any]] = [
    {
        "id": "live1",
        "title": "Aula de cálculo",
        "status": "live",
        "created_at": "2025-03-01T12:00:00Z",
        "price_centavos": 990,
    },
    {
        "id": "ended1",
        "title": "Old show",
        "status": "ended",
        "created_at": "2025-02-01T10:00:00.123456+00:00",
        "ended_at": "2025-02-01T11:30:00-03:00",
        "resolution": "480p",
        "pix": {"key": "a@b.c", "merchant_name": "Loja", "merchant_city": "Recife"},
    },
    {"id": "bare"},  # every optional field missing
    {"id": "epoch", "status": "STOPPED", "created_at": 1735689600, "ended_at": 1735693200000},
    {"id": "old id with spaces", "title": "   ", "status": "failed", "created_at": "2025-01-01"},
]


async def seed(store: Store, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        await store.insert("livestreams", doc)


async def migrated(store: Store) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sessions = await store.find("broadcast_sessions", limit=1000)
    streams = await store.find("broadcast_streams", limit=1000)
    return sessions, streams


def test_converts_each_legacy_livestream_into_a_session_and_a_camera_stream(
    backend: Backend,
) -> None:
    async def body(store: Store) -> None:
        await seed(store, LEGACY)
        result = await migrate_legacy(store, batch_size=10)
        assert (result.converted, result.already, result.skipped) == (5, 0, 0)
        assert result.total == result.seen == 5
        sessions, streams = await migrated(store)
        assert len(sessions) == 5 and len(streams) == 5

        live = await store.get("broadcast_sessions", "live1")
        assert live is not None
        assert {k: live[k] for k in ("title", "status", "ended_at", "legacy", "legacy_id")} == {
            "title": "Aula de cálculo",
            "status": "live",
            "ended_at": None,
            "legacy": True,
            "legacy_id": "live1",
        }
        assert live["pricing"] == {
            "base": 990,
            "addons": {"screen": 0, "camera": 0},
            "bundle_discount_pct": 0,
        }
        assert live["pix"] is None
        assert parse_iso(live["created_at"]) == parse_iso("2025-03-01T12:00:00+00:00")
        [camera] = await store.find("broadcast_streams", {"session_id": "live1"})
        assert camera["id"] == stream_id_for("live1")
        assert camera["kind"] == "camera"
        assert camera["status"] == "pending"  # live, waiting for the broadcaster to publish again
        assert camera["quality"] == {
            "preset": "720p",
            "width": 1280,
            "height": 720,
            "fps": 30,
            "content_hint": "motion",
        }
        assert (camera["started_at"], camera["stopped_at"]) == (None, None)

        ended = await store.get("broadcast_sessions", "ended1")
        assert ended is not None and ended["status"] == "ended"
        assert parse_iso(ended["ended_at"]) == parse_iso("2025-02-01T14:30:00+00:00")
        assert ended["pix"] == {"key": "a@b.c", "merchant_name": "Loja", "merchant_city": "Recife"}
        [old_camera] = await store.find("broadcast_streams", {"session_id": "ended1"})
        assert old_camera["status"] == "stopped"
        assert old_camera["quality"]["preset"] == "480p"
        assert old_camera["stopped_at"] == ended["ended_at"]

        bare = await store.get("broadcast_sessions", "bare")
        assert bare is not None
        assert (bare["title"], bare["status"], bare["pricing"]["base"]) == (
            "Untitled livestream",
            "ended",  # unknown liveness is never advertised as live
            0,
        )

        epoch = await store.get("broadcast_sessions", "epoch")
        assert epoch is not None and epoch["status"] == "ended"
        assert parse_iso(epoch["created_at"]) == parse_iso("2025-01-01T00:00:00+00:00")
        assert parse_iso(epoch["ended_at"]) == parse_iso("2025-01-01T01:00:00+00:00")  # millis

        hashed_id = session_id_for("old id with spaces")
        assert hashed_id.startswith("lgc_") and hashed_id != "old id with spaces"
        failed = await store.get("broadcast_sessions", hashed_id)
        assert failed is not None and failed["title"] == "Untitled livestream"
        [failed_camera] = await store.find("broadcast_streams", {"session_id": hashed_id})
        assert failed_camera["status"] == "failed"
        assert await store.find("broadcast_sessions", {"legacy_id": "old id with spaces"}) == [
            failed
        ]
        # Times are stored in one format, so string order is time order.
        assert all(s["created_at"] == s["created_at"].strip() for s in sessions)
        assert {len(s["created_at"]) for s in sessions} == {len(live["created_at"])}

    backend.run(body)


def test_rerunning_converts_nothing_twice_and_keeps_later_changes(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await seed(store, LEGACY)
        first = await migrate_legacy(store, batch_size=2)
        before = await migrated(store)
        # The broadcaster ends the migrated live session; a re-run must not bring it back.
        await store.update("broadcast_sessions", "live1", {"status": "ended"})
        second = await migrate_legacy(store, batch_size=2)
        assert (first.converted, second.converted, second.already, second.skipped) == (5, 0, 5, 0)
        sessions, streams = await migrated(store)
        assert len(sessions) == len(before[0]) == 5
        assert streams == before[1]
        live = await store.get("broadcast_sessions", "live1")
        assert live is not None and live["status"] == "ended"
        # New legacy documents that appear later convert on the next run, alone.
        await seed(store, [{"id": "late", "status": "live"}])
        third = await migrate_legacy(store, batch_size=2)
        assert (third.converted, third.already) == (1, 5)
        assert await store.count("broadcast_streams") == 6

    backend.run(body)


def test_an_interrupted_run_is_completed(backend: Backend) -> None:
    """A crash after the stream write but before the session write leaves nothing half-done."""

    async def body(store: Store) -> None:
        await seed(store, [{"id": "x1", "status": "live"}])
        await store.upsert(
            "broadcast_streams",
            {"id": stream_id_for("x1"), "session_id": "x1", "kind": "camera", "status": "junk"},
        )
        result = await migrate_legacy(store)
        assert result.converted == 1
        [stream] = await store.find("broadcast_streams", {"session_id": "x1"})
        assert stream["status"] == "pending"
        assert await store.get("broadcast_sessions", "x1") is not None

    backend.run(body)


def test_one_progress_line_per_batch(backend: Backend) -> None:
    lines: list[str] = []

    async def body(store: Store) -> None:
        await seed(store, [{"id": f"ls{i:02d}", "status": "ended"} for i in range(7)])
        result = await migrate_legacy(store, batch_size=3, progress=lines.append)
        assert result.batches == 3
        assert result.converted == 7

    backend.run(body)
    assert lines == [
        "batch 1: legacy livestreams 1-3 of 7: 3 converted, 0 already migrated, 0 skipped",
        "batch 2: legacy livestreams 4-6 of 7: 3 converted, 0 already migrated, 0 skipped",
        "batch 3: legacy livestreams 7-7 of 7: 1 converted, 0 already migrated, 0 skipped",
    ]


def test_bad_legacy_documents_are_skipped_with_a_logged_reason(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    bad: list[dict[str, Any]] = [
        {"id": "b-status", "status": "scheduled"},
        {"id": "b-price", "price_centavos": -5},
        {"id": "b-float-price", "price_centavos": 9.9},
        {"id": "b-bool-price", "price_centavos": True},
        {"id": "b-huge-price", "price_centavos": 10**12},
        {"id": "b-time", "created_at": "yesterday"},
        {"id": "b-nan-time", "created_at": 1e300},
        {"id": "b-title", "title": {"$ne": ""}},
        {"id": "b-status-type", "status": ["live"]},
        {"id": "x" * 201},
    ]
    outcome: list[MigrationResult] = []

    async def body(store: Store) -> None:
        await seed(store, [*bad, {"id": "good", "status": "live"}])
        outcome.append(await migrate_legacy(store, batch_size=4))
        sessions, streams = await migrated(store)
        assert [s["id"] for s in sessions] == ["good"]
        assert [s["session_id"] for s in streams] == ["good"]

    with caplog.at_level(logging.WARNING, logger="server.migrate"):
        backend.run(body)
    [result] = outcome
    assert (result.converted, result.skipped, result.seen) == (1, len(bad), len(bad) + 1)
    reasons = dict(result.skipped_reasons)
    assert "unknown status" in reasons["b-status"]
    assert "out of range" in reasons["b-price"]
    assert "not an integer" in reasons["b-float-price"]
    assert "not an integer" in reasons["b-bool-price"]
    assert "ISO-8601" in reasons["b-time"]
    assert "title" in reasons["b-title"]
    logged = [r.getMessage() for r in caplog.records if r.name == "server.migrate"]
    assert any("livestream=b-status skipped: unknown status 'scheduled'" in m for m in logged)
    assert sum("skipped" in m and "livestream=" in m for m in logged) == len(bad)
    assert "10 skipped" in str(result)


def test_a_non_legacy_session_with_the_same_id_is_not_overwritten(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.insert(
            "broadcast_sessions", {"id": "ses_taken", "title": "new", "legacy": False}
        )
        await seed(store, [{"id": "ses_taken", "status": "live"}])
        result = await migrate_legacy(store)
        assert (result.converted, result.skipped) == (0, 1)
        assert await store.get("broadcast_sessions", "ses_taken") == {
            "id": "ses_taken",
            "title": "new",
            "legacy": False,
        }
        assert await store.count("broadcast_streams") == 0

    backend.run(body)


def test_batch_size_must_be_positive(backend: Backend) -> None:
    async def body(store: Store) -> None:
        for size in (0, -1, True):
            with pytest.raises(ValueError):
                await migrate_legacy(store, batch_size=size)

    backend.run(body)


@pytest.mark.parametrize("backend", [p for p in BACKENDS if p.id != "sqlite"], indirect=True)
def test_mongo_legacy_documents_keyed_only_by_underscore_id(backend: Backend) -> None:
    """The old server wrote `_id` without `id`: the store reads `_id` as the id."""

    async def body(store: Store) -> None:
        database: Any = getattr(store, "database")  # noqa: B009 -- MongoStore only
        await database.livestreams.insert_one({"_id": "raw1", "title": "raw", "status": "live"})
        assert await store.get("livestreams", "raw1") == {
            "id": "raw1",
            "title": "raw",
            "status": "live",
        }
        result = await migrate_legacy(store)
        assert result.converted == 1
        session = await store.get("broadcast_sessions", "raw1")
        assert session is not None and session["legacy_id"] == "raw1"

    backend.run(body)
