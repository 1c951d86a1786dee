"""WAL checkpoints happen on the checkpointer's thread, not inside a store write."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from store.sqlite import SqliteStore


def test_committed_writes_reach_the_database_file_without_a_commit_checkpointing(
    tmp_path: Path,
) -> None:
    """A few writes stay far below any auto-checkpoint threshold, so only the checkpointer can
    have copied them into the main file: a copy of that file alone (no WAL) must hold them."""
    path = tmp_path / "s.sqlite3"

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        threshold = await store._worker.call(store._one, "PRAGMA wal_autocheckpoint", ())
        assert threshold[0] > 1000  # raised: commits no longer checkpoint at SQLite's default
        for i in range(20):
            await store.upsert("viewer_preferences", {"id": f"p{i}", "session_id": "s"})
        checkpointer = store._checkpointer
        assert checkpointer is not None
        before = checkpointer.checkpoints
        for _ in range(100):  # up to 5 s on a busy machine
            await asyncio.sleep(0.05)
            if checkpointer.checkpoints > before:
                break
        assert checkpointer.checkpoints > before, "no checkpoint ran"
        shutil.copy(path, tmp_path / "copy.sqlite3")  # the main file only, while still open
        await store.close()

    asyncio.run(main())
    with sqlite3.connect(tmp_path / "copy.sqlite3") as raw:
        assert raw.execute('SELECT count(*) FROM "viewer_preferences"').fetchone()[0] == 20


def test_close_stops_the_checkpointer_thread(tmp_path: Path) -> None:
    async def main() -> SqliteStore:
        store = SqliteStore(tmp_path / "s.sqlite3")
        await store.open()
        await store.upsert("orders", {"id": "o1"})
        await store.close()
        return store

    store = asyncio.run(main())
    assert store._checkpointer is not None
    assert not store._checkpointer._thread.is_alive()
