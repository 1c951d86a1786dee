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
from handlers.forward import (
    SocketRelay,
    forwarded,
    gather_json,
    is_forwarded,
    owner_elsewhere,
    pc_forwarded,
    session_of_stream,
    viewer_forwarded,
    viewer_target,
)
from handlers.openapi import operation, path_param, websocket_operation
from server.auth import Claims
from server.errors import DomainError, Forbidden, Invalid
from server.schemas import validate
from server.services import Services
from server.validation import parse_object

log = logging.getLogger(__name__)

PREFIX = "/api/v1/livestream"
ID = r"([^/]+)"


async def _offer(services: Services, claims: Claims, stream_id: str, body: dict[str, Any]) -> dict:
    media = services.media
    if claims.role == "broadcaster":
        return dict(await media.publish(claims, stream_id, body))
    return dict(await media.subscribe(claims, stream_id, body))


class OfferHandler(ApiHandler):
    """POST an offer for one stream; the answer carries the server's candidates and a `pc_id`."""

    async def post(self, stream_id: str) -> None:
        claims = self.claims()
        await self.rate_limit("offer")
        session_id = await session_of_stream(self.services, stream_id)
        # Publishers go to the owner; viewers where the assignment puts them (server.assignment).
        route = forwarded if claims.role == "broadcaster" else viewer_forwarded
        if await route(self, session_id):
            return
        body = validate(self.json_body(), "Offer")
        self.write_json(await _offer(self.services, claims, stream_id, body))


class CandidateHandler(ApiHandler):
    """POST one trickled ICE candidate for a connection this token opened."""

    async def post(self, stream_id: str) -> None:
        claims = self.claims()
        body = self.json_body()
        session_id = await session_of_stream(self.services, stream_id)
        if await pc_forwarded(self, session_id, body.get("pc_id")):
            return
        body = validate(body, "Candidate")
        await self.services.media.add_candidate(claims, body.get("pc_id"), body.get("candidate"))
        self.write_json({"ok": True})


class CompositeOfferHandler(ApiHandler):
    """POST a viewer's offer for its composite feed (layout from its saved preferences)."""

    async def post(self, session_id: str) -> None:
        claims = self.claims()
        await self.rate_limit("offer")
        if await viewer_forwarded(self, session_id):
            return
        body = validate(self.json_body(), "Offer")
        media = self.services.media
        self.write_json(await media.subscribe_composite(claims, session_id, body))


class QualityHandler(ApiHandler):
    """GET what one viewer connection (`?pc_id=`) receives — rungs, current rung, whether its link
    limits it — or, without `pc_id`, every open connection of this viewer; PUT `{"pc_id",
    "quality"}` to pick a rung by name or "auto"."""

    async def get(self, session_id: str) -> None:
        claims = self.claims()
        pc_id = self.get_query_argument("pc_id", None)
        media = self.services.media
        if pc_id is None and self.services.settings.relay:
            # With relay, this viewer's connections may live on several instances: this one's,
            # and (unless this request was sent here by another instance) every other's.
            connections = media.qualities_of(claims, session_id)
            if not is_forwarded(self):
                others = await self.services.assignment.other_addresses(session_id)
                for answer in await gather_json(self, others):
                    if isinstance(answer, dict):
                        connections.extend(answer.get("connections") or [])
            self.write_json({"connections": connections})
            return
        if await pc_forwarded(self, session_id, pc_id):
            return
        if pc_id is None:
            self.write_json({"connections": media.qualities_of(claims, session_id)})
        else:
            self.write_json(media.quality_of(claims, pc_id))

    async def put(self, session_id: str) -> None:
        claims = self.claims()
        body = self.json_body()
        if await pc_forwarded(self, session_id, body.get("pc_id")):
            return
        body = validate(body, "QualityChoice")
        media = self.services.media
        self.write_json(await media.set_quality(claims, body["pc_id"], body["quality"]))


class ViewersDebugHandler(ApiHandler):
    """GET every viewer connection's estimate, rung, pacing and resends (broadcaster token)."""

    async def get(self, session_id: str) -> None:
        claims = self.claims()
        if claims.role != "broadcaster" or claims.session_id != session_id:
            raise Forbidden("only this session's broadcaster may read this", code="forbidden")
        if await forwarded(self, session_id):
            return
        self.write_json({"viewers": self.services.media.viewers_debug(session_id)})


class SignalingSocket(ApiWebSocketHandler):
    """The same messages over one WebSocket: `{"type": "offer", "sdp"}` → `{"type": "answer", …}`,
    `{"type": "candidate", "pc_id", "candidate"}` → `{"type": "ack"}`, failures → `{"type":
    "error", "error": {...}}`. Viewer connections opened here close when the socket closes."""

    claims_: Claims | None = None
    relay: SocketRelay | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.claims_ = self.ws_claims()
            self.check_upgrade()
            session_id = await self.session_of(args[0])
            if self.claims_.role == "broadcaster":
                address = await owner_elsewhere(self, session_id)
            else:  # a viewer's socket: served where the assignment puts it
                address = await viewer_target(self, session_id)
        except DomainError as err:
            self.reject(err)
            return
        self._pc_ids: list[str] = []
        if address is not None:
            # Served by another instance: relay every frame to its socket (`handlers.forward`).
            self.relay = SocketRelay(self, address)
        await super().get(*args, **kwargs)

    async def session_of(self, target: str) -> str | None:
        return await session_of_stream(self.services, target)

    async def open(self, target: str) -> None:  # type: ignore[override]
        self.target = target
        if self.relay is not None:
            await self.relay.open()

    async def offer(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.claims_ is not None
        return await _offer(self.services, self.claims_, self.target, body)

    async def on_message(self, message: str | bytes) -> None:
        assert self.claims_ is not None
        if self.relay is not None:
            await self.relay.send_up(message)
            return
        try:
            if isinstance(message, bytes):
                raise Invalid("send JSON text frames", code="invalid_frame")
            body = parse_object(message)
            kind = body.get("type")
            if kind == "offer":
                await self.rate_limit("offer")
                validate(body, "Offer", "message")
                answer = await self.offer(body)
                if self.claims_.role == "viewer":
                    self._pc_ids.append(answer["pc_id"])
                self._send({**answer, "type": "answer"})
            elif kind == "quality":
                choice = {k: v for k, v in body.items() if k != "type"}
                validate(choice, "QualityChoice", "message")
                state = await self.services.media.set_quality(
                    self.claims_, choice["pc_id"], choice["quality"]
                )
                self._send({**state, "type": "quality"})
            elif kind == "candidate":
                validate({k: v for k, v in body.items() if k != "type"}, "Candidate", "message")
                await self.services.media.add_candidate(
                    self.claims_, body.get("pc_id"), body.get("candidate")
                )
                self._send({"type": "ack"})
            else:
                raise Invalid(
                    "type must be 'offer', 'candidate' or 'quality'", code="invalid_message"
                )
        except DomainError as err:
            self._send(self.error_frame(err))

    def _send(self, obj: dict[str, Any]) -> None:
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self.write_message(json.dumps(obj, separators=(",", ":")))

    def on_close(self) -> None:
        if self.relay is not None:
            self.relay.close()
            return
        media = self.services.media
        if media is not None:
            for pc_id in getattr(self, "_pc_ids", []):
                media.disconnect(pc_id)


class CompositeSignalingSocket(SignalingSocket):
    """The same socket for a viewer's composite feed (`/session/{id}/composite/signal/ws`)."""

    async def session_of(self, target: str) -> str | None:
        return target

    async def offer(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.claims_ is not None
        media = self.services.media
        return dict(await media.subscribe_composite(self.claims_, self.target, body))


_STREAM_ID = path_param("stream_id")
_SESSION_ID = path_param("session_id")
_PC_ID_QUERY = {
    "name": "pc_id",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}
_WS_PROTOCOL = (
    'JSON text frames: `{"type": "offer", "sdp", "max_height"?}` (schema Offer) → `{"type": '
    '"answer", "sdp", "pc_id"}`; `{"type": "candidate", "pc_id", "candidate"}` (schema Candidate) '
    '→ `{"type": "ack"}`; `{"type": "quality", "pc_id", "quality"}` (schema QualityChoice) → '
    '`{"type": "quality", …QualityState}`; a refused message → `{"type": "error", "error": {"status", "code", '
    '"message"}}` and the socket stays open. Binary frames are refused the same way.'
)

openapi = {
    f"{PREFIX}/stream/{{stream_id}}/signal/offer": {
        "post": operation(
            "Publish (broadcaster token) or subscribe to (viewer token) one stream",
            (200, "the SDP answer", "Answer"),
            402,
            403,
            404,
            409,
            503,
            body="Offer",
            auth=True,
            limited=True,
            params=[_STREAM_ID],
        )
    },
    f"{PREFIX}/stream/{{stream_id}}/signal/candidate": {
        "post": operation(
            "Trickle one ICE candidate for a connection this token opened",
            (200, "accepted", "Ack"),
            404,
            503,
            body="Candidate",
            auth=True,
            params=[_STREAM_ID],
        )
    },
    f"{PREFIX}/stream/{{stream_id}}/signal/ws": {
        "get": websocket_operation(
            "WebSocket signaling for one stream (the offer and candidate routes' messages)",
            [_STREAM_ID],
            403,
            404,
            503,
            protocol=_WS_PROTOCOL,
        )
    },
    f"{PREFIX}/session/{{session_id}}/composite/signal/ws": {
        "get": websocket_operation(
            "WebSocket signaling for this viewer's composite feed",
            [_SESSION_ID],
            403,
            404,
            503,
            protocol=_WS_PROTOCOL,
        )
    },
    f"{PREFIX}/session/{{session_id}}/quality": {
        "get": operation(
            "What one viewer connection (`?pc_id=`) receives: its quality rungs, the current one, "
            "its choice and whether its connection limits the quality; without `pc_id`, "
            "`{connections: [...]}` for every open connection of this viewer",
            (200, "quality state (one connection, or `connections`)", "QualityAny"),
            400,
            403,
            404,
            auth=True,
            params=[_SESSION_ID, _PC_ID_QUERY],
        ),
        "put": operation(
            "Pick a rung by name, or `auto` (follow the connection)",
            (200, "the connection's quality state", "QualityState"),
            403,
            404,
            body="QualityChoice",
            auth=True,
            params=[_SESSION_ID],
        ),
    },
    f"{PREFIX}/session/{{session_id}}/debug/viewers": {
        "get": operation(
            "Every viewer connection's bandwidth estimate, rung, pacing, resends and drops "
            "(this session's broadcaster token)",
            (200, "viewers", "ViewersDebug"),
            403,
            auth=True,
            params=[_SESSION_ID],
        )
    },
    f"{PREFIX}/session/{{session_id}}/composite/signal/offer": {
        "post": operation(
            "Subscribe to this viewer's composite feed (layout from its preferences)",
            (200, "the SDP answer", "Answer"),
            402,
            403,
            404,
            409,
            503,
            body="Offer",
            auth=True,
            limited=True,
            params=[_SESSION_ID],
        )
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
