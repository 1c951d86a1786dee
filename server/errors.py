"""Domain errors raised by services; `handlers.base` maps each to one HTTP status and JSON body.

Services never import Tornado: they raise these, and the edge decides how they look on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class DomainError(Exception):
    """Base class: `status` is the HTTP status the edge answers, `code` a stable machine string."""

    status = 500
    code = "internal"
    # Response headers the error implies (e.g. `Upgrade` on 426); the edge writes them.
    headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        messages: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # The request field at fault (`pix.key`), so a form can show the message beside it, and the
        # message per language (`{"en": ..., "pt-BR": ...}`) where a person, not a program, reads it.
        self.field = field
        self.messages = dict(messages) if messages else None


class Invalid(DomainError):
    """The request is malformed or a value is out of range (400)."""

    status = 400
    code = "invalid"


class Unauthorized(DomainError):
    """No credentials, or credentials that are expired, forged or malformed (401)."""

    status = 401
    code = "unauthorized"


class PaymentRequired(DomainError):
    """The viewer asked for a priced stream that no paid order covers (402)."""

    status = 402
    code = "payment_required"


class Forbidden(DomainError):
    """Valid credentials that do not allow this action (403)."""

    status = 403
    code = "forbidden"


class NotFound(DomainError):
    """An id that does not exist (404)."""

    status = 404
    code = "not_found"


class Conflict(DomainError):
    """The action does not fit the current state, e.g. starting a stream of an ended session (409)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    """A body or message over the configured limit (413)."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    """A JSON route given a body of another Content-Type (415)."""

    status = 415
    code = "unsupported_media_type"


class UpgradeRequired(DomainError):
    """A plain HTTP request to a WebSocket-only endpoint (426)."""

    status = 426
    code = "upgrade_required"
    headers: ClassVar[Mapping[str, str]] = {"Upgrade": "websocket"}


class TooManyRequests(DomainError):
    """A client over its rate limit (429); `retry_after` (seconds) becomes a `Retry-After` header."""

    status = 429
    code = "rate_limited"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """The server is draining or a dependency is down (503)."""

    status = 503
    code = "unavailable"


def envelope(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    messages: Mapping[str, str] | None = None,
) -> dict[str, dict[str, object]]:
    """The one error shape every edge writes, HTTP bodies and WebSocket frames alike; `field` and
    `messages` only when the error names them."""
    error: dict[str, object] = {"status": status, "code": code, "message": message}
    if field:
        error["field"] = field
    if messages:
        error["messages"] = dict(messages)
    return {"error": error}


def error_envelope(err: DomainError) -> dict[str, dict[str, object]]:
    return envelope(err.status, err.code, err.message, field=err.field, messages=err.messages)
