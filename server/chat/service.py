"""Session chat: store, fan out, page history, moderate (delete, mute) and rate-limit.

Every change is written to the store before it is announced on the bus, so a late joiner's history
and a live socket never disagree, and any instance can serve any session's chat. The service holds
this instance's sockets ("peers") per session and forwards bus events to them.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from server.auth import Claims
from server.chat.bus import ChatBus, Event
from server.chat.events import (
    deleted_event,
    ended_event,
    message_event,
    mutes_event,
    public_message,
)
from server.chat.ratelimit import TokenBucket
from server.clock import iso, utc_now
from server.documents import ChatMessageDoc, PreferencesDoc, SessionDoc, StreamDoc, as_doc
from server.errors import Conflict, Forbidden, Invalid, NotFound, PayloadTooLarge
from server.ids import new_id
from server.validation import check_id
from server.validation import check_text as check_plain_text
from store.protocol import Doc, Store

log = logging.getLogger(__name__)

# WebSocket close codes (4000-4999 are the application's own, RFC 6455 §7.4.2).
CLOSE_RATE_LIMITED: Final = 4008
CLOSE_SESSION_ENDED: Final = 4010
CLOSE_GOING_AWAY: Final = 1001

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
SEQ_PATTERN: Final = r"[0-9]{16}[0-9a-f]{8}"  # also the `before` parameter's OpenAPI pattern
_SEQ_RE: Final = re.compile(SEQ_PATTERN)


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Per-connection and per-message limits (defaults suit a human typing)."""

    max_text_chars: int = 500
    max_name_chars: int = 40
    max_frame_bytes: int = 8 * 1024
    burst: int = 5
    per_second: float = 1.0
    # Consecutive throttled messages tolerated before the connection is closed.
    max_strikes: int = 10
    history_default: int = 50
    history_max: int = 100


class ChatPeer(Protocol):
    """One open chat socket on this instance."""

    def deliver(self, event: Event) -> None:
        """Send an event; must not raise if the socket is already closing."""

    def close_with(self, code: int, reason: str) -> None:
        """Close the socket with this code and reason."""


def make_seq(moment: datetime) -> str:
    """A sortable, unique position: microseconds since the epoch then 32 random bits (hex).

    Ordered by time across instances (to clock accuracy) with no shared counter, and usable as the
    `before` cursor of history paging.
    """
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    return f"{micros:016d}{secrets.token_hex(4)}"


def check_text(text: object, limits: ChatLimits) -> str:
    """The message text, stored exactly as sent once it passes: non-blank, bounded, printable."""
    if not isinstance(text, str):
        raise Invalid("text must be a string", code="invalid_message")
    if not text.strip():
        raise Invalid("text must not be empty", code="invalid_message")
    if len(text) > limits.max_text_chars:
        raise PayloadTooLarge(
            f"message is {len(text)} characters; at most {limits.max_text_chars}",
            code="message_too_long",
        )
    # The one text rule titles and names follow too (multi-line: newlines are allowed here).
    return check_plain_text(text, "text", multiline=True, code="invalid_message")


def check_name(name: object, limits: ChatLimits) -> str | None:
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise Invalid("name must be plain text", code="invalid_name")
    check_plain_text(name, "name", code="invalid_name")
    name = " ".join(name.split())
    if len(name) > limits.max_name_chars:
        raise Invalid(
            f"name must be at most {limits.max_name_chars} characters", code="invalid_name"
        )
    return name or None


class SessionLookup(Protocol):
    async def get_session(self, session_id: str) -> Doc: ...


class ChatService:
    """Chat for every session, over the store and a `ChatBus`."""

    def __init__(
        self,
        store: Store,
        sessions: SessionLookup,
        bus: ChatBus,
        limits: ChatLimits | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.bus = bus
        self.limits = limits or ChatLimits()
        self.clock = clock
        self._peers: dict[str, set[ChatPeer]] = {}
        bus.start(self._on_event)

    # -- peers on this instance ----------------------------------------------------------------

    def attach(self, session_id: str, peer: ChatPeer) -> None:
        self._peers.setdefault(session_id, set()).add(peer)

    def detach(self, session_id: str, peer: ChatPeer) -> None:
        peers = self._peers.get(session_id)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self._peers[session_id]

    def peer_count(self, session_id: str) -> int:
        return len(self._peers.get(session_id, ()))

    def new_bucket(self) -> TokenBucket:
        return TokenBucket(self.limits.burst, self.limits.per_second)

    def _on_event(self, session_id: str, event: Event) -> None:
        """Bus sink: forward to this instance's sockets of the session."""
        for peer in list(self._peers.get(session_id, ())):
            peer.deliver(event)
        if event["type"] == "ended":
            for peer in list(self._peers.get(session_id, ())):
                peer.close_with(CLOSE_SESSION_ENDED, "session ended")

    # -- access --------------------------------------------------------------------------------

    async def authorize(self, claims: Claims, session_id: str, *, live: bool) -> Doc:
        """The session, if `claims` belong to it (viewer or broadcaster) and, if asked, it is live."""
        check_id(session_id, "session")
        if claims.session_id != session_id:
            raise Forbidden("token belongs to another session")
        session = await self.sessions.get_session(session_id)
        if live and session["status"] != "live":
            raise Conflict("session has ended", code="session_ended")
        return session

    @staticmethod
    def author_of(claims: Claims, name: str | None) -> dict[str, Any]:
        author: dict[str, Any] = {"role": claims.role, "viewer_id": claims.viewer_id}
        if name:
            author["name"] = name
        return author

    # -- messages ------------------------------------------------------------------------------

    async def post(self, claims: Claims, session_id: str, text: object, name: str | None) -> Doc:
        """Store and broadcast one message from a participant who is not muted."""
        text = check_text(text, self.limits)
        session = await self.authorize(claims, session_id, live=True)
        if claims.role == "viewer" and claims.viewer_id in (session.get("chat_muted") or []):
            raise Forbidden("the broadcaster has muted you in this chat", code="muted")
        now = self.clock()
        doc: ChatMessageDoc = {
            "id": new_id("msg"),
            "session_id": session_id,
            "seq": make_seq(now),
            "author": self.author_of(claims, name),
            "text": text,
            "created_at": iso(now),
            "deleted": False,
        }
        await self.store.insert("chat_messages", doc)
        await self.bus.publish(session_id, message_event(as_doc(doc)))
        return as_doc(doc)

    async def history(
        self, claims: Claims, session_id: str, before: str | None, limit: object
    ) -> dict[str, Any]:
        """Undeleted messages older than `before` (a `seq`), oldest first; `next_before` pages on."""
        await self.authorize(claims, session_id, live=False)
        return await self.recent(session_id, before, limit)

    async def recent(self, session_id: str, before: str | None, limit: object) -> dict[str, Any]:
        count = self._limit(limit)
        if before is not None and not _SEQ_RE.fullmatch(before):
            raise Invalid(
                "before must be a message seq from an earlier page", code="invalid_cursor"
            )
        docs = await self.store.find(
            "chat_messages",
            {"session_id": session_id, "deleted": False},
            order_by="seq",
            descending=True,
            limit=count,
            before=("seq", before) if before else None,
        )
        docs.reverse()
        return {
            "messages": [public_message(d) for d in docs],
            "next_before": docs[0]["seq"] if len(docs) == count and docs else None,
        }

    def _limit(self, raw: object) -> int:
        if raw is None:  # absent; `limit=` (empty) is not an integer and is refused below
            return self.limits.history_default
        value: int | None = None
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 6:
            value = int(raw)
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        if value is None or not 1 <= value <= self.limits.history_max:
            raise Invalid(
                f"limit must be an integer from 1 to {self.limits.history_max}",
                code="invalid_limit",
            )
        return value

    # -- moderation ----------------------------------------------------------------------------

    def _require_broadcaster(self, claims: Claims) -> None:
        if claims.role != "broadcaster":
            raise Forbidden("only the broadcaster may moderate the chat", code="not_broadcaster")

    async def delete(self, claims: Claims, session_id: str, message_id: object) -> None:
        """Hide a message for everyone (kept in the store, flagged, for the record)."""
        self._require_broadcaster(claims)
        await self.authorize(claims, session_id, live=False)
        if not isinstance(message_id, str):
            raise Invalid("id must be a message id", code="invalid_message")
        check_id(message_id, "message")
        doc = await self.store.get("chat_messages", message_id)
        if doc is None or doc["session_id"] != session_id:
            raise NotFound("message not found", code="message_not_found")
        if doc["deleted"]:
            return
        await self.store.update(
            "chat_messages",
            message_id,
            {"deleted": True, "deleted_at": iso(self.clock())},
            expect={"deleted": False},
        )
        log.info("session=%s message=%s deleted", session_id, message_id)
        await self.bus.publish(session_id, deleted_event(message_id))

    async def mute(self, claims: Claims, session_id: str, viewer_id: object, muted: object) -> None:
        """Mute (or unmute) a viewer of this session; their later messages are refused."""
        self._require_broadcaster(claims)
        session = await self.authorize(claims, session_id, live=True)
        if not isinstance(viewer_id, str):
            raise Invalid("viewer_id must be a string", code="invalid_viewer")
        check_id(viewer_id, "viewer")
        if not isinstance(muted, bool):
            raise Invalid("muted must be true or false", code="invalid_mute")
        current = set(session.get("chat_muted") or [])
        wanted = current | {viewer_id} if muted else current - {viewer_id}
        if wanted == current:
            return
        await self.store.update("broadcast_sessions", session_id, {"chat_muted": sorted(wanted)})
        log.info("session=%s viewer=%s muted=%s", session_id, viewer_id, muted)
        await self.bus.publish(session_id, mutes_event(wanted))

    # -- session lifecycle (SessionEvents) -----------------------------------------------------

    async def stream_started(self, stream: StreamDoc) -> None:
        return None

    async def stream_stopped(self, stream: StreamDoc) -> None:
        return None

    async def preferences_changed(self, prefs: PreferencesDoc) -> None:
        return None

    async def session_ended(self, session: SessionDoc) -> None:
        await self.bus.publish(session["id"], ended_event())

    async def close(self) -> None:
        """Shutdown: close every socket this instance holds, then the bus."""
        for peers in list(self._peers.values()):
            for peer in list(peers):
                peer.close_with(CLOSE_GOING_AWAY, "server shutting down")
        self._peers.clear()
        await self.bus.close()
