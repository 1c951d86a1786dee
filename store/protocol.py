"""The repository interface every backend implements, and the collections it holds.

Documents are MongoDB-shaped dicts with a string `id`; both backends keep the same shape. Filters are
equality on *declared* fields with scalar values only, checked here before any backend sees them, so
nothing a client sends can become a query operator (`{"$ne": ...}`) or an injected column name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, Protocol, runtime_checkable

Doc = dict[str, Any]
Scalar = str | int | bool | None

Collection = Literal[
    "broadcast_sessions",
    "broadcast_streams",
    "viewer_preferences",
    "chat_messages",
    "orders",
    "payment_rejects",
    "recordings",
    "livestreams",
    "users",
    "api_tokens",
    "replays",
    "session_leases",
    "instances",
    "session_viewers",
]

# Fields each collection may be filtered or sorted on; backends index them.
# `livestreams` is the pre-multistream collection, read only by `multistream migrate`.
QUERY_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "broadcast_sessions": ("status", "created_at", "legacy_id", "instance_id", "owner_id"),
    "broadcast_streams": ("session_id", "kind", "status"),
    "viewer_preferences": ("session_id", "viewer_id", "updated_at", "replay_on"),
    "chat_messages": ("session_id", "created_at", "seq", "deleted"),
    "orders": ("session_id", "viewer_id", "txid", "status", "created_at"),
    # Webhook items refused one by one (invalid text, bad fields), kept for the operator.
    "payment_rejects": ("txid", "received_at"),
    "recordings": ("session_id", "stream_id", "status", "started_at"),
    "livestreams": ("status", "created_at"),
    # Broadcaster accounts, and the hashed secrets that stand for one: API tokens (scripts, OBS)
    # and web log-ins (the cookie). A token document's id is the SHA-256 of its secret.
    "users": ("username", "created_at", "disabled"),
    "api_tokens": ("user_id", "kind", "created_at", "expires_at"),
    # Offline composite renders of ended sessions (one per session), with their progress.
    "replays": ("session_id", "status", "created_at"),
    # Which instance owns a live session's media, until when (`acquire_lease`); id = session id.
    "session_leases": ("holder",),
    # Instances offering to serve viewers by relay, with their load (`server.assignment`);
    # id = instance id, rewritten every heartbeat, stale after the lease TTL.
    "instances": ("relay",),
    # Viewers per session and instance (`server.cluster_presence`); id = "<session>@<instance>".
    "session_viewers": ("session_id", "expires_at"),
}
# Rate-limit buckets live beside the collections (`take_token`): not documents, never queried.
RATE_BUCKETS: Final = "rate_buckets"
# (collection, field) pairs that must be unique across documents.
UNIQUE_FIELDS: Final[tuple[tuple[str, str], ...]] = (("orders", "txid"), ("users", "username"))


class DuplicateKey(Exception):
    """An insert collided with an existing `id` or a unique field."""


def check_query(collection: str, fields: Sequence[str], values: Sequence[object] = ()) -> None:
    """Refuse undeclared fields and non-scalar values before they reach a backend."""
    allowed = QUERY_FIELDS.get(collection)
    if allowed is None:
        raise ValueError(f"unknown collection {collection!r}")
    for name in fields:
        if name != "id" and name not in allowed:
            raise ValueError(f"{collection}.{name} is not a queryable field")
    for value in values:
        if value is not None and not isinstance(value, str | int | bool):
            raise TypeError(f"filter values must be scalars, got {type(value).__name__}")
        if isinstance(value, float):
            raise TypeError("float filter values are not allowed")


# Names a document may set at the top level through `update`: plain identifiers, so they can never
# become a MongoDB operator (`$inc`), a dotted path (`a.b`) or break out of an SQLite JSON path.
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_range(collection: str, bound: tuple[str, Scalar] | None) -> None:
    """A `before`/`after` bound: a declared field and a non-null scalar (null has no order)."""
    if bound is None:
        return
    if not isinstance(bound, tuple) or len(bound) != 2:
        raise TypeError("range bounds are (field, value) tuples")
    check_query(collection, (bound[0],), (bound[1],))
    if bound[1] is None:
        raise TypeError("range bound values cannot be None")


def check_limit(limit: object) -> int:
    """A page size: a non-negative int (0 returns nothing; MongoDB alone would read 0 as "all")."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, got {type(limit).__name__}")
    if limit < 0:
        raise ValueError("limit must not be negative")
    return limit


def check_id(doc_id: object) -> str:
    """Ids are non-empty strings in every backend."""
    if not isinstance(doc_id, str):
        raise TypeError(f"ids must be strings, got {type(doc_id).__name__}")
    if not doc_id:
        raise ValueError("ids must not be empty")
    return doc_id


def check_doc(doc: Mapping[str, Any]) -> str:
    """A document to store: a mapping with a string id and no `_id` (the Mongo backend owns it)."""
    if not isinstance(doc, Mapping):
        raise TypeError(f"documents must be mappings, got {type(doc).__name__}")
    if "_id" in doc:
        raise ValueError("documents must not carry `_id`; use `id`")
    return check_id(doc.get("id"))


def check_update(fields: Mapping[str, Any]) -> None:
    """`update` sets plain top-level fields and never changes the id."""
    for name in fields:
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"cannot update field {name!r}")
        if name in {"id", "_id"}:
            raise ValueError("the id of a document cannot change")


@runtime_checkable
class Store(Protocol):
    """Async document repository. All methods are safe to await from the Tornado event loop."""

    async def open(self) -> None:
        """Connect and create tables/indexes (idempotent)."""

    async def close(self) -> None:
        """Release connections and threads."""

    async def ping(self) -> None:
        """Raise if the backend cannot be reached (used by readiness)."""

    async def insert(self, collection: Collection, doc: Mapping[str, Any]) -> None:
        """Insert a new document; raise `DuplicateKey` if its id or a unique field exists."""

    async def get(self, collection: Collection, doc_id: str) -> Doc | None:
        """The document with this id, or None."""

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
        """Documents matching every equality in `where` (and `field < value` for `before`,
        `field > value` for `after`), sorted by `order_by` then id, at most `limit`."""

    async def count(self, collection: Collection, where: Mapping[str, Scalar] | None = None) -> int:
        """How many documents match."""

    async def update(
        self,
        collection: Collection,
        doc_id: str,
        fields: Mapping[str, Any],
        *,
        expect: Mapping[str, Scalar] | None = None,
    ) -> Doc | None:
        """Set top-level `fields` on the document if it exists and matches `expect`
        (compare-and-set); return the updated document, or None when nothing matched."""

    async def upsert(self, collection: Collection, doc: Mapping[str, Any]) -> None:
        """Replace the document with `doc["id"]`, inserting it if absent (idempotent)."""

    async def delete(self, collection: Collection, doc_id: str) -> bool:
        """Remove the document; True if it existed."""

    async def acquire_lease(
        self, key: str, holder: str, address: str, ttl_s: float, now: float
    ) -> Doc:
        """Take or renew the `session_leases` document `key` for `holder`, atomically across every
        process sharing the store: it is granted when absent, expired (`expires_at <= now`) or
        already `holder`'s, and then runs until `now + ttl_s`. Returns the lease as it stands after
        the call -- `holder`'s if granted, else the other holder's, unchanged. `epoch` grows by one
        each time the lease changes hands (or is taken again after expiring), so a stale owner can
        tell it was replaced. `now` is the caller's wall clock in seconds."""

    async def take_token(self, key: str, burst: int, per_s: float, now: float) -> float:
        """Spend one token of the rate-limit bucket `key` (a new bucket starts full: `burst`
        tokens, refilled at `per_s` a second), atomically across every process sharing the store.

        `now` is the caller's wall clock in seconds. Returns 0.0 when a token was spent, else the
        seconds until one will be available; a refused call writes nothing."""


def check_lease(key: object, holder: object, address: object, ttl_s: object, now: object) -> None:
    """`acquire_lease` arguments: ids, an address string, a positive ttl and a finite clock."""
    check_id(key)
    check_id(holder)
    if not isinstance(address, str):
        raise TypeError("the lease address must be a string")
    for name, value in (("ttl_s", ttl_s), ("now", now)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise ValueError(f"{name} must be a number")
    if ttl_s <= 0:  # type: ignore[operator]
        raise ValueError("ttl_s must be positive")


def next_lease(
    current: Doc | None, key: str, holder: str, address: str, ttl_s: float, now: float
) -> Doc | None:
    """The lease document after `holder` asks for it, or None when another holder's lease is still
    running. Shared by both backends, which differ only in how they write it atomically."""
    expired = current is None or float(current.get("expires_at", 0)) <= now
    if current is not None and current.get("holder") != holder and not expired:
        return None
    taken = current is None or expired or current.get("holder") != holder
    return {
        "id": key,
        "holder": holder,
        "address": address,
        "expires_at": now + ttl_s,
        "acquired_at": now if taken or current is None else current.get("acquired_at", now),
        "epoch": int((current or {}).get("epoch", 0)) + (1 if taken else 0),
        "v": int((current or {}).get("v", 0)) + 1,
    }


def check_bucket(key: object, burst: object, per_s: object, now: object) -> None:
    """`take_token` arguments: a short key, a positive burst and rate, a finite clock."""
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ValueError("bucket keys are non-empty strings of at most 200 characters")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError("burst must be a positive int")
    for name, value in (("per_s", per_s), ("now", now)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise ValueError(f"{name} must be a number")
    if per_s <= 0:  # type: ignore[operator]
        raise ValueError("per_s must be positive")


def refill(tokens: float, at: float, burst: int, per_s: float, now: float) -> float:
    """A bucket's tokens at `now` (never more than `burst`; a clock behind `at` adds nothing)."""
    return min(float(burst), tokens + max(0.0, now - at) * per_s)
