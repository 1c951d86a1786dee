"""Shared fixtures: real settings in a temp dir, real services, the real app on an ephemeral port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.testing

from server.app import make_app, make_http_server
from server.lifespan import open_services
from server.services import Services
from server.settings import Secret, Settings


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Test settings: loopback-only ICE, a fixed secret, recordings under the temp dir."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "token_secret": Secret("test-secret-" + "x" * 32),
        "ice_hosts": ("127.0.0.1",),
        "ice_servers": (),
        "instance_id": "test-instance",
        "pix_webhook_secret": Secret("webhook-secret"),
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


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

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
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


@pytest.fixture
async def server(services: Services) -> AsyncIterator[RunningServer]:
    app = make_app(services.settings, services)
    sock, port = tornado.testing.bind_unused_port()
    http_server = make_http_server(app, services.settings)
    http_server.add_sockets([sock])
    try:
        yield RunningServer(services, port, Client(f"http://127.0.0.1:{port}"))
    finally:
        http_server.stop()
        await http_server.close_all_connections()


@pytest.fixture
def api(server: RunningServer) -> Client:
    return server.client
