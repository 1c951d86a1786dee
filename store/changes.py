"""Change feeds: a store that pushes its committed writes to every instance that listens.

MongoDB (a replica set or a sharded cluster) does this with change streams; SQLite does not, and
its users poll. Features that can use a feed (the chat bus, `SessionSync`) ask for it through this
protocol instead of reaching into a backend: `isinstance(store, ChangeFeed)` and then
`await store.change_feed_available()` (a standalone `mongod` is a `MongoStore` without a feed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from store.protocol import Collection, Doc

log = logging.getLogger(__name__)

# Opaque: a position in the feed to resume after (MongoDB's `{"_data": ...}` resume token).
ResumeToken = Mapping[str, Any]


@dataclass(frozen=True)
class Change:
    """One committed write, as every listening instance receives it."""

    collection: str
    operation: str  # "insert" | "update" | "replace" | "delete"
    doc_id: str
    # The document after the write, as `Store.get` returns it; for an update it is read when the
    # change is delivered (so it may already show later writes); None after a delete.
    document: Doc | None
    token: ResumeToken
    # The top-level fields an update set (empty for other operations).
    updated_fields: Mapping[str, Any] = field(default_factory=dict)


class ChangeFeedError(Exception):
    """The feed broke. `resumable` is False when the position is gone (reopen without a token,
    after reading the store again: changes in between cannot be delivered)."""

    def __init__(self, message: str, *, resumable: bool = True) -> None:
        super().__init__(message)
        self.resumable = resumable


@runtime_checkable
class ChangeFeed(Protocol):
    """A store whose writes can be watched."""

    async def change_feed_available(self) -> bool:
        """Whether `watch` works here (MongoDB: a replica set or a sharded cluster)."""

    def watch(
        self,
        collections: Sequence[Collection],
        *,
        resume_after: ResumeToken | None = None,
        stop: asyncio.Event | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[Change]]:
        """Changes to `collections` committed after `resume_after` (or after the feed opens), in
        commit order. The iterator raises `ChangeFeedError` when the feed breaks, and ends soon
        (about a second) after `stop` is set: stop feeds that way, not by cancelling the task
        iterating them (see `server.tasks.stop_and_wait`)."""


async def feed_of(store: object) -> ChangeFeed | None:
    """`store` as a change feed when its backend can deliver one, else None (and why, logged).

    Pass the backend itself, not a wrapper: `isinstance` on a protocol looks at the class.
    """
    if not isinstance(store, ChangeFeed):
        return None
    try:
        available = await store.change_feed_available()
    except Exception as exc:
        log.warning("store: cannot tell whether change streams work (%s); polling instead", exc)
        return None
    if not available:
        log.warning(
            "store: MongoDB is not a replica set, so no change streams: live chat is per instance "
            "and other instances' control changes are polled"
        )
        return None
    return store
