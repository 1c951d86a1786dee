"""Replays control changes made through *other* instances to this instance's listeners.

With several instances on one store, any instance answers the REST API, but a session's media lives
on the instance that ingests it (`instance_id` on the session). When a broadcaster stops a stream or
ends the session, or a viewer changes its layout, through another instance, only the store changes:
this instance's media plane and chat must still hear of it. `SessionSync` polls the store for the
sessions this instance owns and calls the same `SessionEvents` the local `SessionService` would.

It also listens to the local `SessionService`, so changes made here are recorded as already seen and
never replayed twice. Polling suits SQLite (one file, several processes); on a MongoDB replica set
the same diff could be fed by a change stream, as the chat bus is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from server.clock import iso, parse_iso, utc_now
from server.events import SessionEvents
from server.settings import Settings
from store.protocol import Doc, Store

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
# Preferences are read back this far behind the newest `updated_at` seen, so two writes with close
# timestamps committed out of order are both caught (duplicates are filtered by id + updated_at).
_PREFS_OVERLAP = timedelta(seconds=5)
_MAX_DOCS = 1000


class SessionSync:
    """Polls the store for changes to this instance's sessions made elsewhere; tells `targets`."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        targets: Iterable[SessionEvents],
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.store = store
        self.instance_id = settings.instance_id
        self.targets = list(targets)
        self.interval_s = interval_s
        self._sessions: set[str] = set()
        self._ended: set[str] = set()
        self._streams: dict[str, str] = {}
        self._prefs_seen: dict[str, str] = {}
        self._prefs_newest: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self.replayed = 0

    # -- local changes (this instance's SessionService) -------------------------------------------

    async def stream_started(self, stream: Doc) -> None:
        self._streams[stream["id"]] = stream["status"]

    async def stream_stopped(self, stream: Doc) -> None:
        self._streams[stream["id"]] = stream["status"]

    async def session_ended(self, session: Doc) -> None:
        self._ended.add(session["id"])

    async def preferences_changed(self, prefs: Doc) -> None:
        self._prefs_seen[prefs["id"]] = prefs["updated_at"]

    # -- polling ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("session sync poll failed instance=%s", self.instance_id, exc_info=True)
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> None:
        """One diff of the store against what this instance last saw; replays remote changes."""
        owned = await self.store.find(
            "broadcast_sessions",
            {"status": "live", "instance_id": self.instance_id},
            limit=_MAX_DOCS,
        )
        live = {s["id"] for s in owned}
        for session_id in sorted(self._sessions - live):
            session = await self.store.get("broadcast_sessions", session_id)
            self._sessions.discard(session_id)
            if session is not None and session["status"] == "ended":
                if session_id not in self._ended:
                    await self._replay("session_ended", session)
                self._ended.discard(session_id)
        for session in owned:
            self._sessions.add(session["id"])
            streams = await self.store.find(
                "broadcast_streams", {"session_id": session["id"]}, limit=10
            )
            for stream in streams:
                before = self._streams.get(stream["id"])
                now = stream["status"]
                self._streams[stream["id"]] = now
                if before is None or before == now:
                    continue
                if now == "stopped":
                    await self._replay("stream_stopped", stream)
                elif now == "pending" and before in ("stopped", "failed"):
                    await self._replay("stream_started", stream)
        await self._poll_preferences(live)

    async def _poll_preferences(self, live: set[str]) -> None:
        if self._prefs_newest is None:
            # Baseline: only changes after this instance started can be news to it.
            self._prefs_newest = utc_now()
            return
        since = iso(self._prefs_newest - _PREFS_OVERLAP)
        while True:
            # Only writes other instances made to this instance's sessions (`replay_on`): local
            # writes are never news, and re-reading them every poll cost this loop in proportion to
            # the local write rate.
            changed = await self.store.find(
                "viewer_preferences",
                {"replay_on": self.instance_id},
                order_by="updated_at",
                after=("updated_at", since),
                limit=_MAX_DOCS,
            )
            for prefs in changed:
                stamp = str(prefs.get("updated_at"))
                with contextlib.suppress(ValueError):
                    self._prefs_newest = max(self._prefs_newest, parse_iso(stamp))
                if self._prefs_seen.get(prefs["id"]) == stamp:
                    continue
                self._prefs_seen[prefs["id"]] = stamp
                if prefs["session_id"] in live:
                    await self._replay("preferences_changed", prefs)
            if len(changed) < _MAX_DOCS:
                break
            # A full page: page on from just before its last stamp (writes sharing that millisecond
            # are read again and skipped as seen), not from the overlap, or a burst of more than a
            # page inside the overlap window would be read again forever. A page all in one
            # millisecond pages strictly after it instead.
            last = str(changed[-1].get("updated_at"))
            try:
                step = iso(parse_iso(last) - timedelta(milliseconds=1))
            except ValueError:
                step = last
            since = step if step > since else last
        horizon = iso(self._prefs_newest - 2 * _PREFS_OVERLAP)
        for key in [k for k, v in self._prefs_seen.items() if v < horizon]:
            del self._prefs_seen[key]

    async def _replay(self, event: str, doc: Doc) -> None:
        self.replayed += 1
        session_id = doc.get("session_id", doc["id"])
        log.info(
            "session=%s %s made elsewhere, replayed instance=%s",
            session_id,
            event,
            self.instance_id,
        )
        for target in self.targets:
            try:
                await getattr(target, event)(doc)
            except Exception:
                log.exception("session=%s replaying %s failed", session_id, event)
