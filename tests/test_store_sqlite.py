"""What only the SQLite backend promises: WAL sharing between processes, a free event loop, indexes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from store.sqlite import SqliteStore


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_wal_mode_and_synchronous_normal(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.sqlite3")
        await store.open()
        sync = await store._worker.call(store._one, "PRAGMA synchronous", ())
        await store.close()
        assert sync[0] == 1  # NORMAL

    run(main())
    with sqlite3.connect(tmp_path / "s.sqlite3") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_stores_on_one_file_share_data_and_lose_no_update(tmp_path: Path) -> None:
    """Two connections (as two server processes would hold) interleave compare-and-set writes."""
    path = tmp_path / "shared.sqlite3"
    per_store = 30

    async def increment(store: SqliteStore) -> None:
        done = 0
        while done < per_store:
            doc = await store.get("chat_messages", "counter")
            assert doc is not None
            if await store.update(
                "chat_messages", "counter", {"seq": doc["seq"] + 1}, expect={"seq": doc["seq"]}
            ):
                done += 1

    async def main() -> None:
        a, b = SqliteStore(path), SqliteStore(path)
        await a.open()
        await b.open()
        await a.insert("chat_messages", {"id": "counter", "session_id": "s", "seq": 0})
        assert await b.get("chat_messages", "counter") == {
            "id": "counter",
            "session_id": "s",
            "seq": 0,
        }
        await asyncio.gather(*(increment(s) for s in (a, b, a, b)))
        final = await b.get("chat_messages", "counter")
        await a.close()
        await b.close()
        assert final is not None and final["seq"] == 4 * per_store

    run(main())


_INCREMENTER = """
import asyncio, sys
from pathlib import Path
from store.sqlite import SqliteStore

async def main(path, times):
    store = SqliteStore(Path(path))
    await store.open()
    done = 0
    while done < times:
        doc = await store.get("chat_messages", "counter")
        if await store.update(
            "chat_messages", "counter", {"seq": doc["seq"] + 1}, expect={"seq": doc["seq"]}
        ):
            done += 1
    await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_two_processes_share_the_file(tmp_path: Path) -> None:
    """Two server processes on one SQLite file: WAL, busy timeout and atomic CAS hold up."""
    path = tmp_path / "two.sqlite3"
    times = 100

    async def seed() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.insert("chat_messages", {"id": "counter", "session_id": "s", "seq": 0})
        await store.close()

    async def read() -> Any:
        store = SqliteStore(path)
        await store.open()
        doc = await store.get("chat_messages", "counter")
        await store.close()
        return doc

    run(seed())
    cmd = [sys.executable, "-c", _INCREMENTER, str(path), str(times)]
    procs = [subprocess.Popen(cmd) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert run(read())["seq"] == 2 * times


def test_a_write_waiting_for_the_lock_does_not_block_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    hold_s = 0.5
    locked = threading.Event()

    def hold_write_lock() -> None:
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(hold_s)
        raw.execute("COMMIT")
        raw.close()

    async def main() -> tuple[float, float]:
        store = SqliteStore(path)
        await store.open()
        holder = threading.Thread(target=hold_write_lock)
        holder.start()
        await asyncio.get_running_loop().run_in_executor(None, locked.wait)
        gaps: list[float] = []
        started = time.perf_counter()
        insert = asyncio.ensure_future(store.insert("broadcast_sessions", {"id": "late"}))
        last = time.perf_counter()
        while not insert.done():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        await insert
        waited = time.perf_counter() - started
        holder.join()
        assert await store.get("broadcast_sessions", "late") == {"id": "late"}
        await store.close()
        return waited, max(gaps)

    waited, worst_gap = run(main())
    assert waited >= hold_s * 0.5  # the insert really waited for the other writer
    assert worst_gap < hold_s / 2  # while the loop kept running


@pytest.mark.parametrize(
    ("collection", "where", "index"),
    [
        ("broadcast_streams", {"session_id": "s"}, "ix_broadcast_streams_session_id"),
        ("viewer_preferences", {"viewer_id": "v"}, "ix_viewer_preferences_viewer_id"),
        ("orders", {"txid": "t"}, "x_orders_txid"),
        ("chat_messages", {"session_id": "s", "deleted": False}, "ix_chat_messages_"),
    ],
)
def test_queries_on_declared_fields_use_an_index(
    tmp_path: Path, collection: str, where: dict[str, Any], index: str
) -> None:
    from store.sqlite import _where

    async def main() -> str:
        store = SqliteStore(tmp_path / "ix.sqlite3")
        await store.open()
        params: list[Any] = []
        sql = f'SELECT doc FROM "{collection}"' + _where(collection, where, None, None, params)
        plan = await store._worker.call(store._all, "EXPLAIN QUERY PLAN " + sql, tuple(params))
        await store.close()
        return " ".join(str(row[-1]) for row in plan)

    plan = run(main())
    assert "USING INDEX" in plan and index in plan, plan


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    async def main() -> None:
        await SqliteStore(tmp_path / "never-opened.sqlite3").close()
        store = SqliteStore(tmp_path / "c.sqlite3")
        await store.open()
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await store.get("broadcast_sessions", "a")

    run(main())


def test_a_file_from_before_accounts_gains_their_tables_on_open(tmp_path: Path) -> None:
    """No schema version to migrate: opening creates what is missing (tables, indexes), so a data
    file written before accounts existed keeps its sessions and takes users and tokens."""
    path = tmp_path / "old.sqlite3"

    async def fresh() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.insert("broadcast_sessions", {"id": "old", "status": "ended"})
        await store.close()

    run(fresh())
    with sqlite3.connect(path) as raw:  # as the previous release left it
        for table in ("users", "api_tokens", "replays"):
            raw.execute(f'DROP TABLE "{table}"')
        raw.execute('DROP INDEX "ix_broadcast_sessions_owner_id"')

    async def reopened() -> None:
        store = SqliteStore(path)
        await store.open()
        assert await store.get("broadcast_sessions", "old") == {"id": "old", "status": "ended"}
        await store.insert("users", {"id": "u1", "username": "ana"})
        assert await store.count("users", {"username": "ana"}) == 1
        assert await store.find("broadcast_sessions", {"owner_id": "u1"}) == []
        await store.close()

    run(reopened())
    with sqlite3.connect(path) as raw:
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
    assert {"users", "api_tokens", "replays", "ux_users_username"} <= names
    assert "ix_broadcast_sessions_owner_id" in names
