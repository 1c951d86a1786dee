"""Every place the HTTP edge reaches into Tornado's internals, in one module.

Tornado answers any exception that is not its own `HTTPError` with a 500 from a private method, has
no public "already answered" flag or reason phrase on a handler, no public "body still unread" on a
streamed request, and drops a WebSocket whose text frame is not UTF-8 without the close frame RFC
6455 asks for. Each hook below names the one private attribute it relies on; a hook that overrides a
method checks at import that Tornado still has it, and the readers raise `TornadoShapeError` naming
themselves, so a Tornado upgrade that changes shape fails loudly (`tests/test_tornado_hooks.py` runs
each against real Tornado objects) instead of silently answering HTML or 500s.
"""

from __future__ import annotations

from typing import Any

import tornado.web
import tornado.websocket


class TornadoShapeError(RuntimeError):
    """Tornado no longer has the internal a hook relies on."""


def _require(obj: object, attr: str, hook: str) -> Any:
    try:
        return getattr(obj, attr)
    except AttributeError:
        name = getattr(obj, "__name__", type(obj).__name__)
        raise TornadoShapeError(
            f"tornado hook {hook!r}: {name} has no {attr!r} (tornado changed)"
        ) from None


def finished(handler: tornado.web.RequestHandler) -> bool:
    """True once the handler has answered (`finish()` ran)."""
    return bool(_require(handler, "_finished", "finished"))


def reason(handler: tornado.web.RequestHandler) -> str:
    """The reason phrase `send_error`/`set_status` chose for the response."""
    return str(_require(handler, "_reason", "reason"))


def body_unread(handler: tornado.web.RequestHandler) -> bool:
    """True when answering before a streamed request body was read: the connection must close
    (Tornado closes it anyway), and saying so lets the client know rather than see a reset.
    (`_body_future` exists only while Tornado reads a body, so its absence is not a shape error.)"""
    future = getattr(handler.request, "_body_future", None)
    return future is not None and not future.done()


_require(tornado.web.RequestHandler, "_handle_request_exception", "RequestExceptionHook")


class RequestExceptionHook(tornado.web.RequestHandler):
    """Subclasses see every exception a request method raised first (`handle_exception`), before
    Tornado's private `_handle_request_exception` turns it into a 500."""

    def handle_exception(self, e: BaseException) -> bool:
        """Answer `e` and return True, or return False to leave it to Tornado."""
        return False

    def _handle_request_exception(self, e: BaseException) -> None:
        if not self.handle_exception(e):
            super()._handle_request_exception(e)


_require(tornado.websocket.WebSocketProtocol13, "_handle_message", "MessageHook")


class MessageHook(tornado.websocket.WebSocketProtocol13):
    """Subclasses vet each complete, uncompressed data frame (`accept_message`) before Tornado's
    private `_handle_message` decodes it."""

    def accept_message(self, opcode: int, data: bytes) -> bool:
        """False: the frame was refused (and the socket closed); Tornado never sees it."""
        return True

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        compressed = _require(self, "_frame_compressed", "MessageHook")
        if not compressed and not self.accept_message(opcode, data):
            return None
        return super()._handle_message(opcode, data)
