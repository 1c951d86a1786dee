"""Shared fixtures: real settings in a temp dir, real services, the real app on an ephemeral port.

Tests (or modules, with `pytestmark`) marked `store_backends` run once per store backend: the
embedded SQLite file, and MongoDB through the real driver against a MongoDB wire server started
once per test session (`mongodb_server`, see tests/mongodb.py), one fresh database per test.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.testing

from multistream.app import make_app, make_http_server
from server.lifespan import open_services
from server.services import Services
from server.settings import Secret, Settings
from tests import mongodb
from tests.api_helpers import make_broadcaster
from tests.required import unavailable

STORE_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mongodb", id="mongodb", marks=pytest.mark.mongodb_live),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "store_backends"
    ):
        metafunc.parametrize("store_backend", STORE_BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def mongodb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mongodb.WireServer]:
    """One MongoDB wire server for the whole run (or `MULTISTREAM_TEST_MONGODB_URI`'s server)."""
    external = os.environ.get(mongodb.URI_ENV)
    if external:
        server = mongodb.WireServer(external)
        mongodb.wait_ping(external, timeout=10)
        yield server
        return
    binary = mongodb.secantusd()
    if binary is None:
        reason = (
            "no MongoDB wire server: run `make install` (secantusdb in .venv-mongo) "
            f"or set {mongodb.URI_ENV}"
        )
        unavailable(mongodb.REQUIRE_ENV, "MongoDB tests", reason)
    server = mongodb.start(binary, tmp_path_factory.mktemp("mongodb") / "secantusd.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """`sqlite` unless the test is marked `store_backends` (then each backend in turn)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_url(store_backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The store URL for `store_backend`: None (the default SQLite file under `data_dir`) or a
    fresh database on the MongoDB wire server, dropped afterwards."""
    if store_backend == "sqlite":
        yield None
        return
    server: mongodb.WireServer = request.getfixturevalue("mongodb_server")
    db = mongodb.unique_db()
    yield server.uri(db)
    server.drop(db)


_GENEROUS = (1_000_000, 1_000_000)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Test settings: loopback-only ICE, a fixed secret, recordings under the temp dir."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "token_secret": Secret("test-secret-" + "x" * 32),
        "ice_hosts": ("127.0.0.1",),
        "ice_servers": (),
        "instance_id": "test-instance",
        "pix_webhook_secret": Secret("webhook-secret"),
        # Rate limits far above what any test not about them sends (tests/test_rate_limits.py
        # sets its own); the defaults stay on in production.
        "rate_session_start": _GENEROUS,
        "rate_join": _GENEROUS,
        "rate_offer": _GENEROUS,
        "rate_webhook": _GENEROUS,
        "rate_login": _GENEROUS,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(tmp_path: Path, store_url: str | None) -> Settings:
    return make_settings(tmp_path / "data", store_url=store_url)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with open_services(settings) as svc:
        yield svc


@dataclass
class Response:
    status: int
    body: bytes
    headers: Any

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """A small HTTP client bound to the server under test."""

    base_url: str
    _http: tornado.httpclient.AsyncHTTPClient = field(
        default_factory=tornado.httpclient.AsyncHTTPClient
    )
    # An API token of the test broadcaster `serve` creates: starting a session needs one.
    broadcaster_token: str | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
    ) -> Response:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        payload: bytes | None = raw
        if payload is None and body is not None:
            payload = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if payload is None and method in ("POST", "PUT"):
            payload = b""
        if payload:
            hdrs.setdefault("Content-Type", "application/json")
        resp = await self._http.fetch(
            self.base_url + path,
            method=method,
            body=payload,
            headers=hdrs,
            raise_error=False,
            allow_nonstandard_methods=True,
            request_timeout=30,
            follow_redirects=follow_redirects,
        )
        return Response(resp.code, resp.body or b"", resp.headers)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("PUT", path, body, **kw)


@dataclass
class RunningServer:
    services: Services
    port: int
    client: Client

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def serve(services: Services, *, broadcaster: bool = True) -> AsyncIterator[RunningServer]:
    """The real app for `services` on an ephemeral loopback port; with `broadcaster`, its client
    carries an API token of a broadcaster account (`api_helpers.BROADCASTER`) made once per store."""
    app = make_app(services.settings, services)
    sock, port = tornado.testing.bind_unused_port()
    http_server = make_http_server(app, services.settings)
    http_server.add_sockets([sock])
    client = Client(f"http://127.0.0.1:{port}")
    if broadcaster:
        _, client.broadcaster_token = await make_broadcaster(services)
    try:
        yield RunningServer(services, port, client)
    finally:
        http_server.stop()
        await http_server.close_all_connections()


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[RunningServer]:
    """Services and the app for settings a test chose itself."""
    async with open_services(settings) as svc, serve(svc) as srv:
        yield srv


@pytest.fixture
async def server(services: Services) -> AsyncIterator[RunningServer]:
    async with serve(services) as srv:
        yield srv


@pytest.fixture
def api(server: RunningServer) -> Client:
    return server.client
