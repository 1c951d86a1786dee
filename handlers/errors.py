"""The one place an error becomes HTTP: the JSON envelope, `Allow` on 405, `Connection: close`.

Every handler class (API, WebSocket, pages, assets) mixes in `JsonErrors`, so an unknown method, a
missing route or a domain error looks the same everywhere: `{"error": {"status", "code",
"message"}}` (built by `server.errors.envelope`, which WebSocket error frames use as well).
"""

from __future__ import annotations

import http
import json
import math
from typing import Any

import tornado.web

from handlers.tornado_hooks import RequestExceptionHook, body_unread, finished, reason
from server.errors import DomainError, envelope

# Methods a handler can implement; a class allows those it overrides (`Allow` on 405).
STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def allowed_methods(cls: type[tornado.web.RequestHandler]) -> list[str]:
    base = tornado.web.RequestHandler
    return [m for m in STANDARD_METHODS if getattr(cls, m.lower()) is not getattr(base, m.lower())]


def status_code_name(status: int) -> str:
    try:
        return http.HTTPStatus(status).name.lower()
    except ValueError:
        return "error"


class JsonErrors(RequestExceptionHook):
    """Mixin (first in the bases): errors as the API's JSON envelope, never Tornado's HTML page."""

    _domain_error: DomainError | None = None

    def handle_exception(self, e: BaseException) -> bool:
        # Domain errors carry their own status; Tornado would otherwise answer every non-HTTPError 500.
        if isinstance(e, DomainError) and not finished(self):
            self._domain_error = e
            self.send_error(e.status)
            return True
        return False

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if (
            isinstance(value, DomainError | tornado.web.HTTPError)
            and getattr(value, "status", getattr(value, "status_code", 500)) < 500
        ):
            return
        super().log_exception(typ, value, tb)

    def fail(self, err: DomainError) -> None:
        """Answer `err` now (handlers that catch a domain error themselves, e.g. before an upgrade)."""
        self._domain_error = err
        self.send_error(err.status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.clear_header("Content-Disposition")
        err = self._domain_error
        exc = kwargs.get("exc_info", (None, None, None))[1]
        field, messages = None, None
        if err is not None:
            field, messages = err.field, err.messages
            code, message = err.code, err.message
            for name, value in err.headers.items():
                self.set_header(name, value)
            retry_after = getattr(err, "retry_after", None)  # TooManyRequests
            if retry_after is not None:
                self.set_header("Retry-After", str(max(1, math.ceil(retry_after))))
        elif isinstance(exc, tornado.web.HTTPError):
            code = status_code_name(status_code)
            message = (
                exc.log_message % exc.args
                if exc.log_message and exc.args
                else (exc.log_message or exc.reason or http.HTTPStatus(status_code).phrase)
            )
        elif status_code >= 500:
            code, message = "internal", "internal server error"
        else:
            code, message = status_code_name(status_code), reason(self)
        if status_code == 405:
            allow = ", ".join(allowed_methods(type(self)))
            self.set_header("Allow", allow)
            message = f"method {self.request.method} not allowed here; allowed: {allow}"
        if body_unread(self):
            self.set_header("Connection", "close")
        self.finish(
            json.dumps(
                envelope(status_code, code, message, field=field, messages=messages),
                ensure_ascii=False,
            )
        )
