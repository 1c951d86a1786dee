"""Replays control changes made through *other* instances to this instance's listeners.

With several instances on one store, any instance answers the REST API, but a session's media lives
on the instance that ingests it (`instance_id` on the session). When a broadcaster stops a stream or
ends the session, or a viewer changes its layout, through another instance, only the store changes:
this instance's media plane and chat must still hear of it. `SessionSync` polls the store for the
sessions this instance owns and calls the same `SessionEvents` the local `SessionService` would.

Which writes to replay: the `SessionService` of an instance that is not a session's owner tags its
control writes (stream start/stop, session end, preferences) `replay_on: <owner>`; the owner's own
writes carry `replay_on: null`. This instance replays a change only when it is tagged for it and
differs from what it last saw (so each change is replayed once, and never one made here, however
the store's answer and the local listener call interleave).

How changes arrive: on SQLite (one file, several processes) by polling every `interval_s`; on a
MongoDB replica set through the store's change feed, so a change reaches the owner within
milliseconds and costs no queries. After the feed opens (or loses its position) one poll catches
up with what happened before; after an interruption it resumes from the last change applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

from server.clock import iso, parse_iso, utc_now
from server.documents import (
    PreferencesDoc,
    SessionDoc,
    StreamDoc,
    as_preferences,
    as_session,
    as_stream,
)
from server.events import SessionEvents
from server.settings import Settings
from server.tasks import stop_and_wait
from store.changes import Change, ChangeFeed, ChangeFeedError, ResumeToken
from store.protocol import Collection, Doc, Store

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
# Preferences are read back this far behind the newest `updated_at` seen, so two writes with close
# timestamps committed out of order are both caught (duplicates are filtered by id + updated_at).
_PREFS_OVERLAP = timedelta(seconds=5)
_MAX_DOCS = 1000
_WATCHED: tuple[Collection, ...] = ("broadcast_sessions", "broadcast_streams", "viewer_preferences")
RETRY_S = 1.0


class SessionSync:
    """Hears changes to this instance's sessions made elsewhere (a feed, or polls); tells `targets`."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        targets: Iterable[SessionEvents],
        interval_s: float = INTERVAL_S,
        *,
        feed: ChangeFeed | None = None,
        retry_s: float = RETRY_S,
    ) -> None:
        self.store = store
        self.instance_id = settings.instance_id
        self.targets = list(targets)
        self.interval_s = interval_s
        self.feed = feed
        self.retry_s = retry_s
        # Set once the feed is open and caught up: changes from then on are delivered.
        self.following = asyncio.Event()
        self._stop = asyncio.Event()
        self.interruptions = 0
        # The last change applied from the feed (changes arrive in commit order).
        self.last_change: Change | None = None
        self._sessions: set[str] = set()
        self._ended: set[str] = set()
        self._streams: dict[str, str] = {}
        self._prefs_seen: dict[str, str] = {}
        self._prefs_newest: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self.replayed = 0

    # -- local changes (this instance's SessionService) -------------------------------------------

    async def stream_started(self, stream: StreamDoc) -> None:
        self._streams[stream["id"]] = stream["status"]

    async def stream_stopped(self, stream: StreamDoc) -> None:
        self._streams[stream["id"]] = stream["status"]

    async def session_ended(self, session: SessionDoc) -> None:
        self._ended.add(session["id"])

    async def preferences_changed(self, prefs: PreferencesDoc) -> None:
        self._prefs_seen[prefs["id"]] = prefs["updated_at"]

    # -- polling ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if not await stop_and_wait(self._task, self._stop):
            log.warning("session sync did not stop; abandoned instance=%s", self.instance_id)
        self._task = None

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless asked to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run(self) -> None:
        if self.feed is not None:
            await self._follow(self.feed)
            return
        while not self._stop.is_set():
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("session sync poll failed instance=%s", self.instance_id, exc_info=True)
            await self._pause(self.interval_s)

    async def _follow(self, feed: ChangeFeed) -> None:
        token: ResumeToken | None = None
        while not self._stop.is_set():
            try:
                async with feed.watch(_WATCHED, resume_after=token, stop=self._stop) as changes:
                    if token is None:
                        await self.poll()  # what changed before the feed opened
                    self.following.set()
                    async for change in changes:
                        await self.apply(change)
                        token = change.token
                        self.last_change = change
            except asyncio.CancelledError:
                raise
            except ChangeFeedError as exc:
                self.interruptions += 1
                self.following.clear()
                if not exc.resumable:
                    token = None
                log.warning("session sync feed interrupted (%s) instance=%s", exc, self.instance_id)
            except Exception:
                self.interruptions += 1
                self.following.clear()
                log.warning("session sync failed instance=%s", self.instance_id, exc_info=True)
            await self._pause(self.retry_s)

    async def apply(self, change: Change) -> None:
        """One change from the feed, diffed and replayed like a poll would."""
        doc = change.document
        if doc is None:
            return
        if change.collection == "broadcast_sessions":
            await self._session_seen(doc)
        elif change.collection == "broadcast_streams":
            if doc.get("session_id") in self._sessions:
                await self._stream_seen(doc)
        elif change.collection == "viewer_preferences":
            if self._prefs_newest is None:
                self._prefs_newest = utc_now()
            await self._prefs_seen_now(doc, self._sessions)

    def _for_me(self, doc: Doc) -> bool:
        """A change another instance made to a session this instance owns."""
        return doc.get("replay_on") == self.instance_id

    async def _session_seen(self, session: Doc) -> None:
        session_id = session["id"]
        if session.get("instance_id") != self.instance_id:
            return
        if session.get("status") == "live":
            self._sessions.add(session_id)
            return
        if session_id not in self._sessions:
            return
        self._sessions.discard(session_id)
        if session.get("status") == "ended":
            if session_id not in self._ended and self._for_me(session):
                await self._replay(
                    "session_ended", session, lambda t, d: t.session_ended(as_session(d))
                )
            self._ended.discard(session_id)

    async def _stream_seen(self, stream: Doc) -> None:
        before = self._streams.get(stream["id"])
        now = stream["status"]
        self._streams[stream["id"]] = now
        if before is None or before == now or not self._for_me(stream):
            return
        if now == "stopped":
            await self._replay(
                "stream_stopped", stream, lambda t, d: t.stream_stopped(as_stream(d))
            )
        elif now == "pending" and before in ("stopped", "failed"):
            await self._replay(
                "stream_started", stream, lambda t, d: t.stream_started(as_stream(d))
            )

    async def _prefs_seen_now(self, prefs: Doc, live: set[str]) -> None:
        if not self._for_me(prefs):
            return
        stamp = str(prefs.get("updated_at"))
        if self._prefs_newest is not None:
            with contextlib.suppress(ValueError):
                self._prefs_newest = max(self._prefs_newest, parse_iso(stamp))
        if self._prefs_seen.get(prefs["id"]) == stamp:
            return
        self._prefs_seen[prefs["id"]] = stamp
        if prefs["session_id"] in live:
            await self._replay(
                "preferences_changed", prefs, lambda t, d: t.preferences_changed(as_preferences(d))
            )

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
            if session is None:
                self._sessions.discard(session_id)
            else:
                await self._session_seen(session)
        for session in owned:
            self._sessions.add(session["id"])
            streams = await self.store.find(
                "broadcast_streams", {"session_id": session["id"]}, limit=10
            )
            for stream in streams:
                await self._stream_seen(stream)
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
                await self._prefs_seen_now(prefs, live)
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

    async def _replay(
        self,
        event: str,
        doc: Doc,
        call: Callable[[SessionEvents, Doc], Awaitable[None]],
    ) -> None:
        """Tell every target; `call` names the listener method directly, so mypy checks it."""
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
                await call(target, doc)
            except Exception:
                log.exception("session=%s replaying %s failed", session_id, event)
