"""The store backends every store test runs against, as a pytest parameter list.

- `sqlite`: the real embedded backend on a file under `tmp_path`.
- `mongo-emulated-mongomock`: the MongoDB backend over mongomock-motor's in-memory emulation of the
  driver. It checks our use of the driver API and query shapes, not a MongoDB server.
- `mongo-live`: the MongoDB backend against a real server, only when `MULTISTREAM_TEST_MONGODB_URI`
  is set; each test uses a throwaway database and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from store.protocol import Store

LIVE_URI_ENV = "MULTISTREAM_TEST_MONGODB_URI"


class Backend:
    """Opens fresh store objects over one persistent place (a file, an emulated or real database)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "store.sqlite3"
        self.db_name = f"multistream_test_{uuid.uuid4().hex[:12]}"
        self._mock_client: Any = None

    def _new_store(self) -> Store:
        if self.kind == "sqlite":
            from store.sqlite import SqliteStore

            return SqliteStore(self.path)
        from store.mongo import MongoStore

        if self.kind == "mongo-emulated-mongomock":
            from mongomock_motor import AsyncMongoMockClient

            # One emulated server per test, shared by reopened stores (like a server would be).
            if self._mock_client is None:
                self._mock_client = AsyncMongoMockClient()
            return MongoStore(self._mock_client, self.db_name)
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(os.environ[LIVE_URI_ENV], serverSelectionTimeoutMS=5000)
        return MongoStore(client, self.db_name)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Store]:
        store = self._new_store()
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    def run(self, body: Callable[[Store], Awaitable[None]]) -> None:
        """Run `body` with an opened store on a fresh event loop."""

        async def main() -> None:
            async with self.open() as store:
                await body(store)

        asyncio.run(main())

    def cleanup(self) -> None:
        if self.kind != "mongo-live":
            return
        from pymongo import AsyncMongoClient

        async def drop() -> None:
            client: Any = AsyncMongoClient(os.environ[LIVE_URI_ENV], serverSelectionTimeoutMS=5000)
            try:
                await client.drop_database(self.db_name)
            finally:
                await client.close()

        asyncio.run(drop())


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mongo-emulated-mongomock", id="mongo-emulated-mongomock"),
    pytest.param(
        "mongo-live",
        id="mongo-live",
        marks=[
            pytest.mark.mongodb_live,
            pytest.mark.skipif(
                not os.environ.get(LIVE_URI_ENV),
                reason=f"no MongoDB server: set {LIVE_URI_ENV}=mongodb://host:27017 to run",
            ),
        ],
    ),
]
