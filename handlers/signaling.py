"""WebRTC signaling: SDP offers and trickled ICE candidates, over HTTP POST or a WebSocket.

The token is checked before the body is even parsed; what the connection may do follows from it:
a broadcaster token publishes its own session's stream (server receives), a viewer token subscribes
to a stream its preferences enable (server sends). Everything else happens in `server.media`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from handlers.base import ApiHandler, ApiWebSocketHandler
from handlers.openapi import error_responses, json_body, json_response
from server.auth import Claims
from server.errors import DomainError, Forbidden, Invalid, Unavailable
from server.validation import parse_object

log = logging.getLogger(__name__)

PREFIX = "/api/v1/livestream"
ID = r"([^/]+)"


def _media(services: Any) -> Any:
    if services.media is None:
        raise Unavailable("media plane is not running", code="media_unavailable")
    return services.media


async def _offer(services: Any, claims: Claims, stream_id: str, body: dict[str, Any]) -> dict:
    media = _media(services)
    if claims.role == "broadcaster":
        return dict(await media.publish(claims, stream_id, body))
    return dict(await media.subscribe(claims, stream_id, body))


class OfferHandler(ApiHandler):
    """POST an offer for one stream; the answer carries the server's candidates and a `pc_id`."""

    async def post(self, stream_id: str) -> None:
        claims = self.claims()
        body = self.json_body()
        self.write_json(await _offer(self.services, claims, stream_id, body))


class CandidateHandler(ApiHandler):
    """POST one trickled ICE candidate for a connection this token opened."""

    async def post(self, stream_id: str) -> None:
        claims = self.claims()
        body = self.json_body()
        await _media(self.services).add_candidate(claims, body.get("pc_id"), body.get("candidate"))
        self.write_json({"ok": True})


class CompositeOfferHandler(ApiHandler):
    """POST a viewer's offer for its composite feed (layout from its saved preferences)."""

    async def post(self, session_id: str) -> None:
        claims = self.claims()
        body = self.json_body()
        media = _media(self.services)
        self.write_json(await media.subscribe_composite(claims, session_id, body))


class QualityHandler(ApiHandler):
    """GET what one viewer connection (`?pc_id=`) receives — rungs, current rung, whether its link
    limits it — or, without `pc_id`, every open connection of this viewer; PUT `{"pc_id",
    "quality"}` to pick a rung by name or "auto"."""

    async def get(self, session_id: str) -> None:
        claims = self.claims()
        pc_id = self.get_query_argument("pc_id", None)
        media = _media(self.services)
        if pc_id is None:
            self.write_json({"connections": media.qualities_of(claims, session_id)})
        else:
            self.write_json(media.quality_of(claims, pc_id))

    async def put(self, session_id: str) -> None:
        claims = self.claims()
        body = self.json_body()
        media = _media(self.services)
        self.write_json(await media.set_quality(claims, body.get("pc_id"), body.get("quality")))


class ViewersDebugHandler(ApiHandler):
    """GET every viewer connection's estimate, rung, pacing and resends (broadcaster token)."""

    async def get(self, session_id: str) -> None:
        claims = self.claims()
        if claims.role != "broadcaster" or claims.session_id != session_id:
            raise Forbidden("only this session's broadcaster may read this", code="forbidden")
        self.write_json({"viewers": _media(self.services).viewers_debug(session_id)})


class SignalingSocket(ApiWebSocketHandler):
    """The same messages over one WebSocket: `{"type": "offer", "sdp"}` → `{"type": "answer", …}`,
    `{"type": "candidate", "pc_id", "candidate"}` → `{"type": "ack"}`, failures → `{"type":
    "error", "error": {...}}`. Viewer connections opened here close when the socket closes."""

    claims_: Claims | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.claims_ = self.ws_claims()
            _media(self.services)
        except DomainError as err:
            self.reject(err)
            return
        self._pc_ids: list[str] = []
        await super().get(*args, **kwargs)

    def open(self, stream_id: str) -> None:  # type: ignore[override]
        self.target = stream_id

    async def offer(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.claims_ is not None
        return await _offer(self.services, self.claims_, self.target, body)

    async def on_message(self, message: str | bytes) -> None:
        assert self.claims_ is not None
        try:
            body = parse_object(message)
            kind = body.get("type")
            if kind == "offer":
                answer = await self.offer(body)
                if self.claims_.role == "viewer":
                    self._pc_ids.append(answer["pc_id"])
                self._send({**answer, "type": "answer"})
            elif kind == "quality":
                state = await _media(self.services).set_quality(
                    self.claims_, body.get("pc_id"), body.get("quality")
                )
                self._send({**state, "type": "quality"})
            elif kind == "candidate":
                await _media(self.services).add_candidate(
                    self.claims_, body.get("pc_id"), body.get("candidate")
                )
                self._send({"type": "ack"})
            else:
                raise Invalid(
                    "type must be 'offer', 'candidate' or 'quality'", code="invalid_message"
                )
        except DomainError as err:
            self._send(
                {
                    "type": "error",
                    "error": {"status": err.status, "code": err.code, "message": err.message},
                }
            )

    def _send(self, obj: dict[str, Any]) -> None:
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self.write_message(json.dumps(obj, separators=(",", ":")))

    def on_close(self) -> None:
        media = self.services.media
        if media is not None:
            for pc_id in getattr(self, "_pc_ids", []):
                media.disconnect(pc_id)


class CompositeSignalingSocket(SignalingSocket):
    """The same socket for a viewer's composite feed (`/session/{id}/composite/signal/ws`)."""

    def open(self, session_id: str) -> None:  # type: ignore[override]
        self.target = session_id

    async def offer(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.claims_ is not None
        media = _media(self.services)
        return dict(await media.subscribe_composite(self.claims_, self.target, body))


_OFFER_BODY = {
    "type": "object",
    "required": ["sdp"],
    "properties": {
        "sdp": {"type": "string", "maxLength": 65536},
        "type": {"const": "offer"},
        "max_height": {
            "type": "integer",
            "minimum": 90,
            "maximum": 4320,
            "description": "viewers only: a scaled-down variant (180/360/540/720/1080 lines)",
        },
    },
}
_ANSWER = json_response("SDP answer `{sdp, type: answer, pc_id}`")
_STREAM_ID = {"name": "stream_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}

openapi = {
    f"{PREFIX}/stream/{{stream_id}}/signal/offer": {
        "post": {
            "summary": "Publish (broadcaster token) or subscribe to (viewer token) one stream",
            "requestBody": json_body(_OFFER_BODY),
            "responses": {"200": _ANSWER, **error_responses(400, 401, 403, 404, 409)},
            "security": [{"bearer": []}],
            "parameters": [_STREAM_ID],
        }
    },
    f"{PREFIX}/stream/{{stream_id}}/signal/candidate": {
        "post": {
            "summary": "Trickle one ICE candidate `{pc_id, candidate}`",
            "requestBody": json_body({"type": "object", "required": ["pc_id", "candidate"]}),
            "responses": {"200": json_response("accepted"), **error_responses(400, 401, 404)},
            "security": [{"bearer": []}],
            "parameters": [_STREAM_ID],
        }
    },
    f"{PREFIX}/stream/{{stream_id}}/signal/ws": {
        "get": {
            "summary": "WebSocket carrying the same JSON messages as the offer and candidate routes "
            "(token as Bearer header or `access_token`; origin-checked; size-limited)",
            "responses": {
                "101": {"description": "switching protocols"},
                **error_responses(400, 401, 403, 404),
            },
            "security": [{"bearer": []}],
            "parameters": [_STREAM_ID],
        }
    },
    f"{PREFIX}/session/{{session_id}}/composite/signal/ws": {
        "get": {
            "summary": "WebSocket signaling for this viewer's composite feed (same messages as the "
            "composite offer route)",
            "responses": {
                "101": {"description": "switching protocols"},
                **error_responses(400, 401, 403, 404),
            },
            "security": [{"bearer": []}],
            "parameters": [_SESSION_ID],
        }
    },
    f"{PREFIX}/session/{{session_id}}/quality": {
        "get": {
            "summary": "What one viewer connection (`?pc_id=`) receives: its quality rungs, the "
            "current one, its choice and whether its connection limits the quality; without "
            "`pc_id`, `{connections: [...]}` for every open connection of this viewer",
            "responses": {"200": json_response("quality state"), **error_responses(400, 401, 404)},
            "security": [{"bearer": []}],
            "parameters": [_SESSION_ID],
        },
        "put": {
            "summary": "Pick a rung by name, or `auto` (follow the connection) `{pc_id, quality}`",
            "requestBody": json_body({"type": "object", "required": ["pc_id", "quality"]}),
            "responses": {"200": json_response("quality state"), **error_responses(400, 401, 404)},
            "security": [{"bearer": []}],
            "parameters": [_SESSION_ID],
        },
    },
    f"{PREFIX}/session/{{session_id}}/debug/viewers": {
        "get": {
            "summary": "Every viewer connection's bandwidth estimate, rung, pacing, resends and "
            "drops (this session's broadcaster token)",
            "responses": {"200": json_response("viewers"), **error_responses(401, 403)},
            "security": [{"bearer": []}],
            "parameters": [_SESSION_ID],
        }
    },
    f"{PREFIX}/session/{{session_id}}/composite/signal/offer": {
        "post": {
            "summary": "Subscribe to this viewer's composite feed (layout from its preferences)",
            "requestBody": json_body(_OFFER_BODY),
            "responses": {"200": _ANSWER, **error_responses(400, 401, 403, 404, 409)},
            "security": [{"bearer": []}],
            "parameters": [_SESSION_ID],
        }
    },
}

routes = [
    (rf"{PREFIX}/stream/{ID}/signal/offer", OfferHandler),
    (rf"{PREFIX}/stream/{ID}/signal/candidate", CandidateHandler),
    (rf"{PREFIX}/stream/{ID}/signal/ws", SignalingSocket),
    (rf"{PREFIX}/session/{ID}/composite/signal/offer", CompositeOfferHandler),
    (rf"{PREFIX}/session/{ID}/composite/signal/ws", CompositeSignalingSocket),
    (rf"{PREFIX}/session/{ID}/quality", QualityHandler),
    (rf"{PREFIX}/session/{ID}/debug/viewers", ViewersDebugHandler),
]
