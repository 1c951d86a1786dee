"""Live viewers per session: who is connected right now, not who ever joined.

Connections to this instance are tracked here; `remote` holds the other instances' counts, kept
current by `server.cluster_presence.PresenceSync` (empty on a single instance)."""

from __future__ import annotations

from collections import defaultdict


class Presence:
    """Connection keys per session and viewer. A viewer with two connections counts once."""

    def __init__(self) -> None:
        self._by_session: dict[str, dict[str, set[str]]] = defaultdict(dict)
        # Session id -> viewers connected to other instances (as of their last heartbeat).
        self.remote: dict[str, int] = {}

    def add(self, session_id: str, viewer_id: str, key: str) -> None:
        self._by_session[session_id].setdefault(viewer_id, set()).add(key)

    def remove(self, session_id: str, key: str) -> None:
        viewers = self._by_session.get(session_id)
        if not viewers:
            return
        for viewer_id, keys in list(viewers.items()):
            keys.discard(key)
            if not keys:
                del viewers[viewer_id]
        if not viewers:
            del self._by_session[session_id]

    def count(self, session_id: str) -> int:
        """Viewers of the session across every instance."""
        return self.local_count(session_id) + self.remote.get(session_id, 0)

    def local_count(self, session_id: str) -> int:
        return len(self._by_session.get(session_id, {}))

    def local_counts(self) -> dict[str, int]:
        """Session id -> viewers connected to this instance (sessions with none are absent)."""
        return {sid: len(viewers) for sid, viewers in self._by_session.items() if viewers}

    def total(self) -> int:
        """Viewers connected to this instance (its load; `/metrics`)."""
        return sum(len(v) for v in self._by_session.values())
