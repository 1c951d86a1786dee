"""The embedded store: SQLite in WAL mode, one JSON document per row, all I/O on one worker thread.

Each collection is a table `(id TEXT PRIMARY KEY, doc TEXT)` holding the same JSON document the
MongoDB backend stores, with an expression index on `json_extract(doc, '$.<field>')` for every
declared query field. WAL lets two server processes share the file (readers never block the writer);
`synchronous=NORMAL` keeps commits durable across a process crash without an fsync per write. WAL
checkpoints run on their own thread and connection (`store._checkpointer`), not inside a commit.

Only names from `QUERY_FIELDS` are ever written into SQL text (they are constants of this program);
every value is a bound parameter. Equality and ranges also check the JSON type, so `true` never
equals `1` and a number never sorts against a string -- the same answers MongoDB gives.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from store._checkpointer import Checkpointer
from store._worker import SerialWorker
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

_BUSY_TIMEOUT_MS = 5000
# Pages in the WAL after which a commit checkpoints by itself. `Checkpointer` normally keeps the WAL
# far below this off the commit path; this is the backstop should it fall behind (say, a long read).
_AUTOCHECKPOINT_PAGES = 10_000
# `json_type` values each Python scalar type may compare with (MongoDB compares within a type only;
# ints and floats are one numeric type there too).
_JSON_TYPES = {
    bool: "('true','false')",
    int: "('integer','real')",
    str: "('text')",
}


def _dumps(value: Any) -> str:
    # NaN/Infinity are not JSON; refuse them rather than write a document SQLite cannot read.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _expr(field: str) -> str:
    """The SQL for a declared field; identical text in the index and the query, so both match."""
    return "id" if field == "id" else f"json_extract(doc, '$.{field}')"


def _compare(field: str, op: str, value: Scalar, params: list[Any]) -> str:
    """`field <op> value` with JSON type bracketing; `field` is already checked by `check_query`."""
    if field == "id":
        if not isinstance(value, str):
            return "0"  # ids are strings; any other type matches nothing (as in MongoDB)
        params.append(value)
        return f"id {op} ?"
    expr = _expr(field)
    if value is None:  # equality only: null or missing, like MongoDB's {field: null}
        return f"{expr} IS NULL"
    params.append(int(value) if isinstance(value, bool) else value)
    return f"{expr} {op} ? AND json_type(doc, '$.{field}') IN {_JSON_TYPES[type(value)]}"


def _where(
    collection: str,
    where: Mapping[str, Scalar] | None,
    before: tuple[str, Scalar] | None,
    after: tuple[str, Scalar] | None,
    params: list[Any],
) -> str:
    where = where or {}
    check_query(collection, list(where), list(where.values()))
    check_range(collection, before)
    check_range(collection, after)
    terms = [_compare(name, "=", value, params) for name, value in where.items()]
    if before is not None:
        terms.append(_compare(before[0], "<", before[1], params))
    if after is not None:
        terms.append(_compare(after[0], ">", after[1], params))
    return " WHERE " + " AND ".join(terms) if terms else ""


def _is_duplicate(exc: sqlite3.IntegrityError) -> bool:
    return getattr(exc, "sqlite_errorname", "") in {
        "SQLITE_CONSTRAINT_PRIMARYKEY",
        "SQLITE_CONSTRAINT_UNIQUE",
    } or "UNIQUE constraint failed" in str(exc)


class SqliteStore:
    """`Store` over one SQLite file. Create, `await open()`, use from any task, `await close()`."""

    def __init__(self, path: Path, *, background_checkpoints: bool = True) -> None:
        """`background_checkpoints=False` leaves checkpoints to SQLite's commits (its default;
        kept for `bench.store_tail`'s side-by-side)."""
        self.path = Path(path)
        self._worker = SerialWorker(f"sqlite-store:{self.path.name}")
        self._db: sqlite3.Connection | None = None
        self._checkpointer = Checkpointer(self.path) if background_checkpoints else None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._worker.start()
        await self._worker.call(self._open_sync)
        if self._checkpointer is not None:
            self._checkpointer.start()
        log.info("store=sqlite path=%s opened", self.path)

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.stop()
        if self._db is not None:
            await self._worker.call(self._close_sync)
        await self._worker.stop()

    async def ping(self) -> None:
        await self._worker.call(self._run, "SELECT 1", ())

    # -- reads -------------------------------------------------------------------------------

    async def get(self, collection: Collection, doc_id: str) -> Doc | None:
        check_query(collection, ())
        check_id(doc_id)
        row = await self._worker.call(
            self._one, f'SELECT doc FROM "{collection}" WHERE id = ?', (doc_id,)
        )
        return None if row is None else json.loads(row[0])

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
        params: list[Any] = []
        sql = f'SELECT doc FROM "{collection}"' + _where(collection, where, before, after, params)
        if order_by is not None:
            check_query(collection, (order_by,))
        direction = " DESC" if descending else ""
        if order_by is None or order_by == "id":
            sql += f" ORDER BY id{direction}"
        else:
            sql += f" ORDER BY {_expr(order_by)}{direction}, id{direction}"
        params.append(check_limit(limit))
        sql += " LIMIT ?"
        rows = await self._worker.call(self._all, sql, tuple(params))
        return [json.loads(row[0]) for row in rows]

    async def count(self, collection: Collection, where: Mapping[str, Scalar] | None = None) -> int:
        params: list[Any] = []
        sql = f'SELECT count(*) FROM "{collection}"' + _where(collection, where, None, None, params)
        row = await self._worker.call(self._one, sql, tuple(params))
        return int(row[0]) if row else 0

    # -- writes ------------------------------------------------------------------------------

    async def insert(self, collection: Collection, doc: Mapping[str, Any]) -> None:
        check_query(collection, ())
        doc_id = check_doc(doc)
        sql = f'INSERT INTO "{collection}" (id, doc) VALUES (?, ?)'
        await self._worker.call(self._write, sql, (doc_id, _dumps(doc)))

    async def upsert(self, collection: Collection, doc: Mapping[str, Any]) -> None:
        check_query(collection, ())
        doc_id = check_doc(doc)
        sql = (
            f'INSERT INTO "{collection}" (id, doc) VALUES (?, ?) '
            "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc"
        )
        await self._worker.call(self._write, sql, (doc_id, _dumps(doc)))

    async def update(
        self,
        collection: Collection,
        doc_id: str,
        fields: Mapping[str, Any],
        *,
        expect: Mapping[str, Scalar] | None = None,
    ) -> Doc | None:
        check_id(doc_id)
        check_update(fields)
        params: list[Any] = []
        # One statement: the check and the write are atomic even across processes sharing the file.
        setters = ", ".join("?, json(?)" for _ in fields)
        for name, value in fields.items():
            params += (f"$.{name}", _dumps(value))
        where = _where(collection, {**(expect or {}), "id": doc_id}, None, None, params)
        if fields:
            sql = f'UPDATE "{collection}" SET doc = json_set(doc, {setters}){where} RETURNING doc'
            row = await self._worker.call(self._write_one, sql, tuple(params))
        else:
            row = await self._worker.call(
                self._one, f'SELECT doc FROM "{collection}"{where}', tuple(params)
            )
        return None if row is None else json.loads(row[0])

    async def delete(self, collection: Collection, doc_id: str) -> bool:
        check_query(collection, ())
        check_id(doc_id)
        sql = f'DELETE FROM "{collection}" WHERE id = ?'
        return bool(await self._worker.call(self._write, sql, (doc_id,)))

    async def take_token(self, key: str, burst: int, per_s: float, now: float) -> float:
        check_bucket(key, burst, per_s, now)
        return float(await self._worker.call(self._take_token_sync, key, burst, per_s, now))

    async def acquire_lease(
        self, key: str, holder: str, address: str, ttl_s: float, now: float
    ) -> Doc:
        check_lease(key, holder, address, ttl_s, now)
        return dict(
            await self._worker.call(self._acquire_lease_sync, key, holder, address, ttl_s, now)
        )

    # -- on the worker thread ----------------------------------------------------------------

    def _acquire_lease_sync(
        self, key: str, holder: str, address: str, ttl_s: float, now: float
    ) -> Doc:
        """Read and write in one IMMEDIATE transaction: processes sharing the file take turns on
        the write lock, so two acquirers of a free lease cannot both be granted it."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute('SELECT doc FROM "session_leases" WHERE id = ?', (key,)).fetchone()
            current = None if row is None else json.loads(row[0])
            lease = next_lease(current, key, holder, address, ttl_s, now)
            if lease is None:
                db.execute("COMMIT")
                assert current is not None
                return dict(current)
            db.execute(
                'INSERT INTO "session_leases" (id, doc) VALUES (?, ?) '
                "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                (key, _dumps(lease)),
            )
            db.execute("COMMIT")
            return lease
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _take_token_sync(self, key: str, burst: int, per_s: float, now: float) -> float:
        """Read, refill and spend in one IMMEDIATE transaction: processes sharing the file take
        turns on the write lock, so no two spend the same token."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                f"SELECT tokens, at FROM {RATE_BUCKETS} WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                tokens, at = float(burst), now
                # A new client: drop some buckets that have refilled completely (same as absent).
                db.execute(
                    f"DELETE FROM {RATE_BUCKETS} WHERE rowid IN "
                    f"(SELECT rowid FROM {RATE_BUCKETS} WHERE full_at < ? LIMIT 64)",
                    (now,),
                )
            else:
                tokens, at = refill(row[0], row[1], burst, per_s, now), max(now, row[1])
            if tokens < 1.0:
                db.execute("COMMIT")
                return (1.0 - tokens) / per_s
            tokens -= 1.0
            db.execute(
                f"INSERT INTO {RATE_BUCKETS} (key, tokens, at, full_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at, "
                "full_at = excluded.full_at",
                (key, tokens, at, at + (burst - tokens) / per_s),
            )
            db.execute("COMMIT")
            return 0.0
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    def _open_sync(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): each statement is its own transaction.
        db = sqlite3.connect(self.path, isolation_level=None, cached_statements=256)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            log.warning("store=sqlite path=%s journal_mode=%s (WAL unavailable)", self.path, mode)
        db.execute("PRAGMA synchronous = NORMAL")
        if self._checkpointer is not None:
            db.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT_PAGES}")
        unique = set(UNIQUE_FIELDS)
        db.execute("BEGIN IMMEDIATE")
        try:
            for collection, fields in QUERY_FIELDS.items():
                db.execute(
                    f'CREATE TABLE IF NOT EXISTS "{collection}" ('
                    "id TEXT PRIMARY KEY NOT NULL, doc TEXT NOT NULL CHECK (json_valid(doc))) STRICT"
                )
                for field in fields:
                    db.execute(
                        f'CREATE INDEX IF NOT EXISTS "ix_{collection}_{field}" '
                        f'ON "{collection}" ({_expr(field)})'
                    )
                    if (collection, field) in unique:
                        # Only string values must be unique: documents without the field (or with
                        # null) may coexist, matching the Mongo backend's partial unique index.
                        db.execute(
                            f'CREATE UNIQUE INDEX IF NOT EXISTS "ux_{collection}_{field}" '
                            f'ON "{collection}" ({_expr(field)}) '
                            f"WHERE json_type(doc, '$.{field}') = 'text'"
                        )
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {RATE_BUCKETS} (key TEXT PRIMARY KEY NOT NULL, "
                "tokens REAL NOT NULL, at REAL NOT NULL, full_at REAL NOT NULL) STRICT"
            )
            db.execute(
                f"CREATE INDEX IF NOT EXISTS ix_{RATE_BUCKETS}_full_at ON {RATE_BUCKETS} (full_at)"
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            db.close()
            raise
        self._db = db

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        self._conn().execute(sql, params)

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        cur = self._conn().execute(sql, params)
        row = cur.fetchone()
        cur.close()  # reset the statement: an unfinished read would pin an old WAL snapshot
        return row

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._conn().execute(sql, params).fetchall()

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        try:
            return self._conn().execute(sql, params).rowcount
        except sqlite3.IntegrityError as exc:
            if _is_duplicate(exc):
                raise DuplicateKey(str(exc)) from None
            raise

    def _write_one(self, sql: str, params: tuple[Any, ...]) -> Any:
        try:
            cur = self._conn().execute(sql, params)
            row = cur.fetchone()
            cur.close()  # finish the statement so the write commits now
            return row
        except sqlite3.IntegrityError as exc:
            if _is_duplicate(exc):
                raise DuplicateKey(str(exc)) from None
            raise
