"""Base handlers: JSON in and out, one error shape, CORS, body limits, and token checks.

Every API handler derives from `ApiHandler`; every WebSocket from `ApiWebSocketHandler`. Services raise
`server.errors.DomainError`s; `handlers.errors` is the only place that turns them into HTTP.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any
from urllib.parse import urlsplit

import tornado.httputil
import tornado.web
import tornado.websocket

from handlers.errors import JsonErrors
from handlers.forward import is_forwarded
from handlers.tornado_hooks import MessageHook, finished
from server.accounts import is_account_token
from server.auth import Claims
from server.errors import (
    DomainError,
    Forbidden,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    UpgradeRequired,
    error_envelope,
)
from server.ratelimit import Action, client_address
from server.services import Services
from server.validation import parse_object
from store.protocol import Doc

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


def allow_origin(
    handler: tornado.web.RequestHandler, allowed: tuple[str, ...], *, expose: str | None = None
) -> bool:
    """The one CORS rule on a response: a request without `Origin` is not cross-origin (True); an
    allowed origin is echoed (with `expose`d headers); a foreign one gets no CORS headers (False), and
    the caller decides whether that refuses the request (preflights do, plain API reads do not)."""
    origin = handler.request.headers.get("Origin")
    if origin is None:
        return True
    handler.add_header("Vary", "Origin")
    if not origin_allowed(origin, handler.request.host, handler.request.protocol, allowed):
        return False
    handler.set_header("Access-Control-Allow-Origin", origin)
    if expose:
        handler.set_header("Access-Control-Expose-Headers", expose)
    return True


def write_preflight(handler: tornado.web.RequestHandler, methods: str, headers: str) -> None:
    """The preflight answer's CORS headers (the origin itself was checked by `allow_origin`)."""
    handler.set_header("Access-Control-Allow-Methods", methods)
    handler.set_header("Access-Control-Allow-Headers", headers)
    handler.set_header("Access-Control-Max-Age", "600")


# The web log-in cookie: HttpOnly (scripts never see it), SameSite=Lax (not sent on cross-site
# sub-requests or form posts), Path=/ (pages and API), Secure when the request came over HTTPS.
LOGIN_COOKIE = "ms_login"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_same_origin(request: tornado.httputil.HTTPServerRequest) -> None:
    """CSRF guard for writes authenticated by the log-in cookie: the browser's `Origin` must name
    this host. Browsers send `Origin` on every non-GET request (Fetch standard), same-origin ones
    included, and a page cannot forge it, so no token has to be threaded through forms and pages.
    SameSite=Lax already keeps the cookie off cross-site posts; this also covers sibling sites
    (same site, other origin) and older browsers without SameSite. Bearer-token requests need no
    guard: a browser never attaches those by itself."""
    if request.method in _SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    if origin is None or urlsplit(origin).netloc.lower() != request.host.lower():
        raise Forbidden(
            "cross-site request refused: a logged-in write must come from this site's pages",
            code="csrf_refused",
        )


async def account_of(
    handler: tornado.web.RequestHandler, services: Services, token: str | None
) -> Doc:
    """The broadcaster account behind a request: an API token (`Bearer ms_...`) or, without an
    Authorization header, the log-in cookie (writes must pass `check_same_origin`)."""
    if token is not None:
        if not is_account_token(token):
            raise Unauthorized(
                "this needs a broadcaster: log in, or send an API token "
                "(multistream users token NAME, or the dashboard)",
                code="login_required",
            )
        return await services.accounts.authenticate(token, kind="api")
    cookie = handler.get_cookie(LOGIN_COOKIE)
    if not cookie:
        raise Unauthorized(
            "this needs a broadcaster: log in, or send an API token", code="login_required"
        )
    check_same_origin(handler.request)
    return await services.accounts.authenticate(cookie, kind="web")


async def session_claims_of(
    handler: tornado.web.RequestHandler, services: Services, session_id: str, token: str | None
) -> Claims:
    """Claims on one session: a session token as before, or the session owner's account (API
    token or log-in cookie) acting as its broadcaster."""
    if token is not None and not is_account_token(token):
        return services.sessions.verify(token)
    if token is None and not handler.get_cookie(LOGIN_COOKIE):
        return services.sessions.verify(None)  # 401 missing_token, as before accounts
    user = await account_of(handler, services, token)
    return await services.sessions.owner_claims(user, session_id)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'", code="invalid_token")
    return token.strip()


@tornado.web.stream_request_body
class ApiHandler(JsonErrors):
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
        # A chunked body has no Content-Length to refuse up front: answer 413 as soon as it passes
        # the limit (raising here would make Tornado reset the connection with no answer at all).
        if finished(self):
            return
        self._body.extend(chunk)
        limit = self.services.settings.max_body_bytes
        if len(self._body) > limit:
            self._body.clear()
            self.fail(PayloadTooLarge(f"request body over the {limit} byte limit"))

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def require_json(self) -> None:
        """415 unless a body is declared `application/json` (or `+json`), in UTF-8 if a charset."""
        ctype = self.request.headers.get("Content-Type", "")
        media, _, params = ctype.partition(";")
        media = media.strip().lower()
        charset = params.strip().lower().replace(" ", "")
        if not (media == "application/json" or media.endswith("+json")) or (
            charset.startswith("charset=") and charset not in ("charset=utf-8", 'charset="utf-8"')
        ):
            raise UnsupportedMediaType(
                f"send the body as application/json (UTF-8), not {ctype[:60]!r}"
            )

    def json_body(self, *, allow_empty: bool = False) -> dict[str, Any]:
        if self._body.strip():
            self.require_json()
        return parse_object(self.body, allow_empty=allow_empty)

    def write_json(self, obj: Any, status: int = 200) -> None:
        if finished(self):
            return  # already answered (a body over the limit)
        self.set_status(status)
        self.finish(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    # -- CORS ---------------------------------------------------------------------------------------

    def _apply_cors(self) -> None:
        allowed = self.services.settings.allowed_origins
        if not allow_origin(self, allowed, expose="Content-Length, Content-Range") and (
            self.request.method == "OPTIONS"
        ):
            raise Forbidden("origin not allowed", code="origin_not_allowed")

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight: allowed origins get the methods and headers; others got 403 in prepare."""
        write_preflight(self, ALLOWED_METHODS, ALLOWED_HEADERS)
        self.set_status(204)
        self.finish()

    # -- auth ---------------------------------------------------------------------------------------

    def claims(self) -> Claims:
        token = bearer_token(self.request.headers.get("Authorization"))
        return self.services.sessions.verify(token)

    def optional_token(self) -> str | None:
        return bearer_token(self.request.headers.get("Authorization"))

    async def account(self) -> Doc:
        """The logged-in broadcaster (API token or log-in cookie), else 401."""
        return await account_of(self, self.services, self.optional_token())

    async def session_claims(self, session_id: str) -> Claims:
        """`claims()` that also accepts the session owner's API token or log-in."""
        return await session_claims_of(self, self.services, session_id, self.optional_token())

    async def rate_limit(self, action: Action) -> None:
        """Spend one of this client's tokens for `action` (429 with Retry-After when none)."""
        await _rate_limit(self, action)


async def _rate_limit(handler: tornado.web.RequestHandler, action: Action) -> None:
    if is_forwarded(handler):
        return  # the instance that received it spent the client's token (`handlers.forward`)
    services: Services = handler.services  # type: ignore[attr-defined]
    request = handler.request
    client = client_address(request.remote_ip, request.headers, services.settings)
    await services.limits.check(action, client)


class NotFoundHandler(ApiHandler):
    """Unmatched routes answer JSON 404, like every other error."""

    def prepare(self) -> None:
        super().prepare()
        raise tornado.web.HTTPError(404, "no such route")


class StrictTextProtocol(MessageHook):
    """A text frame that is not UTF-8 closes the socket with 1007 (RFC 6455 §7.4.1), where Tornado
    would drop the connection without a close frame."""

    def accept_message(self, opcode: int, data: bytes) -> bool:
        if opcode == 0x1 and not self.client_terminated:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.close(1007, "text frame is not valid UTF-8")
                return False
        return True


class ApiWebSocketHandler(JsonErrors, tornado.websocket.WebSocketHandler):
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

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        if isinstance(protocol, tornado.websocket.WebSocketProtocol13):
            return StrictTextProtocol(self, False, protocol.params)
        return protocol

    def check_upgrade(self) -> None:
        """What Tornado would refuse with a text/html page, refused with the API's JSON instead:
        a plain request (426, `Upgrade: websocket`) and a cross-origin one (403)."""
        headers = self.request.headers
        connection = {p.strip().lower() for p in headers.get("Connection", "").split(",")}
        if headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection:
            raise UpgradeRequired(
                "this is a WebSocket endpoint: connect with Upgrade: websocket",
                code="upgrade_required",
            )
        origin = headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise Forbidden("origin not allowed", code="origin_not_allowed")

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
        self.fail(error)

    def error_frame(self, error: DomainError) -> dict[str, Any]:
        """The error frame every socket sends: the HTTP envelope plus `type: error` (and, for a
        rate limit, `retry_after` in seconds, as `Retry-After` is on HTTP)."""
        frame: dict[str, Any] = {"type": "error", **error_envelope(error)}
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            frame["retry_after"] = max(1, math.ceil(retry_after))
        return frame
