"""The store's change feed (`store.changes`) on the MongoDB wire server, through the real driver:
what it delivers, in what order, how it resumes, how it breaks, and who gets one at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from server.lifespan import open_services
from store.changes import Change, ChangeFeedError, feed_of
from store.mongo import MongoStore
from store.sqlite import SqliteStore
from tests import mongodb
from tests.conftest import make_settings

pytestmark = pytest.mark.mongodb_live


@pytest.fixture
def db_name(mongodb_server: mongodb.WireServer) -> Iterator[str]:
    name = mongodb.unique_db("feed")
    yield name
    mongodb_server.drop(name)


@pytest.fixture
async def store(mongodb_server: mongodb.WireServer, db_name: str) -> AsyncIterator[MongoStore]:
    s = MongoStore(AsyncMongoClient(mongodb_server.base_uri, tz_aware=True), db_name)
    await s.open()
    yield s
    await s.close()


async def take(changes: AsyncIterator[Change], n: int, timeout: float = 5) -> list[Change]:
    return [await asyncio.wait_for(anext(changes), timeout) for _ in range(n)]


async def test_delivers_writes_in_commit_order_as_store_documents(store: MongoStore) -> None:
    async with store.watch(["chat_messages", "broadcast_sessions"]) as changes:
        await store.insert("chat_messages", {"id": "m1", "session_id": "s", "text": "hi"})
        await store.insert("orders", {"id": "o1", "txid": "T"})  # not watched
        await store.update("chat_messages", "m1", {"deleted": True})
        await store.upsert("broadcast_sessions", {"id": "s", "status": "live"})
        await store.delete("chat_messages", "m1")
        got = await take(changes, 4)
    assert [(c.collection, c.operation, c.doc_id) for c in got] == [
        ("chat_messages", "insert", "m1"),
        ("chat_messages", "update", "m1"),
        ("broadcast_sessions", "insert", "s"),  # an upsert that inserted
        ("chat_messages", "delete", "m1"),
    ]
    assert got[0].document == {"id": "m1", "session_id": "s", "text": "hi"}
    assert got[1].updated_fields == {"deleted": True}
    assert got[1].document is None or got[1].document["id"] == "m1"  # looked up at delivery
    assert got[3].document is None
    assert len({str(c.token) for c in got}) == 4


async def test_resumes_after_a_token_with_exactly_what_was_missed(store: MongoStore) -> None:
    async with store.watch(["chat_messages"]) as changes:
        await store.insert("chat_messages", {"id": "m1", "session_id": "s"})
        (first,) = await take(changes, 1)
    for i in (2, 3, 4):  # committed while nobody watches
        await store.insert("chat_messages", {"id": f"m{i}", "session_id": "s"})
    async with store.watch(["chat_messages"], resume_after=first.token) as changes:
        missed = await take(changes, 3)
    assert [c.doc_id for c in missed] == ["m2", "m3", "m4"]


async def test_a_cut_connection_is_a_resumable_error(
    mongodb_server: mongodb.WireServer, db_name: str
) -> None:
    """The server closes the stream's connection and refuses to reopen it (a failpoint for this
    client's appName only): the driver's own single resume fails too, and the feed says so."""
    victim = MongoStore(
        AsyncMongoClient(mongodb_server.uri(db_name, appName="feed-victim")), db_name
    )
    try:
        async with (
            victim.watch(["chat_messages"]) as changes,
            mongodb.feeds_cut(mongodb_server, "feed-victim"),
        ):
            with pytest.raises(ChangeFeedError) as info:
                await take(changes, 1)
        assert info.value.resumable
    finally:
        await victim.close()


async def test_only_a_replica_set_has_a_feed(tmp_path: Path, store: MongoStore) -> None:
    assert await feed_of(store) is store  # the wire server reports a replica set
    assert await feed_of(SqliteStore(tmp_path / "s.sqlite3")) is None
    binary = mongodb.secantusd()
    if binary is None:  # an external server was given: no standalone to compare with
        pytest.skip("needs secantusd-py to start a standalone server")
    standalone = await asyncio.to_thread(
        mongodb.start, binary, tmp_path / "standalone.log", extra_args=("--standalone",)
    )
    try:
        lone = MongoStore(AsyncMongoClient(standalone.base_uri), "x")
        assert await lone.change_feed_available() is False
        assert await feed_of(lone) is None
        await lone.close()
    finally:
        await asyncio.to_thread(standalone.stop)


@pytest.mark.timeout(120)
async def test_services_on_mongodb_close_promptly_however_the_feeds_are_caught(
    mongodb_server: mongodb.WireServer, db_name: str, tmp_path: Path
) -> None:
    """Closing cancels the chat bus's and SessionSync's change-stream loops wherever they are. A
    cancellation landing mid-getMore was once swallowed by the driver and the stream ran on, so a
    `multistream orders mark-paid` hung at exit about once in 25 runs; the loops now also stop on a
    flag they check between getMores. 30 open/write/close cycles back to back (the old code hung in
    about two runs of three of this test); each close takes 0.02-0.2 s here, 3 s is the bound."""
    settings = make_settings(tmp_path / "data", store_url=mongodb_server.uri(db_name))
    slowest = 0.0
    for i in range(30):
        async with AsyncExitStack() as stack:
            services = await stack.enter_async_context(open_services(settings))
            await services.store.upsert("orders", {"id": f"o{i}", "txid": f"T{i}"})
            t0 = time.monotonic()
            await asyncio.wait_for(stack.aclose(), 10)
            slowest = max(slowest, time.monotonic() - t0)
    assert slowest < 3.0, slowest
