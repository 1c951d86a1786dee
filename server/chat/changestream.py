"""Chat fan-out across instances over MongoDB change streams (needs a replica set or sharded cluster).

Each instance opens ONE change feed (`store.changes.ChangeFeed`) over chat messages and sessions.
The store write *is* the publication: an inserted message, a message flagged `deleted`, a session's
`chat_muted` list or `status: ended` each become an event for every instance, this one included, so
`publish` does nothing here. When the feed breaks it is reopened after the last change delivered,
so no event committed meanwhile is lost (within the oplog window). Translation is a pure function,
`events_from_change`; tests/test_chat_instances.py runs the whole loop across two server processes
on a MongoDB wire server, with the feed cut mid-conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from server.chat.bus import Sink
from server.chat.events import Event, deleted_event, ended_event, message_event, mutes_event
from server.tasks import stop_and_wait
from store.changes import Change, ChangeFeed, ChangeFeedError, ResumeToken
from store.protocol import Collection

log = logging.getLogger(__name__)

COLLECTIONS: tuple[Collection, ...] = ("chat_messages", "broadcast_sessions")


def events_from_change(change: Change) -> list[tuple[str, Event]]:
    """The chat events one committed write means, as `(session_id, event)` pairs."""
    doc = change.document
    updated = change.updated_fields
    if change.collection == "chat_messages" and doc is not None:
        if change.operation == "insert" and not doc.get("deleted"):
            return [(doc["session_id"], message_event(doc))]
        if change.operation == "update" and updated.get("deleted") is True:
            return [(doc["session_id"], deleted_event(doc["id"]))]
        return []
    if change.collection == "broadcast_sessions" and change.operation == "update":
        session_id = change.doc_id
        out: list[tuple[str, Event]] = []
        if "chat_muted" in updated:
            out.append((session_id, mutes_event(updated["chat_muted"] or [])))
        if updated.get("status") == "ended":
            out.append((session_id, ended_event()))
        return out
    return []


class ChangeStreamBus:
    """`ChatBus` for several instances sharing one MongoDB replica set."""

    def __init__(self, feed: ChangeFeed, *, retry_s: float = 1.0) -> None:
        self._feed = feed
        self._retry_s = retry_s
        self._sink: Sink | None = None
        self._task: asyncio.Task[None] | None = None
        self._resume_token: ResumeToken | None = None
        self._stop = asyncio.Event()
        self.interruptions = 0

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def publish(self, session_id: str, event: Event) -> None:
        """Nothing to do: the change stream delivers the store write to every instance."""

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                async with self._feed.watch(
                    COLLECTIONS, resume_after=self._resume_token, stop=self._stop
                ) as feed:
                    async for change in feed:
                        self._resume_token = change.token
                        self._deliver(change)
            except asyncio.CancelledError:
                raise
            except ChangeFeedError as exc:
                self.interruptions += 1
                if exc.resumable:
                    log.warning("chat change stream interrupted (%s); resuming", exc)
                else:
                    # The oplog no longer holds our position: events in the gap are lost to live
                    # sockets (history still has the messages).
                    log.error("chat change stream lost its position (%s); reopening", exc)
                    self._resume_token = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._retry_s)

    def _deliver(self, change: Change) -> None:
        if self._sink is None:
            return
        for session_id, event in events_from_change(change):
            try:
                self._sink(session_id, event)
            except Exception:
                log.exception("session=%s chat event delivery failed", session_id)

    async def close(self) -> None:
        self._sink = None
        if not await stop_and_wait(self._task, self._stop):
            log.warning("chat change stream did not stop; abandoned")
        self._task = None
