"""The app factory: one Tornado `Application` from settings and services, no globals."""

from __future__ import annotations

import importlib
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from handlers.base import NotFoundHandler
from handlers.openapi import OpenApiHandler, build_document
from handlers.ops import HealthzHandler, MetricsHandler, ReadyzHandler
from server.logs import make_log_function
from server.services import Services
from server.settings import Settings

# Each module ends with its own `routes` list. Order matters: the first match wins, so the legacy
# catch-all `/api/v1/livestream/{id}` comes last.
ROUTE_MODULES: list[str] = [
    "handlers.sessions",
    "handlers.accounts",  # sign-up, log-in, the account and its API tokens
    "handlers.dashboard",  # the broadcaster's sessions, earnings and replays
    "handlers.payments",
    "handlers.chat",
    "handlers.signaling",
    "handlers.whip",  # WHIP ingest / WHEP playback (RFC 9725) over the same media plane
    "handlers.recordings",
    "handlers.ops",
    "handlers.relay",  # the owner's end of relay links (internal: marked requests only)
    "handlers.vocabulary",  # before handlers.web: it serves /static/js/vocabulary.js itself
    "handlers.legacy",
    # The web client's pages and assets: exact paths only, so no API route can be shadowed.
    "handlers.web",
]


def collect_routes(services: Services) -> list[tuple[Any, ...]]:
    """Concatenate every module's routes; 2-tuples get the services injected."""
    document = build_document(["handlers.openapi", *ROUTE_MODULES])
    routes: list[tuple[Any, ...]] = [
        (r"/api/v1/openapi.json", OpenApiHandler, {"services": services, "document": document})
    ]
    for name in ROUTE_MODULES:
        module = importlib.import_module(name)
        for route in module.routes:
            if services.settings.metrics_address and route[1] is MetricsHandler:
                continue  # served by the separate metrics listener only
            if len(route) == 2:
                routes.append((route[0], route[1], {"services": services}))
            else:
                routes.append(tuple(route))
    return routes


def make_metrics_app(settings: Settings, services: Services) -> tornado.web.Application:
    """The separate listener (`metrics_address`): `/metrics` and the probes, nothing else."""
    args = {"services": services}
    return tornado.web.Application(
        [
            (r"/metrics", MetricsHandler, args),
            (r"/healthz", HealthzHandler, args),
            (r"/readyz", ReadyzHandler, args),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        log_function=make_log_function(services.metrics),
    )


def listen(server: HTTPServer, port: int, host: str) -> int:
    """`server.listen(port, host)`, answering the port bound (port 0 picks a free one) through
    Tornado's public socket API rather than the server's private socket map."""
    sockets = bind_sockets(port, host)
    server.add_sockets(sockets)
    return int(sockets[0].getsockname()[1])


def make_http_server(app: tornado.web.Application, settings: Settings) -> HTTPServer:
    """The HTTP server every entry point uses: bodies stream into the handlers, which refuse
    oversized ones with a JSON 413 (the cap here only stops a client streaming forever), and slow
    clients are closed: headers (and keep-alive idle) within `header_timeout_s`, a body within
    `body_timeout_s`."""
    return HTTPServer(
        app,
        max_body_size=64 * settings.max_body_bytes,
        idle_connection_timeout=settings.header_timeout_s,
        body_timeout=settings.body_timeout_s,
    )


def make_app(settings: Settings, services: Services, **extra: Any) -> tornado.web.Application:
    return tornado.web.Application(
        collect_routes(services),
        debug=settings.debug,
        default_handler_class=NotFoundHandler,
        default_handler_args={"services": services},
        websocket_max_message_size=64 * 1024,
        # One access line per request without the query string (it may carry `access_token`),
        # feeding the latency histogram by route pattern.
        **{"log_function": make_log_function(services.metrics), **extra},
    )
