"""Signaling for a session served elsewhere: forwarded to its owner over the internal network.

Clients talk to one load-balanced address. Every instance answers the REST API itself (the state is
in the shared store), but an offer, a trickled candidate, a signaling WebSocket or a WHIP/WHEP
request must reach the one process holding the session's media: the holder of its lease
(`server.ownership`). An instance that is not the owner forwards the request to the owner's internal
address and relays the answer unchanged, so the SDP answer -- and with it the ICE candidates the
client sends media to -- is the owner's.

Why forward rather than redirect the client (307, or a URL in the answer): browsers' WebSocket API
follows no redirects; a redirect needs every instance reachable from the internet under its own
name, with TLS and CORS; and an answer naming another instance would have to be followed by every
client (web, WHIP/WHEP encoders, scripts). Forwarding costs one internal hop for the few signaling
messages of a connection; media never passes through the forwarding instance.

A forwarded request carries `X-Multistream-Forwarded`, an HMAC of its method and path under the
shared token secret: the owner serves it without routing it again (no loops, even while a lease
changes hands) and without spending the client's rate-limit tokens a second time (the receiving
instance already did, with the client's own address). A client cannot forge it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

import tornado.httpclient
import tornado.web
import tornado.websocket

from server.errors import Unavailable
from server.internal import FORWARDED, internal_mark, valid_mark

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger(__name__)

# Which instance serves a viewer's connection (its own, or the one the assignment forwarded to).
SERVED_BY = "X-Multistream-Served-By"
# Request headers the owner needs; everything else (cookies, origin, hop-by-hop) stays here.
_REQUEST_HEADERS = ("Authorization", "Content-Type", "If-Match", "Accept")
# Answer headers the client needs from the owner (CORS ones are this instance's own).
_ANSWER_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Location",
    "ETag",
    "Link",
    "Accept-Patch",
    "Retry-After",
    SERVED_BY,
)
_TIMEOUT_S = 15.0
# Concurrent forwarded requests per instance (Tornado's shared client allows 10 and queues the rest:
# a crowd of viewers joining through one instance would wait in line behind each other's offers).
_MAX_FORWARDS = 256
_clients: dict[int, tornado.httpclient.AsyncHTTPClient] = {}


def _client() -> tornado.httpclient.AsyncHTTPClient:
    """This event loop's forwarding client (one per loop: tests run several loops in turn)."""
    key = id(asyncio.get_running_loop())
    client = _clients.get(key)
    if client is None:
        client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=_MAX_FORWARDS)
        _clients.clear()  # a previous loop's client is of no use any more
        _clients[key] = client
    return client


def _mark(services: Services, method: str, path: str) -> str:
    """The internal mark this instance puts on a request it sends another instance."""
    return internal_mark(services.settings.token_secret.reveal(), method, path)


def is_forwarded(handler: tornado.web.RequestHandler) -> bool:
    """True for a request another instance forwarded here (a valid mark)."""
    services: Services = handler.services  # type: ignore[attr-defined]
    request = handler.request
    return valid_mark(
        services.settings.token_secret.reveal(),
        request.method or "",
        request.path,
        request.headers.get(FORWARDED),
    )


async def session_of_stream(services: Services, stream_id: str) -> str | None:
    stream = await services.store.get("broadcast_streams", stream_id)
    return None if stream is None else str(stream["session_id"])


async def owner_elsewhere(
    handler: tornado.web.RequestHandler, session_id: str | None
) -> str | None:
    """The owner's internal address when this request must be forwarded there, else None.

    A request forwarded here is never forwarded again: if this instance does not serve the
    session (the lease moved meanwhile), it answers 503 and the client retries."""
    if session_id is None:
        return None
    services: Services = handler.services  # type: ignore[attr-defined]
    address = await services.ownership.route(session_id)
    if address is not None and is_forwarded(handler):
        raise Unavailable("the session moved to another instance; retry", code="owner_unavailable")
    return address


def _unreachable(address: str, detail: object) -> Unavailable:
    log.warning("owner at %s unreachable: %s", address, detail)
    return Unavailable(
        "the instance serving this session does not answer; retry shortly (another instance "
        "takes the session over once its lease expires)",
        code="owner_unavailable",
    )


async def forward_http(handler: tornado.web.RequestHandler, address: str, body: bytes) -> None:
    """Send this request to the owner and answer with its answer (status, headers, body)."""
    services: Services = handler.services  # type: ignore[attr-defined]
    request = handler.request
    method = request.method or "GET"
    headers = {h: request.headers[h] for h in _REQUEST_HEADERS if h in request.headers}
    headers[FORWARDED] = _mark(services, method, request.path)
    try:
        resp = await _client().fetch(
            address + request.uri,
            method=method,
            headers=headers,
            body=body if method in ("POST", "PUT", "PATCH") else None,
            allow_nonstandard_methods=True,
            follow_redirects=False,
            raise_error=False,
            request_timeout=_TIMEOUT_S,
        )
    except OSError as exc:
        raise _unreachable(address, exc) from None
    if resp.code == 599:
        raise _unreachable(address, resp.error)
    handler.set_status(resp.code, resp.reason)
    for name in _ANSWER_HEADERS:
        values = resp.headers.get_list(name)
        if values:
            handler.clear_header(name)
            for value in values:
                handler.add_header(name, value)
    handler.finish(resp.body or b"")


class SocketRelay:
    """A signaling WebSocket opened here for a session owned elsewhere: one WebSocket to the owner,
    and every text frame relayed each way. Closing either side closes the other."""

    def __init__(self, handler: tornado.websocket.WebSocketHandler, address: str) -> None:
        self.handler = handler
        self.address = address
        self.upstream: tornado.websocket.WebSocketClientConnection | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self) -> None:
        services: Services = self.handler.services  # type: ignore[attr-defined]
        request = self.handler.request
        url = "ws" + self.address.removeprefix("http") + request.uri
        headers = {h: request.headers[h] for h in ("Authorization",) if h in request.headers}
        headers[FORWARDED] = _mark(services, request.method or "GET", request.path)
        try:
            self.upstream = await tornado.websocket.websocket_connect(
                tornado.httpclient.HTTPRequest(url, headers=headers, request_timeout=_TIMEOUT_S)
            )
        except (OSError, tornado.httpclient.HTTPClientError) as exc:
            log.warning("owner socket at %s refused: %s", self.address, exc)
            self.handler.close(1013, "the instance serving this session does not answer")
            return
        self._pump = asyncio.create_task(self._relay_down(), name="ws-relay")

    async def _relay_down(self) -> None:
        assert self.upstream is not None
        while True:
            message = await self.upstream.read_message()
            if message is None:
                break
            with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                await self.handler.write_message(message)
        self.handler.close()

    async def send_up(self, message: str | bytes) -> None:
        if self.upstream is not None:
            with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        if self._pump is not None:
            self._pump.cancel()


async def viewer_target(handler: tornado.web.RequestHandler, session_id: str | None) -> str | None:
    """Where a viewer's signaling for `session_id` is served (`server.assignment`): None here --
    as its owner, or through a relay link -- else the chosen instance's internal address. The
    serving instance is named in `X-Multistream-Served-By`."""
    if session_id is None:
        return None
    services: Services = handler.services  # type: ignore[attr-defined]
    decision = await services.assignment.decide(session_id, forwarded=is_forwarded(handler))
    if decision.address is None:
        handler.set_header(SERVED_BY, decision.instance_id)
    return decision.address


async def viewer_forwarded(handler: tornado.web.RequestHandler, session_id: str | None) -> bool:
    """A viewer's offer: forwarded to the instance chosen to serve it if that is another one;
    True when the answer has been written."""
    address = await viewer_target(handler, session_id)
    if address is None:
        return False
    await forward_http(handler, address, bytes(getattr(handler, "body", b"") or b""))
    return True


async def pc_forwarded(
    handler: tornado.web.RequestHandler, session_id: str | None, pc_id: object
) -> bool:
    """A request about one connection (`pc_id`: a candidate, a quality choice, a WHEP resource):
    served where that connection lives -- here, the instance relaying it (its id says which,
    `server.assignment.relay_pc_id`), else the session's owner."""
    services: Services = handler.services  # type: ignore[attr-defined]
    if isinstance(pc_id, str) and services.media.peer(pc_id) is not None:
        return False
    if not is_forwarded(handler):
        address = await services.assignment.address_of_pc(pc_id)
        if address is not None:
            await forward_http(handler, address, bytes(getattr(handler, "body", b"") or b""))
            return True
    return await forwarded(handler, session_id)


async def gather_json(handler: tornado.web.RequestHandler, addresses: list[str]) -> list[object]:
    """This GET, marked as internal, sent to each of `addresses` at once; the JSON bodies of those
    answering 200 (an instance that does not answer is left out: what it holds is unknown)."""
    services: Services = handler.services  # type: ignore[attr-defined]
    request = handler.request
    headers = {h: request.headers[h] for h in ("Authorization",) if h in request.headers}
    headers[FORWARDED] = _mark(services, "GET", request.path)

    async def one(address: str) -> object:
        try:
            resp = await _client().fetch(
                address + request.uri,
                headers=headers,
                raise_error=False,
                request_timeout=_TIMEOUT_S,
            )
        except OSError:
            return None
        if resp.code != 200:
            return None
        try:
            return json.loads(resp.body)
        except ValueError:
            return None

    answers = await asyncio.gather(*(one(a) for a in addresses))
    return [a for a in answers if a is not None]


async def forwarded(handler: tornado.web.RequestHandler, session_id: str | None) -> bool:
    """Forward this HTTP request to the session's owner if that is another instance; True when
    the answer has been written (the handler then does nothing more)."""
    address = await owner_elsewhere(handler, session_id)
    if address is None:
        return False
    await forward_http(handler, address, bytes(getattr(handler, "body", b"") or b""))
    return True
