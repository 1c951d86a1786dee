"""The MongoDB store over PyMongo's native asyncio client (`pymongo.AsyncMongoClient`).

Documents are stored as given plus `_id` = `id` (so lookups use the primary index), and read back
without `_id`, so both backends return identical dicts. Every collection is used with majority write
concern: an acknowledged write survives a primary failover. Indexes for the declared query fields
are created by `open()`. Filters are assembled only from values `check_query` has accepted
(str/int/bool/None), so no client value can become an operator such as `{"$ne": ...}`.

On a replica set the store is also a `ChangeFeed` (database-level change streams), which the chat
bus and `SessionSync` use to hear other instances' writes. PyMongo's database, collection, client
and cursor objects refuse truth testing (`if db:` raises `NotImplementedError`): compare them with
`is None`, never `or`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.mongo_client import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.write_concern import WriteConcern

from store.changes import Change, ChangeFeedError, ResumeToken
from store.protocol import (
    QUERY_FIELDS,
    RATE_BUCKETS,
    UNIQUE_FIELDS,
    Collection,
    Doc,
    DuplicateKey,
    Scalar,
    check_bucket,
    check_doc,
    check_id,
    check_lease,
    check_limit,
    check_query,
    check_range,
    check_update,
    next_lease,
    refill,
)

log = logging.getLogger(__name__)

# BSON types each Python scalar type may match. A server already tells `true` from `1`; the explicit
# `$type` also keeps a range bound (`$lt: "x"`) on one type, and costs nothing (the index still
# serves the `$eq`/range part).
_BSON_TYPES: dict[type, str] = {bool: "bool", int: "number", str: "string"}


def _out(doc: Doc | None) -> Doc | None:
    """A stored document as the protocol returns it: no `_id`, and always an `id`.

    Our own documents carry both; a foreign one (e.g. a legacy `livestreams` document written by
    the old server) may have only `_id`, which then becomes its `id` (ObjectIds as hex strings).
    """
    if doc is None:
        return None
    raw_id = doc.pop("_id", None)
    if "id" not in doc and raw_id is not None:
        doc["id"] = raw_id if isinstance(raw_id, str) else str(raw_id)
    return doc


def _key(field: str) -> str:
    return "_id" if field == "id" else field


def _match(field: str, op: str | None, value: Scalar) -> dict[str, Any]:
    """One filter clause from a checked field and scalar; `op` None is equality."""
    if value is None:
        return {_key(field): None}  # null or missing, the protocol's meaning of None
    cond: dict[str, Any] = {"$eq" if op is None else op: value}
    if field != "id":
        cond["$type"] = _BSON_TYPES[type(value)]
    return {_key(field): cond}


def _filter(
    collection: str,
    where: Mapping[str, Scalar] | None,
    before: tuple[str, Scalar] | None = None,
    after: tuple[str, Scalar] | None = None,
) -> dict[str, Any]:
    where = where or {}
    check_query(collection, list(where), list(where.values()))
    check_range(collection, before)
    check_range(collection, after)
    clauses = [_match(name, None, value) for name, value in where.items()]
    if before is not None:
        clauses.append(_match(before[0], "$lt", before[1]))
    if after is not None:
        clauses.append(_match(after[0], "$gt", after[1]))
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class MongoStore:
    """`Store` over one MongoDB database. The store owns `client` and closes it in `close()`."""

    def __init__(self, client: AsyncMongoClient[Doc], db_name: str) -> None:
        self._client = client
        self._db: AsyncDatabase[Doc] = client.get_database(db_name)
        self.db_name = db_name
        majority = WriteConcern("majority")
        self._collections = {
            name: self._db.get_collection(name, write_concern=majority) for name in QUERY_FIELDS
        }
        self._buckets = self._db.get_collection(RATE_BUCKETS, write_concern=majority)

    @property
    def database(self) -> AsyncDatabase[Doc]:
        """The driver's database, for tools and tests that must write foreign documents (e.g. a
        legacy `livestreams` document keyed only by `_id`). Services use the `Store` methods."""
        return self._db

    def _coll(self, collection: str) -> Any:
        try:
            return self._collections[collection]
        except KeyError:
            raise ValueError(f"unknown collection {collection!r}") from None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        unique = set(UNIQUE_FIELDS)
        for collection, fields in QUERY_FIELDS.items():
            coll = self._coll(collection)
            for field in fields:
                if (collection, field) in unique:
                    # Partial, so documents without the field (or with null) do not collide. It
                    # also serves equality queries, which carry the same `$type: "string"`; a second,
                    # plain index on the same key pattern is not created (older servers refuse it).
                    await coll.create_index(
                        [(field, ASCENDING)],
                        name=f"ux_{field}",
                        unique=True,
                        partialFilterExpression={field: {"$type": "string"}},
                    )
                else:
                    await coll.create_index([(field, ASCENDING)], name=f"ix_{field}")
        # A bucket that has refilled completely is the same as none: the server deletes it.
        await self._buckets.create_index(
            [("full_at", ASCENDING)], name="ttl_full_at", expireAfterSeconds=0
        )
        log.info("store=mongo db=%s opened", self.db_name)

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        await self._client.admin.command("ping")

    # -- reads -------------------------------------------------------------------------------

    async def get(self, collection: Collection, doc_id: str) -> Doc | None:
        check_id(doc_id)
        return _out(await self._coll(collection).find_one({"_id": doc_id}))

    async def find(
        self,
        collection: Collection,
        where: Mapping[str, Scalar] | None = None,
        *,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 100,
        before: tuple[str, Scalar] | None = None,
        after: tuple[str, Scalar] | None = None,
    ) -> list[Doc]:
        coll = self._coll(collection)
        query = _filter(collection, where, before, after)
        if order_by is not None:
            check_query(collection, (order_by,))
        limit = check_limit(limit)
        if limit == 0:
            return []  # MongoDB reads limit 0 as "no limit"
        direction = DESCENDING if descending else ASCENDING
        sort = [("_id", direction)]
        if order_by is not None and order_by != "id":
            sort.insert(0, (order_by, direction))
        cursor = coll.find(query).sort(sort).limit(limit)
        docs: list[Doc] = await cursor.to_list(length=limit)
        return [doc for doc in map(_out, docs) if doc is not None]

    async def count(self, collection: Collection, where: Mapping[str, Scalar] | None = None) -> int:
        coll = self._coll(collection)
        return int(await coll.count_documents(_filter(collection, where)))

    # -- writes ------------------------------------------------------------------------------

    async def insert(self, collection: Collection, doc: Mapping[str, Any]) -> None:
        coll = self._coll(collection)
        doc_id = check_doc(doc)
        try:
            await coll.insert_one({"_id": doc_id, **doc})
        except DuplicateKeyError as exc:
            raise DuplicateKey(f"{collection}: {exc}") from None

    async def upsert(self, collection: Collection, doc: Mapping[str, Any]) -> None:
        coll = self._coll(collection)
        doc_id = check_doc(doc)
        try:
            await coll.replace_one({"_id": doc_id}, {"_id": doc_id, **doc}, upsert=True)
        except DuplicateKeyError as exc:
            raise DuplicateKey(f"{collection}: {exc}") from None

    async def update(
        self,
        collection: Collection,
        doc_id: str,
        fields: Mapping[str, Any],
        *,
        expect: Mapping[str, Scalar] | None = None,
    ) -> Doc | None:
        coll = self._coll(collection)
        check_id(doc_id)
        check_update(fields)
        query = _filter(collection, {**(expect or {}), "id": doc_id})
        if not fields:  # `$set: {}` is an error on a server; this is a read that honours `expect`
            return _out(await coll.find_one(query))
        try:
            doc = await coll.find_one_and_update(
                query, {"$set": dict(fields)}, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError as exc:
            raise DuplicateKey(f"{collection}: {exc}") from None
        return _out(doc)

    async def delete(self, collection: Collection, doc_id: str) -> bool:
        coll = self._coll(collection)
        check_id(doc_id)
        result = await coll.delete_one({"_id": doc_id})
        return bool(result.deleted_count)

    # -- rate limits -------------------------------------------------------------------------

    async def take_token(self, key: str, burst: int, per_s: float, now: float) -> float:
        """Compare-and-set on the bucket document: read it, refill, and spend with a
        `find_one_and_update` that matches only the version read (or an insert for a new bucket);
        a concurrent spender makes the write miss, and the loop reads again."""
        check_bucket(key, burst, per_s, now)
        for _attempt in range(16):
            doc = await self._buckets.find_one({"_id": key})
            if doc is None:
                tokens, at, version = float(burst), now, 0
            else:
                at = max(now, float(doc["at"]))
                tokens = refill(float(doc["tokens"]), float(doc["at"]), burst, per_s, now)
                version = int(doc["v"])
            if tokens < 1.0:
                return (1.0 - tokens) / per_s
            tokens -= 1.0
            fields = {
                "tokens": tokens,
                "at": at,
                "v": version + 1,
                "full_at": datetime.fromtimestamp(at + (burst - tokens) / per_s, UTC),
            }
            if doc is None:
                try:
                    await self._buckets.insert_one({"_id": key, **fields})
                except DuplicateKeyError:
                    continue  # another process created it first: spend from that one
                return 0.0
            won = await self._buckets.find_one_and_update(
                {"_id": key, "v": version}, {"$set": fields}
            )
            if won is not None:
                return 0.0
        # Sixteen lost races in a row: the bucket is being drained right now; refuse this one.
        return 1.0 / per_s

    # -- ownership leases --------------------------------------------------------------------

    async def acquire_lease(
        self, key: str, holder: str, address: str, ttl_s: float, now: float
    ) -> Doc:
        """Compare-and-set on the lease's version `v`: read it, decide (`next_lease`), and write
        with an insert (a new lease; a duplicate key means another acquirer was first) or a
        `find_one_and_update` matching the version read; a lost race reads again."""
        check_lease(key, holder, address, ttl_s, now)
        coll = self._coll("session_leases")
        for _attempt in range(16):
            current = _out(await coll.find_one({"_id": key}))
            lease = next_lease(current, key, holder, address, ttl_s, now)
            if lease is None:
                assert current is not None
                return current
            if current is None:
                try:
                    await coll.insert_one({"_id": key, **lease})
                except DuplicateKeyError:
                    continue
                return lease
            won = await coll.find_one_and_update(
                {"_id": key, "v": current["v"]},
                {"$set": {k: v for k, v in lease.items() if k != "id"}},
            )
            if won is not None:
                return lease
        raise RuntimeError(f"lease {key!r}: sixteen lost races in a row")

    # -- change feed -------------------------------------------------------------------------

    async def change_feed_available(self) -> bool:
        """Change streams need a replica set (`setName`) or a sharded cluster (`isdbgrid`)."""
        hello = await self._db.command("hello")
        return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"

    @asynccontextmanager
    async def watch(
        self,
        collections: Sequence[Collection],
        *,
        resume_after: ResumeToken | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[AsyncIterator[Change]]:
        """One database-level change stream over `collections` (see `store.changes.ChangeFeed`).

        PyMongo itself resumes once after a resumable error; what it cannot recover from is raised
        as `ChangeFeedError` so the caller decides how long to wait before reopening. Iteration
        ends within about `_AWAIT_MS` of `stop` being set.
        """
        for name in collections:
            self._coll(name)
        pipeline = [
            {
                "$match": {
                    "ns.coll": {"$in": list(collections)},
                    "operationType": {"$in": list(_OPERATIONS)},
                }
            }
        ]
        try:
            stream = await self._db.watch(
                pipeline,
                full_document="updateLookup",
                resume_after=resume_after,
                max_await_time_ms=_AWAIT_MS,
            )
        except PyMongoError as exc:
            raise _feed_error(exc) from exc
        async with stream:
            yield _changes(stream, stop)


_OPERATIONS: Final = ("insert", "update", "replace", "delete")
# How long one getMore of a change stream waits on the server for news: also the longest a feed takes
# to notice its `stop` event.
_AWAIT_MS: Final = 1000
# Server codes after which a resume token is useless: the oplog moved past it, or it is invalid.
_POSITION_LOST: Final = frozenset({260, 280, 286})


def _feed_error(exc: PyMongoError) -> ChangeFeedError:
    lost = isinstance(exc, OperationFailure) and exc.code in _POSITION_LOST
    return ChangeFeedError(f"{type(exc).__name__}: {exc}", resumable=not lost)


async def _changes(
    stream: AsyncChangeStream[Doc], stop: asyncio.Event | None
) -> AsyncIterator[Change]:
    # `try_next` returns None after one empty getMore (at most `_AWAIT_MS`), so `stop` is checked
    # at least that often: the owner stops the feed with it rather than by cancelling this task
    # mid-getMore, which PyMongo 4.20 can swallow (the cursor then runs on).
    while stop is None or not stop.is_set():
        try:
            raw = await stream.try_next()
        except PyMongoError as exc:
            raise _feed_error(exc) from exc
        if raw is None:
            if not stream.alive:
                raise ChangeFeedError("the change stream was closed")
            continue
        key = (raw.get("documentKey") or {}).get("_id")
        update = raw.get("updateDescription") or {}
        yield Change(
            collection=str(raw["ns"]["coll"]),
            operation=str(raw["operationType"]),
            doc_id=key if isinstance(key, str) else str(key),
            document=_out(raw.get("fullDocument")),
            token=raw["_id"],
            updated_fields=dict(update.get("updatedFields") or {}),
        )
