"""`MediaListener`: what a session change does to the media plane (`server.events.SessionEvents`).

Stopping a stream, ending a session or changing a viewer's preferences closes or re-points exactly
the connections concerned. Events arrive from this instance's session service and, replayed from the
shared store, from other instances' (`SessionSync`), so they may come twice or late.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from server.documents import PreferencesDoc, SessionDoc, StreamDoc
from server.media.composite import LayoutKey

if TYPE_CHECKING:  # the plane holds its listener; the name is only needed for annotations
    from server.media.plane import MediaPlane

log = logging.getLogger(__name__)


class MediaListener:
    """The media plane's `SessionEvents`."""

    def __init__(self, plane: MediaPlane) -> None:
        self.plane = plane
        # The newest preferences stamp applied per (session, viewer).
        self._prefs_seen: dict[tuple[str, str], str] = {}

    async def stream_started(self, stream: StreamDoc) -> None:
        """Nothing to do until the broadcaster's offer arrives."""

    async def stream_stopped(self, stream: StreamDoc) -> None:
        await self.plane.teardown_stream(stream["id"])

    async def session_ended(self, session: SessionDoc) -> None:
        session_id = session["id"]
        plane = self.plane
        for seen in [k for k in self._prefs_seen if k[0] == session_id]:
            del self._prefs_seen[seen]
        for stream_id in [s for s, m in plane.feeds.media.items() if m.session_id == session_id]:
            await plane.teardown_stream(stream_id)
        await plane.peers.close_where(lambda p: p.session_id == session_id)
        for key in [k for k in plane.feeds.composites if k.session_id == session_id]:
            await plane.feeds.close_composite(key)
        plane.feeds.planner.forget_session(session_id)

    async def preferences_changed(self, prefs: PreferencesDoc) -> None:
        session_id, viewer_id = prefs["session_id"], prefs["viewer_id"]
        # Never let an older preference (replayed late) undo a newer one.
        updated = str(prefs.get("updated_at") or "")
        seen = self._prefs_seen.get((session_id, viewer_id), "")
        if updated and updated < seen:
            return
        self._prefs_seen[(session_id, viewer_id)] = updated or seen
        enabled = set(prefs["enabled_streams"])
        peers = self.plane.peers
        for peer in [p for p in peers if p.session_id == session_id and p.viewer_id == viewer_id]:
            if peer.role == "viewer" and peer.kind not in enabled:
                await peers.close(peer)
            elif peer.role == "composite":
                key = self.plane.feeds.layout(prefs)
                if peer.whep and peer.wanted is not None:
                    # Its URL chose the layout; only the enabled streams follow the preferences.
                    key = LayoutKey(session_id, peer.wanted.corner, peer.wanted.size_pct, key.kinds)
                if (prefs["mode"] != "composite" and not peer.whep) or not key.kinds:
                    await peers.close(peer)
                elif key != peer.wanted and peer.video is not None and peer.codec is not None:
                    # Layout follows the preference live: same connection, another shared feed
                    # (the same rung of it). Its encoding follows the streams now enabled.
                    if peer.wanted is None or key.kinds != peer.wanted.kinds:
                        peer.profile = await self.plane.composite_profile(key)
                    peer.wanted = key
                    peer.video.switch(self.plane.adaptive.rung_source(peer, peer.rung))
                    log.info(
                        "session=%s viewer=%s pc=%s layout -> %s",
                        session_id,
                        viewer_id,
                        peer.id,
                        key.name,
                    )
