"""`open_store(url)`: which backend a store URL selects, and clear errors for the rest."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from store import DEFAULT_MONGO_DB, Store, mongo_db_name, open_store
from store.mongo import MongoStore
from store.sqlite import SqliteStore


def test_sqlite_urls_select_the_embedded_store(tmp_path: Path) -> None:
    target = tmp_path / "data" / "x.sqlite3"
    for url in (f"sqlite://{target}", f"sqlite:///{target}"):  # both spellings of an absolute path
        store = open_store(url)
        assert isinstance(store, SqliteStore)
        assert store.path == target

    async def use() -> None:
        store = open_store(f"sqlite://{target}")
        await store.open()
        await store.insert("broadcast_sessions", {"id": "a"})
        await store.close()

    asyncio.run(use())
    assert target.exists()  # parent directories are created


def test_mongodb_urls_select_the_mongo_store_with_the_database_from_the_path() -> None:
    assert mongo_db_name("mongodb://h:27017/prod?replicaSet=rs0") == "prod"
    assert mongo_db_name("mongodb://h1:1,h2:2/") == DEFAULT_MONGO_DB
    assert mongo_db_name("mongodb://u:p%2Fw@h") == DEFAULT_MONGO_DB
    assert mongo_db_name("mongodb+srv://u:p@cluster.example.net/live") == "live"
    for bad in ("mongodb://h/a.b", "mongodb://h/a%20b", "mongodb://h/a$b"):
        with pytest.raises(ValueError, match="database name"):
            mongo_db_name(bad)


def test_a_mongodb_store_uses_the_real_driver_and_reports_an_unreachable_server() -> None:
    async def use() -> None:
        # Port 1 on loopback: nothing listens, so the real client fails fast; nothing else is contacted.
        store = open_store("mongodb://127.0.0.1:1/probe?serverSelectionTimeoutMS=200")
        assert isinstance(store, MongoStore) and isinstance(store, Store)
        assert store.db_name == "probe"
        # Every collection acknowledges a write only once a majority of the replica set has it.
        for name in ("broadcast_sessions", "viewer_preferences", "orders", "livestreams"):
            assert store.database[name].write_concern.document == {}  # the database default...
            assert store._coll(name).write_concern.document == {"w": "majority"}  # ...overridden
        with pytest.raises(ServerSelectionTimeoutError):
            await store.ping()
        await store.close()

    asyncio.run(use())


@pytest.mark.parametrize(
    "url",
    ["", "data/x.sqlite3", "sqlite:", "sqlite:///", "postgres://user:hunter2@db/x", "mysql://h/x"],
)
def test_other_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError) as err:
        open_store(url)
    message = str(err.value)
    assert "sqlite:///" in message
    assert "hunter2" not in message  # a URL's password is never echoed
