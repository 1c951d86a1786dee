"""The chat events sent to sockets, built in one place so every bus emits the same shapes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from store.protocol import Doc

Event = dict[str, Any]


def public_message(doc: Doc) -> dict[str, Any]:
    """A stored message as clients see it (text exactly as sent; clients render it as text)."""
    return {
        "id": doc["id"],
        "session_id": doc["session_id"],
        "seq": doc["seq"],
        "author": dict(doc["author"]),
        "text": doc["text"],
        "created_at": doc["created_at"],
    }


def message_event(doc: Doc) -> Event:
    return {"type": "message", "message": public_message(doc)}


def deleted_event(message_id: str) -> Event:
    return {"type": "deleted", "id": message_id}


def mutes_event(muted: Iterable[str]) -> Event:
    """The session's whole muted list: idempotent, so a repeated or reordered event is harmless."""
    return {"type": "mutes", "muted": sorted(muted)}


def ended_event() -> Event:
    return {"type": "ended"}
