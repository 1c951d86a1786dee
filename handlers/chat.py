"""Chat edge: one path, two uses. A WebSocket upgrade joins the live chat; a plain GET pages history.

WebSocket protocol (JSON text frames):
- server → client: `{"type": "hello", "you", "history", "next_before", "muted"}` once, then
  `message`, `deleted`, `mutes`, `ended`, and `{"type": "error", "error": {"status", "code",
  "message"}}` (the API's error envelope) for a refused action (the socket stays open).
- client → server: `{"type": "message", "text"}`, `{"type": "delete", "id"}` and
  `{"type": "mute", "viewer_id", "muted"}` (broadcaster only), `{"type": "ping"}`.
- Close codes: 4008 rate limit exceeded (after repeated throttling), 4010 session ended,
  1009 frame over the size limit (Tornado), 1001 server shutting down.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import tornado.websocket
from tornado.concurrent import Future

from handlers.base import ApiWebSocketHandler, allow_origin, write_preflight
from handlers.openapi import operation, path_param
from server.auth import Claims
from server.chat import CLOSE_RATE_LIMITED, ChatService
from server.chat.ratelimit import TokenBucket
from server.chat.service import SEQ_PATTERN, ChatLimits, check_name
from server.errors import DomainError, Forbidden, Invalid, TooManyRequests, Unavailable
from server.validation import parse_json

log = logging.getLogger(__name__)

PREFIX = "/api/v1/livestream"
ID = r"([^/]+)"


def _consume(future: Future[None]) -> None:
    # A write to a socket that closed meanwhile fails; that is expected, not an error to log.
    if not future.cancelled():
        future.exception()


class ChatHandler(ApiWebSocketHandler):
    """`/session/{id}/chat`: live chat over WebSocket, or its history over plain GET."""

    session_id: str
    claims_: Claims
    name: str | None
    bucket: TokenBucket
    strikes: int

    @property
    def chat(self) -> ChatService:
        chat = self.services.chat
        if chat is None:
            raise Unavailable("chat is not enabled on this server", code="chat_off")
        return chat  # type: ignore[no-any-return]

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return self.chat.limits.max_frame_bytes

    async def get(self, session_id: str, *args: Any, **kwargs: Any) -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            await self._history(session_id)
            return
        try:
            self.check_upgrade()
            claims = self.ws_claims()
            await self.chat.authorize(claims, session_id, live=True)
            self.name = check_name(self.get_argument("name", None), self.chat.limits)
        except DomainError as exc:
            self.reject(exc)
            return
        self.session_id, self.claims_ = session_id, claims
        self.bucket, self.strikes = self.chat.new_bucket(), 0
        await super().get(session_id, *args, **kwargs)

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight for the history GET (it carries an Authorization header)."""
        if self.request.headers.get("Origin") is None or not allow_origin(
            self, self.services.settings.allowed_origins
        ):
            self.reject(Forbidden("origin not allowed", code="origin_not_allowed"))
            return
        write_preflight(self, "GET, OPTIONS", "Authorization")
        self.set_status(204)
        self.finish()

    async def _history(self, session_id: str) -> None:
        """Plain GET: `?before=<seq>&limit=<n>` pages back through undeleted messages."""
        try:
            if not allow_origin(self, self.services.settings.allowed_origins):
                raise Forbidden("origin not allowed", code="origin_not_allowed")
            page = await self.chat.history(
                self.ws_claims(),
                session_id,
                self.get_argument("before", None),
                self.get_argument("limit", None),
            )
        except DomainError as exc:
            self.reject(exc)
            return
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(page, ensure_ascii=False))

    # -- WebSocket -------------------------------------------------------------------------------

    async def open(self, *args: str, **kwargs: str) -> None:
        chat = self.chat
        # Attach before reading history: a message racing the read then arrives twice (clients
        # de-duplicate by id) rather than never.
        chat.attach(self.session_id, self)
        recent = await chat.recent(self.session_id, None, None)
        session = await chat.sessions.get_session(self.session_id)
        self.deliver(
            {
                "type": "hello",
                "you": chat.author_of(self.claims_, self.name),
                "history": recent["messages"],
                "next_before": recent["next_before"],
                "muted": sorted(session.get("chat_muted") or []),
            }
        )
        log.info(
            "session=%s viewer=%s role=%s chat open",
            self.session_id,
            self.claims_.viewer_id,
            self.claims_.role,
        )

    async def on_message(self, message: str | bytes) -> None:
        if not self.bucket.take():
            self.strikes += 1
            if self.strikes > self.chat.limits.max_strikes:
                log.info(
                    "session=%s viewer=%s chat flood closed",
                    self.session_id,
                    self.claims_.viewer_id,
                )
                self.close(CLOSE_RATE_LIMITED, "rate limit exceeded: too many messages")
                return
            self.deliver(self.error_frame(TooManyRequests("too many messages; slow down")))
            return
        self.strikes = 0
        try:
            await self._act(message)
        except DomainError as exc:
            self.deliver(self.error_frame(exc))

    async def _act(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            raise Invalid("send JSON text frames", code="invalid_frame")
        data = parse_json(message)
        if not isinstance(data, dict):
            raise Invalid("a frame must be a JSON object", code="invalid_frame")
        kind = data.get("type")
        chat, claims, sid = self.chat, self.claims_, self.session_id
        if kind == "message":
            await chat.post(claims, sid, data.get("text"), self.name)
        elif kind == "delete":
            await chat.delete(claims, sid, data.get("id"))
        elif kind == "mute":
            await chat.mute(claims, sid, data.get("viewer_id"), data.get("muted", True))
        elif kind == "ping":
            self.deliver({"type": "pong"})
        else:
            raise Invalid("type must be message, delete, mute or ping", code="invalid_frame")

    def on_close(self) -> None:
        if getattr(self, "session_id", None) is not None:
            self.chat.detach(self.session_id, self)

    # -- ChatPeer ----------------------------------------------------------------------------------

    def deliver(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(json.dumps(event, ensure_ascii=False)).add_done_callback(_consume)

    def close_with(self, code: int, reason: str) -> None:
        self.close(code, reason)


routes = [(rf"{PREFIX}/session/{ID}/chat", ChatHandler)]

openapi: dict[str, Any] = {
    f"{PREFIX}/session/{{session_id}}/chat": {
        "get": {
            **operation(
                "Chat history (plain GET: newest page first, messages oldest first); with "
                "`Upgrade: websocket` the live chat (`x-websocket`)",
                (200, "messages and the next `before` cursor", "ChatHistory"),
                400,
                403,
                404,
                409,
                503,
                auth=True,
                params=[
                    path_param("session_id"),
                    {
                        "name": "before",
                        "in": "query",
                        "schema": {"type": "string", "pattern": f"^{SEQ_PATTERN}$"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": ChatLimits().history_max,
                        },
                    },
                    {"name": "access_token", "in": "query", "schema": {"type": "string"}},
                    {"name": "name", "in": "query", "schema": {"type": "string"}},
                ],
            ),
            "x-websocket": True,
            "description": __doc__,
        }
    }
}
