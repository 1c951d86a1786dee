"""Viewer counts across instances: each instance publishes its own, every instance adds them up.

`Presence` knows the viewers connected to this process. With several instances a session's viewers
may be connected elsewhere (its owner, or an instance relaying it), yet any instance answers
`GET /session/{id}/status` and the stream list. So every `lease_heartbeat_s` each instance writes
its non-zero counts to `session_viewers` (one small document per session and instance, expiring
after `lease_ttl_s`, so a crashed instance's viewers stop counting when its leases would) and reads
the other instances' fresh ones into `Presence.remote`. A count is then this instance's viewers
now plus the others' as of their last heartbeat (at most `lease_heartbeat_s` old).

A viewer connected to two instances at once (its screen here, its camera there) counts on each;
viewers are assigned per connection, so that double count is possible but rare, and never lasts
longer than the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from server.presence import Presence
from server.settings import Settings
from store.protocol import Store

log = logging.getLogger(__name__)

COLLECTION: Final = "session_viewers"
# Documents of instances gone this long are deleted by whichever instance reads them.
FORGET_AFTER_S = 60.0
MAX_DOCS = 10_000
# How long closing waits for a round under way before cutting it short.
CLOSE_WAIT_S = 5.0


def _ms(seconds: float) -> int:
    """Store filters take integers (no floats): expiry in milliseconds since the epoch."""
    return int(seconds * 1000)


class PresenceSync:
    """Publish this instance's viewer counts and fold in everyone else's, every heartbeat."""

    def __init__(self, store: Store, presence: Presence, settings: Settings) -> None:
        self.store = store
        self.presence = presence
        self.instance_id = settings.instance_id
        self.interval_s = settings.lease_heartbeat_s
        self.ttl_s = settings.lease_ttl_s
        # Session id -> the count this instance last wrote (to skip unchanged writes).
        self._written: dict[str, int] = {}
        self._written_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="presence-sync")

    async def close(self) -> None:
        """Stop after the round under way (never cancelled inside a store call: a MongoDB
        operation cut short there once held a closing CLI command for a minute), then remove
        this instance's counts."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, CLOSE_WAIT_S)
        # Leaving: this instance's viewers stop counting at once, not when their documents expire.
        for session_id in list(self._written):
            with contextlib.suppress(Exception):
                await self.store.delete(COLLECTION, self._doc_id(session_id))

    async def _loop(self) -> None:
        # The first round comes one interval after the start: a short-lived process (a CLI
        # command opening the services) is gone before it.
        while not await self._stopped_within(self.interval_s):
            try:
                await self.sync()
            except Exception:
                log.exception("viewer counts could not be shared (retrying)")

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _doc_id(self, session_id: str) -> str:
        return f"{session_id}@{self.instance_id}"

    async def sync(self) -> None:
        """One round: write what changed (and refresh before expiry), read the others."""
        now = time.time()
        await self._publish(now)
        await self._collect(now)

    async def _publish(self, now: float) -> None:
        counts = self.presence.local_counts()
        refresh = now - self._written_at >= self.ttl_s / 2
        for session_id, count in counts.items():
            if not refresh and self._written.get(session_id) == count:
                continue
            await self.store.upsert(
                COLLECTION,
                {
                    "id": self._doc_id(session_id),
                    "session_id": session_id,
                    "instance_id": self.instance_id,
                    "count": count,
                    "expires_at": _ms(now + self.ttl_s),
                },
            )
            self._written[session_id] = count
        for session_id in [s for s in self._written if s not in counts]:
            await self.store.delete(COLLECTION, self._doc_id(session_id))
            del self._written[session_id]
        if refresh:
            self._written_at = now

    async def _collect(self, now: float) -> None:
        fresh = await self.store.find(
            COLLECTION, after=("expires_at", _ms(now)), limit=MAX_DOCS, order_by="expires_at"
        )
        remote: dict[str, int] = {}
        for doc in fresh:
            if doc.get("instance_id") == self.instance_id:
                continue
            session_id = str(doc.get("session_id", ""))
            remote[session_id] = remote.get(session_id, 0) + int(doc.get("count") or 0)
        self.presence.remote = remote
        for doc in await self.store.find(
            COLLECTION, before=("expires_at", _ms(now - FORGET_AFTER_S)), limit=100
        ):
            await self.store.delete(COLLECTION, doc["id"])
