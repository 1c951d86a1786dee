"""Finished and running recordings: who may list them and which file a download serves.

The session's broadcaster sees every recording of its session; a viewer sees the recordings of the
streams its preferences enable (the ones it was allowed to watch live).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.auth import Claims
from server.errors import Forbidden, NotFound
from server.validation import check_id
from store.protocol import Doc, Store

PUBLIC_FIELDS = (
    "id",
    "session_id",
    "stream_id",
    "kind",
    "status",
    "format",
    "video_codec",
    "audio_codec",
    "started_at",
    "ended_at",
    "duration_s",
    "bytes",
)


class RecordingLibrary:
    def __init__(self, store: Store, sessions: Any, recordings_dir: Path) -> None:
        self.store = store
        self.sessions = sessions
        self.root = recordings_dir

    async def _visible_kinds(self, claims: Claims, session_id: str) -> set[str] | None:
        """None means every kind (the broadcaster)."""
        await self.sessions.get_session(session_id)
        if claims.session_id != session_id:
            raise Forbidden("token belongs to another session")
        if claims.role == "broadcaster":
            return None
        prefs = await self.sessions.preferences_for(session_id, claims.viewer_id or "")
        return set(prefs["enabled_streams"])

    async def list(self, claims: Claims, session_id: str) -> list[dict[str, Any]]:
        kinds = await self._visible_kinds(claims, session_id)
        docs = await self.store.find(
            "recordings", {"session_id": session_id}, order_by="started_at", limit=1000
        )
        return [public(d) for d in docs if kinds is None or d.get("kind") in kinds]

    async def file(self, claims: Claims, session_id: str, recording_id: str) -> tuple[Doc, str]:
        """The recording and its file path relative to `root`, if this token may download it."""
        check_id(recording_id, "recording")
        kinds = await self._visible_kinds(claims, session_id)
        doc = await self.store.get("recordings", recording_id)
        if doc is None or doc["session_id"] != session_id:
            raise NotFound("recording not found", code="recording_not_found")
        if kinds is not None and doc.get("kind") not in kinds:
            raise Forbidden(
                "this recording's stream is not enabled for this viewer", code="stream_not_enabled"
            )
        if not (self.root / doc["file"]).is_file():
            raise NotFound("recording file is gone", code="recording_not_found")
        return doc, str(doc["file"])


def public(doc: Doc) -> dict[str, Any]:
    return {k: doc.get(k) for k in PUBLIC_FIELDS}
