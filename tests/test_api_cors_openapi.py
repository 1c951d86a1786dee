"""CORS allowlist, preflight, and the OpenAPI document kept in sync with the routes."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from multistream.app import collect_routes, make_app
from tests.api_helpers import FREE_BODY, PREFIX, assert_error


async def test_same_origin_allowed_other_origin_not(server, api) -> None:
    same = f"http://127.0.0.1:{server.port}"
    r = await api.get(f"{PREFIX}/sessions", headers={"Origin": same})
    assert r.headers["Access-Control-Allow-Origin"] == same
    assert "Origin" in r.headers.get("Vary", "")
    r = await api.get(f"{PREFIX}/sessions", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Origin" in r.headers.get("Vary", "")
    r = await api.request(
        "OPTIONS",
        f"{PREFIX}/session/start",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert_error(r, 403, "origin_not_allowed")


@pytest.fixture
def settings(tmp_path):
    from tests.conftest import make_settings

    return make_settings(tmp_path / "data", allowed_origins=("https://studio.example",))


async def test_configured_origin_preflight(api) -> None:
    r = await api.request(
        "OPTIONS",
        f"{PREFIX}/session/start",
        headers={
            "Origin": "https://studio.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://studio.example"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    assert r.headers.get("Access-Control-Allow-Credentials") is None  # never '*' with credentials
    r = await api.post(
        f"{PREFIX}/session/start",
        FREE_BODY,
        headers={"Origin": "https://studio.example"},
        token=api.broadcaster_token,
    )
    assert r.status == 201 and r.headers["Access-Control-Allow-Origin"] == "https://studio.example"
    assert r.headers["Access-Control-Allow-Origin"] != "*"


def _route_to_template(pattern: str) -> str:
    """`/api/v1/livestream/session/([^/]+)/status` → `/api/v1/livestream/session/{}/status`."""
    out = re.sub(r"\((?:\?P<\w+>)?[^()]*\)", "{}", pattern)
    return out.rstrip("$")


async def test_openapi_matches_routes(server, api) -> None:
    r = await api.get("/api/v1/openapi.json")
    assert r.status == 200
    doc = r.json
    assert doc["openapi"].startswith("3.")
    doc_paths = {re.sub(r"\{[^}]+\}", "{}", p) for p in doc["paths"]}
    route_paths = {
        _route_to_template(route[0])
        for route in collect_routes(server.services)
        if route[0].startswith("/api/")
    }
    assert route_paths, "no API routes found"
    assert route_paths - doc_paths == set(), "routes missing from the OpenAPI document"
    assert doc_paths - route_paths == set(), "documented paths with no route"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "responses" in op, (path, method)


def test_make_app_builds_with_debug_off(services) -> None:
    app = make_app(replace(services.settings), services)
    assert app.settings["debug"] is False
