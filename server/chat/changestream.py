"""Chat fan-out across instances over MongoDB change streams (needs a replica set or sharded cluster).

Each instance opens ONE database-level change stream filtered to chat messages and session updates.
The store write *is* the publication: an inserted message, a message flagged `deleted`, a session's
`chat_muted` list or `status: ended` each become an event for every instance, this one included, so
`publish` does nothing here. On a driver error the stream resumes from the last resume token, so no
event committed meanwhile is lost (within the oplog window). Translation is a pure function,
`events_from_change`, tested with change documents in the server's documented shape; the watch loop
itself needs a real replica set, which the test environment does not have.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from server.chat.bus import Sink
from server.chat.events import Event, deleted_event, ended_event, message_event, mutes_event
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PIPELINE: Final[list[dict[str, Any]]] = [
    {
        "$match": {
            "$or": [
                {"ns.coll": "chat_messages", "operationType": {"$in": ["insert", "update"]}},
                {"ns.coll": "broadcast_sessions", "operationType": "update"},
            ]
        }
    }
]


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


def events_from_change(change: dict[str, Any]) -> list[tuple[str, Event]]:
    """The chat events one change-stream document means, as `(session_id, event)` pairs."""
    coll = change.get("ns", {}).get("coll")
    op = change.get("operationType")
    full = change.get("fullDocument")
    updated = (change.get("updateDescription") or {}).get("updatedFields") or {}
    if coll == "chat_messages" and isinstance(full, dict):
        doc = _strip(full)
        if op == "insert" and not doc.get("deleted"):
            return [(doc["session_id"], message_event(doc))]
        if op == "update" and updated.get("deleted") is True:
            return [(doc["session_id"], deleted_event(doc["id"]))]
        return []
    if coll == "broadcast_sessions" and op == "update":
        session_id = str((change.get("documentKey") or {}).get("_id", ""))
        if not session_id:
            return []
        out: list[tuple[str, Event]] = []
        if "chat_muted" in updated:
            out.append((session_id, mutes_event(updated["chat_muted"] or [])))
        if updated.get("status") == "ended":
            out.append((session_id, ended_event()))
        return out
    return []


class ChangeStreamBus:
    """`ChatBus` for several instances sharing one MongoDB replica set."""

    def __init__(self, database: Any, *, retry_s: float = 1.0) -> None:
        self._db = database  # a pymongo AsyncDatabase
        self._retry_s = retry_s
        self._sink: Sink | None = None
        self._task: asyncio.Task[None] | None = None
        self._resume_token: Any = None

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def publish(self, session_id: str, event: Event) -> None:
        """Nothing to do: the change stream delivers the store write to every instance."""

    async def _run(self) -> None:
        from pymongo.errors import PyMongoError

        while True:
            try:
                stream = await self._db.watch(
                    PIPELINE, full_document="updateLookup", resume_after=self._resume_token
                )
                async with stream:
                    async for change in stream:
                        self._resume_token = stream.resume_token
                        self._deliver(change)
            except asyncio.CancelledError:
                raise
            except PyMongoError as exc:
                log.warning("chat change stream interrupted (%s); resuming", exc)
                await asyncio.sleep(self._retry_s)

    def _deliver(self, change: dict[str, Any]) -> None:
        if self._sink is None:
            return
        for session_id, event in events_from_change(change):
            try:
                self._sink(session_id, event)
            except Exception:
                log.exception("session=%s chat event delivery failed", session_id)

    async def close(self) -> None:
        self._sink = None
        await cancel_and_wait(self._task)
        self._task = None
