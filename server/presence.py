"""Live viewers per session on this instance: who is connected right now, not who ever joined."""

from __future__ import annotations

from collections import defaultdict


class Presence:
    """Connection keys per session and viewer. A viewer with two connections counts once."""

    def __init__(self) -> None:
        self._by_session: dict[str, dict[str, set[str]]] = defaultdict(dict)

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
        return len(self._by_session.get(session_id, {}))

    def total(self) -> int:
        return sum(len(v) for v in self._by_session.values())
