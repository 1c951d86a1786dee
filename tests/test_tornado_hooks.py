"""Every Tornado hook of `handlers.tornado_hooks`, against a real Tornado server on loopback.

Each test names its hook: if a Tornado upgrade renames the private attribute or method a hook relies
on, the failure says which hook broke (the API would otherwise answer 500s or drop sockets).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.web
import tornado.websocket
from tornado.testing import bind_unused_port

from handlers import tornado_hooks
from handlers.tornado_hooks import MessageHook, RequestExceptionHook, TornadoShapeError

SEEN: dict[str, Any] = {}


class Probe(RequestExceptionHook):
    def handle_exception(self, e: BaseException) -> bool:
        if isinstance(e, KeyError):
            self.set_status(418)
            self.finish("handled")
            return True
        return False

    def get(self) -> None:
        what = self.get_argument("raise", "")
        if what == "key":
            raise KeyError(what)
        if what == "value":
            raise ValueError(what)
        SEEN["finished_before"] = tornado_hooks.finished(self)
        self.set_status(299, "Custom Reason")
        SEEN["reason"] = tornado_hooks.reason(self)
        self.finish("ok")
        SEEN["finished_after"] = tornado_hooks.finished(self)


@tornado.web.stream_request_body
class Upload(tornado.web.RequestHandler):
    def prepare(self) -> None:
        SEEN["unread_in_prepare"] = tornado_hooks.body_unread(self)

    def data_received(self, chunk: bytes) -> None:
        pass

    def post(self) -> None:
        SEEN["unread_in_post"] = tornado_hooks.body_unread(self)
        self.finish("ok")


class Refusing(MessageHook):
    def accept_message(self, opcode: int, data: bytes) -> bool:
        if data == b"refuse":
            self.close(4000, "refused")
            return False
        return True


class Echo(tornado.websocket.WebSocketHandler):
    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        assert isinstance(protocol, tornado.websocket.WebSocketProtocol13)
        return Refusing(self, False, protocol.params)

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = tornado.web.Application([("/probe", Probe), ("/upload", Upload), ("/ws", Echo)])
    server = tornado.httpserver.HTTPServer(app)
    sock, port = bind_unused_port()
    server.add_sockets([sock])
    SEEN.clear()
    yield f"127.0.0.1:{port}"
    server.stop()
    await server.close_all_connections()


async def _get(url: str) -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient()
    return await client.fetch(url, raise_error=False)


async def test_hooks_finished_and_reason_read_the_handler(base_url: str) -> None:
    response = await _get(f"http://{base_url}/probe")
    assert response.code == 299
    assert SEEN == {
        "finished_before": False,
        "reason": "Custom Reason",
        "finished_after": True,
    }, "finished/reason: Tornado's handler state changed shape"


async def test_hook_request_exception_sees_exceptions_first(base_url: str) -> None:
    handled = await _get(f"http://{base_url}/probe?raise=key")
    assert (handled.code, handled.body) == (418, b"handled"), "RequestExceptionHook: not called"
    left = await _get(f"http://{base_url}/probe?raise=value")
    assert left.code == 500, "RequestExceptionHook: Tornado's own handling must still follow"


async def test_hook_body_unread_follows_a_streamed_body(base_url: str) -> None:
    client = tornado.httpclient.AsyncHTTPClient()
    response = await client.fetch(f"http://{base_url}/upload", method="POST", body=b"x" * 1000)
    assert response.code == 200
    assert SEEN == {"unread_in_prepare": True, "unread_in_post": False}, (
        "body_unread: Tornado's streamed-body future changed shape"
    )


async def test_hook_message_hook_vets_frames_before_tornado(base_url: str) -> None:
    ws = await tornado.websocket.websocket_connect(f"ws://{base_url}/ws")
    await ws.write_message("hello")
    assert await ws.read_message() == "hello", "MessageHook: a frame it accepted was lost"
    await ws.write_message("refuse")
    assert await ws.read_message() is None
    assert ws.close_code == 4000, "MessageHook: accept_message was not consulted"


def test_a_missing_internal_raises_naming_the_hook() -> None:
    with pytest.raises(TornadoShapeError, match="'finished'"):
        tornado_hooks.finished(object())  # type: ignore[arg-type]
    with pytest.raises(TornadoShapeError, match="'reason'"):
        tornado_hooks.reason(object())  # type: ignore[arg-type]
