"""WHIP (RFC 9725) ingest and WHEP playback endpoints: HTTP semantics only, logic in `server.whip`.

- `POST /api/v1/whip/{session_id}/{kind}` — `application/sdp` offer, broadcaster bearer token →
  `201 Created`, `Location: /api/v1/whip/{session_id}/{kind}/{resource}`, `ETag`, SDP answer.
- `PATCH <resource>` — `application/trickle-ice-sdpfrag` (trickle ICE → 204; ICE restart → 422).
- `DELETE <resource>` — ends the publication; the stream goes `stopped`.
- `OPTIONS` — CORS preflight plus the configured ICE servers as `Link: …; rel="ice-server"`.
- WHEP: the same under `/api/v1/whep/{session_id}/{kind}` and `/api/v1/whep/{session_id}/composite`
  (`?corner=&size=` override the saved picture-in-picture), viewer bearer token.
Errors are the API's JSON envelope `{"error": {status, code, message}}` with the RFC's status codes.
"""

from __future__ import annotations

from typing import Any

from handlers.base import ALLOWED_HEADERS, ApiHandler, write_preflight
from handlers.forward import forwarded, pc_forwarded, viewer_forwarded
from handlers.openapi import error_responses
from server import schemas
from server.domain import PIP_FIXED_CORNERS, PIP_SIZE_MAX, PIP_SIZE_MIN
from server.whip import (
    SDP,
    SDPFRAG,
    Created,
    WhipService,
    decode_text,
    link_headers,
    pip_from_query,
    require_type,
)

WHIP = "/api/v1/whip"
WHEP = "/api/v1/whep"
ID = r"([^/]+)"
KIND = r"(screen|camera)"
METHODS = "POST, PATCH, DELETE, OPTIONS"


class _WhipBase(ApiHandler):
    """Shared: the service, ICE-server `Link` headers, the `201 Created` answer, CORS headers."""

    def service(self) -> WhipService:
        return WhipService(self.services.sessions, self.services.media)

    def prepare(self) -> None:
        super().prepare()
        if self.request.headers.get("Origin") is not None:
            # A browser WHIP/WHEP client must read these from the 201 answer.
            self.set_header("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch")

    def _links(self, *, credentials: bool) -> None:
        for link in link_headers(self.services.settings.ice_servers, credentials=credentials):
            self.add_header("Link", link)

    def options(self, *args: Any, **kwargs: Any) -> None:
        write_preflight(self, METHODS, f"{ALLOWED_HEADERS}, If-Match")
        self.set_header("Accept-Post", SDP)
        self._links(credentials=False)
        self.set_status(204)
        self.finish()

    def created(self, created: Created) -> None:
        self.set_status(201)
        self.set_header("Content-Type", SDP)
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{created.resource_id}")
        self.set_header("ETag", created.etag)
        self.set_header("Accept-Patch", SDPFRAG)
        self._links(credentials=True)
        self.finish(created.sdp)

    def offer_text(self) -> str:
        require_type(self.request.headers.get("Content-Type"), SDP)
        return decode_text(self.body)

    async def trickle(
        self,
        session_id: str,
        pc_id: str,
        *,
        role: str,
        kind: str | None = None,
        owner_token: bool = False,
    ) -> None:
        """PATCH with `application/trickle-ice-sdpfrag`: candidates for a publication or playback
        (204), ICE restarts refused with the RFC's codes."""
        claims = await self.session_claims(session_id) if owner_token else self.claims()
        if await pc_forwarded(self, session_id, pc_id):
            return
        text = self.frag_text()
        await self.service().patch(
            claims,
            session_id,
            pc_id,
            text,
            self.request.headers.get("If-Match"),
            role=role,
            kind=kind,
        )
        self.set_status(204)
        self.finish()

    def frag_text(self) -> str:
        require_type(self.request.headers.get("Content-Type"), SDPFRAG)
        return decode_text(self.body)


class WhipEndpoint(_WhipBase):
    """POST an `application/sdp` offer to publish one stream kind of a session."""

    async def post(self, session_id: str, kind: str) -> None:
        claims = await self.session_claims(session_id)  # a session token, or the owner's API token
        await self.rate_limit("offer")
        if await forwarded(self, session_id):
            return
        sdp = self.offer_text()
        self.created(await self.service().publish(claims, session_id, kind, sdp))


class WhipResource(_WhipBase):
    """The publication: PATCH trickles ICE candidates, DELETE ends it (stream `stopped`)."""

    async def patch(self, session_id: str, kind: str, pc_id: str) -> None:
        await self.trickle(session_id, pc_id, role="publisher", kind=kind, owner_token=True)

    async def delete(self, session_id: str, kind: str, pc_id: str) -> None:
        claims = await self.session_claims(session_id)
        if await forwarded(self, session_id):
            return
        await self.service().end_publication(claims, session_id, kind, pc_id)
        self.set_status(200)
        self.finish()


class WhepEndpoint(_WhipBase):
    """POST a viewer's `application/sdp` offer to play one stream."""

    async def post(self, session_id: str, kind: str) -> None:
        claims = self.claims()
        await self.rate_limit("offer")
        if await viewer_forwarded(self, session_id):
            return
        sdp = self.offer_text()
        self.created(await self.service().play(claims, session_id, kind, sdp))


class WhepCompositeEndpoint(_WhipBase):
    """POST a viewer's offer to play its composite (layout saved, or `?corner=&size=`)."""

    async def post(self, session_id: str) -> None:
        claims = self.claims()
        await self.rate_limit("offer")
        if await viewer_forwarded(self, session_id):
            return
        pip = pip_from_query(self.get_argument("corner", None), self.get_argument("size", None))
        sdp = self.offer_text()
        self.created(await self.service().play_composite(claims, session_id, sdp, pip))


class WhepResource(_WhipBase):
    """A playback: PATCH trickles ICE candidates, DELETE closes the viewer's connection."""

    async def patch(self, session_id: str, _target: str, pc_id: str) -> None:
        await self.trickle(session_id, pc_id, role="viewer")

    async def delete(self, session_id: str, _target: str, pc_id: str) -> None:
        claims = self.claims()
        if await pc_forwarded(self, session_id, pc_id):
            return
        await self.service().stop_playing(claims, session_id, pc_id)
        self.set_status(200)
        self.finish()


def _sdp_body(description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {SDP: {"schema": {"type": "string", "maxLength": 65536}}},
    }


def _created(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "Location": {"schema": {"type": "string"}, "description": "the new resource"},
            "ETag": {"schema": {"type": "string"}, "description": "names its ICE session"},
            "Link": {"schema": {"type": "string"}, "description": 'rel="ice-server", if any'},
        },
        "content": {SDP: {"schema": {"type": "string"}}},
    }


def _param(name: str, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


_KIND = {"name": "kind", "in": "path", "required": True, "schema": schemas.KIND}
_FRAG_BODY = {
    "required": True,
    "content": {SDPFRAG: {"schema": {"type": "string", "maxLength": 16384}}},
}
_IF_MATCH = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}


def _options(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "summary": "CORS preflight; the configured ICE servers as Link headers",
        "parameters": params,
        "responses": {
            "204": {"description": "allowed methods, Accept-Post, Link"},
            **error_responses(403, 404),
        },
    }


def _resource(what: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "patch": {
            "summary": f"Trickle ICE candidates for this {what} (ICE restart: 422)",
            "requestBody": _FRAG_BODY,
            "parameters": [*params, _IF_MATCH],
            "responses": {
                "204": {"description": "candidates added"},
                **error_responses(400, 401, 404, 412, 415, 422, 428),
            },
            "security": [{"bearer": []}],
        },
        "delete": {
            "summary": f"End this {what}",
            "parameters": params,
            "responses": {"200": {"description": "ended"}, **error_responses(401, 404)},
            "security": [{"bearer": []}],
        },
        "options": _options(params),
    }


_SESSION = _param("session_id")
_RESOURCE = _param("resource_id", "the id from Location")
_ERRORS = error_responses(400, 401, 402, 403, 404, 409, 415, 429)

openapi = {
    f"{WHIP}/{{session_id}}/{{kind}}": {
        "post": {
            "summary": "WHIP (RFC 9725): publish one stream of the session (broadcaster token)",
            "requestBody": _sdp_body("the SDP offer (sends video; the camera may add audio)"),
            "parameters": [_SESSION, _KIND],
            "responses": {"201": _created("the SDP answer"), **_ERRORS},
            "security": [{"bearer": []}],
        },
        "options": _options([_SESSION, _KIND]),
    },
    f"{WHIP}/{{session_id}}/{{kind}}/{{resource_id}}": _resource(
        "publication (DELETE: the stream goes stopped)", [_SESSION, _KIND, _RESOURCE]
    ),
    f"{WHEP}/{{session_id}}/{{kind}}": {
        "post": {
            "summary": "WHEP: play one stream (viewer token; preferences and payment apply)",
            "requestBody": _sdp_body("the SDP offer (receives video, optionally audio)"),
            "parameters": [_SESSION, _KIND],
            "responses": {"201": _created("the SDP answer"), **_ERRORS},
            "security": [{"bearer": []}],
        },
        "options": _options([_SESSION, _KIND]),
    },
    f"{WHEP}/{{session_id}}/composite": {
        "post": {
            "summary": "WHEP: play the viewer's composite (saved layout, or ?corner=&size=)",
            "requestBody": _sdp_body("the SDP offer (receives video, optionally audio)"),
            "parameters": [
                _SESSION,
                {
                    "name": "corner",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "enum": list(PIP_FIXED_CORNERS),
                    },
                },
                {
                    "name": "size",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": PIP_SIZE_MIN, "maximum": PIP_SIZE_MAX},
                },
            ],
            "responses": {"201": _created("the SDP answer"), **_ERRORS},
            "security": [{"bearer": []}],
        },
        "options": _options([_SESSION]),
    },
    f"{WHEP}/{{session_id}}/{{target}}/{{resource_id}}": _resource(
        "playback",
        [
            _SESSION,
            {
                **_param("target", "screen, camera or composite"),
                "schema": {"type": "string", "enum": [*schemas.STREAM_KINDS, "composite"]},
            },
            _RESOURCE,
        ],
    ),
}

routes = [
    (rf"{WHIP}/{ID}/{KIND}", WhipEndpoint),
    (rf"{WHIP}/{ID}/{KIND}/{ID}", WhipResource),
    (rf"{WHEP}/{ID}/composite", WhepCompositeEndpoint),
    (rf"{WHEP}/{ID}/{KIND}", WhepEndpoint),
    (rf"{WHEP}/{ID}/(screen|camera|composite)/{ID}", WhepResource),
]
