"""Finished and running recordings: who may list them and which file a download serves.

The rule is `server.entitlement`'s, the same as live signaling: the session's broadcaster sees every
recording of its session; a viewer sees the recordings of the streams its preferences enable and,
on a priced session, has paid for (402 otherwise) -- during the session and after it ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.auth import Claims
from server.errors import NotFound
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

    async def _visible_kinds(self, claims: Claims, session_id: str) -> set[str]:
        session = await self.sessions.get_session(session_id)
        kinds: set[str] = await self.sessions.entitlement.visible_kinds(claims, session)
        return kinds

    async def list(self, claims: Claims, session_id: str) -> list[dict[str, Any]]:
        kinds = await self._visible_kinds(claims, session_id)
        docs = await self.store.find(
            "recordings", {"session_id": session_id}, order_by="started_at", limit=1000
        )
        return [public(d) for d in docs if d.get("kind") in kinds]

    async def file(self, claims: Claims, session_id: str, recording_id: str) -> tuple[Doc, str]:
        """The recording and its file path relative to `root`, if this token may download it."""
        check_id(recording_id, "recording")
        session = await self.sessions.get_session(session_id)
        self.sessions.entitlement.check_session(claims, session_id)
        doc = await self.store.get("recordings", recording_id)
        if doc is None or doc["session_id"] != session_id:
            raise NotFound("recording not found", code="recording_not_found")
        await self.sessions.entitlement.require(claims, session, [doc.get("kind")])
        if not (self.root / doc["file"]).is_file():
            raise NotFound("recording file is gone", code="recording_not_found")
        return doc, str(doc["file"])


def public(doc: Doc) -> dict[str, Any]:
    return {k: doc.get(k) for k in PUBLIC_FIELDS}
