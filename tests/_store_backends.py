"""The store backends every store test runs against, as a pytest parameter list.

- `sqlite`: the real embedded backend on a file under `tmp_path`.
- `mongodb`: the MongoDB backend through the real driver (PyMongo's `AsyncMongoClient`) against the
  session's MongoDB wire server (`mongodb_server` in conftest.py); each test uses a database of its
  own and drops it afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from store.protocol import Store
from tests.mongodb import WireServer, unique_db


class Backend:
    """Opens fresh store objects over one persistent place (a file, or a database on a server)."""

    def __init__(self, kind: str, tmp_path: Path, server: WireServer | None = None) -> None:
        self.kind = kind
        self.path = tmp_path / "store.sqlite3"
        self.db_name = unique_db("store")
        self.server = server

    def _new_store(self) -> Store:
        if self.kind == "sqlite":
            from store.sqlite import SqliteStore

            return SqliteStore(self.path)
        from pymongo import AsyncMongoClient

        from store.mongo import MongoStore

        assert self.server is not None
        client: Any = AsyncMongoClient(self.server.base_uri, serverSelectionTimeoutMS=5000)
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
        if self.server is not None:
            self.server.drop(self.db_name)


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mongodb", id="mongodb", marks=[pytest.mark.mongodb_live]),
]


def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The body of a `backend` fixture parametrised over `BACKENDS`."""
    server = request.getfixturevalue("mongodb_server") if request.param == "mongodb" else None
    backend = Backend(request.param, tmp_path, server)
    yield backend
    backend.cleanup()
