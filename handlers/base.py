"""Base handlers: JSON in and out, one error shape, CORS, body limits, and token checks.

Every API handler derives from `ApiHandler`; every WebSocket from `ApiWebSocketHandler`. Services raise
`server.errors.DomainError`s and this module is the only place that turns them into HTTP.
"""

from __future__ import annotations

import http
import json
import logging
import math
from typing import Any
from urllib.parse import urlsplit

import tornado.web
import tornado.websocket

from server.auth import Claims
from server.errors import DomainError, Forbidden, PayloadTooLarge, Unauthorized
from server.ratelimit import Action, client_address
from server.services import Services
from server.validation import parse_object

log = logging.getLogger(__name__)

ALLOWED_HEADERS = "Authorization, Content-Type, X-Pix-Signature"
ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"


def origin_allowed(
    origin: str, request_host: str, request_scheme: str, allowed: tuple[str, ...]
) -> bool:
    """Same origin always; other origins only when listed exactly in settings."""
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.netloc.lower() == request_host.lower() and parts.scheme == request_scheme


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'", code="invalid_token")
    return token.strip()


@tornado.web.stream_request_body
class ApiHandler(tornado.web.RequestHandler):
    """JSON API handler. Bodies stream in so an oversized one is refused (413) before it is read."""

    services: Services

    def initialize(self, services: Services) -> None:
        self.services = services
        self._body = bytearray()

    # -- request lifecycle -------------------------------------------------------------------------

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def prepare(self) -> None:
        self._apply_cors()
        limit = self.services.settings.max_body_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = False
            if too_big:
                raise PayloadTooLarge(f"request body over the {limit} byte limit")

    def data_received(self, chunk: bytes) -> None:
        self._body.extend(chunk)
        if len(self._body) > self.services.settings.max_body_bytes:
            raise PayloadTooLarge(
                f"request body over the {self.services.settings.max_body_bytes} byte limit"
            )

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def json_body(self, *, allow_empty: bool = False) -> dict[str, Any]:
        return parse_object(self.body, allow_empty=allow_empty)

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    # -- CORS ---------------------------------------------------------------------------------------

    def _apply_cors(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin is None:
            return
        self.add_header("Vary", "Origin")
        settings = self.services.settings
        if origin_allowed(
            origin, self.request.host, self.request.protocol, settings.allowed_origins
        ):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Expose-Headers", "Content-Length, Content-Range")
        elif self.request.method == "OPTIONS":
            raise Forbidden("origin not allowed", code="origin_not_allowed")

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight: allowed origins get the methods and headers; others got 403 in prepare."""
        self.set_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
        self.set_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    # -- auth ---------------------------------------------------------------------------------------

    def claims(self) -> Claims:
        token = bearer_token(self.request.headers.get("Authorization"))
        return self.services.sessions.verify(token)

    def optional_token(self) -> str | None:
        return bearer_token(self.request.headers.get("Authorization"))

    async def rate_limit(self, action: Action) -> None:
        """Spend one of this client's tokens for `action` (429 with Retry-After when none)."""
        await _rate_limit(self, action)

    # -- errors -------------------------------------------------------------------------------------

    def _handle_request_exception(self, e: BaseException) -> None:
        # Domain errors carry their own status; Tornado would otherwise answer every non-HTTPError 500.
        if isinstance(e, DomainError) and not self._finished:
            self._domain_error = e
            self.send_error(e.status)
            return
        super()._handle_request_exception(e)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if (
            isinstance(value, DomainError | tornado.web.HTTPError)
            and getattr(value, "status", 500) < 500
        ):
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.clear_header("Content-Disposition")
        err: DomainError | None = getattr(self, "_domain_error", None)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if err is not None:
            code, message = err.code, err.message
            retry_after = getattr(err, "retry_after", None)
            if retry_after is not None:
                self.set_header("Retry-After", str(max(1, math.ceil(retry_after))))
        elif isinstance(exc, tornado.web.HTTPError):
            code = _status_code_name(status_code)
            message = (
                exc.log_message % exc.args
                if exc.log_message and exc.args
                else (exc.log_message or exc.reason or http.HTTPStatus(status_code).phrase)
            )
        elif status_code >= 500:
            code, message = "internal", "internal server error"
        else:
            code, message = _status_code_name(status_code), self._reason
        self.finish(
            json.dumps({"error": {"status": status_code, "code": code, "message": message}})
        )


async def _rate_limit(handler: tornado.web.RequestHandler, action: Action) -> None:
    services: Services = handler.services  # type: ignore[attr-defined]
    if services.limits is None:
        return
    request = handler.request
    client = client_address(request.remote_ip, request.headers, services.settings)
    await services.limits.check(action, client)


def _status_code_name(status: int) -> str:
    try:
        return http.HTTPStatus(status).name.lower()
    except ValueError:
        return "error"


class NotFoundHandler(ApiHandler):
    """Unmatched routes answer JSON 404, like every other error."""

    def prepare(self) -> None:
        super().prepare()
        raise tornado.web.HTTPError(404, "no such route")


class ApiWebSocketHandler(tornado.websocket.WebSocketHandler):
    """WebSocket with the API's origin allowlist, token auth and a message size limit."""

    services: Services
    max_message_bytes = 64 * 1024

    def initialize(self, services: Services) -> None:
        self.services = services

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return self.max_message_bytes

    def check_origin(self, origin: str) -> bool:
        return origin_allowed(
            origin, self.request.host, self.request.protocol, self.services.settings.allowed_origins
        )

    def ws_claims(self) -> Claims:
        """Token from the Authorization header, or `access_token` (browsers cannot set headers)."""
        token = bearer_token(self.request.headers.get("Authorization")) or self.get_argument(
            "access_token", None
        )
        return self.services.sessions.verify(token)

    async def rate_limit(self, action: Action) -> None:
        await _rate_limit(self, action)

    def reject(self, error: DomainError) -> None:
        """Refuse the upgrade with the API's JSON error before any WebSocket traffic."""
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(
            json.dumps(
                {"error": {"status": error.status, "code": error.code, "message": error.message}}
            )
        )
