"""The OpenAPI 3.1 document, assembled from the `openapi` dict each handlers module keeps beside its
`routes`, so a route and its description change together (a test keeps them in sync). Every body
and response references a schema of `server.schemas`, the same data the request validator reads.
WebSocket routes are documented as GET operations marked `x-websocket: true`: a plain GET answers
426 (JSON), an upgrade 101."""

from __future__ import annotations

import http
import importlib
from typing import Any

from handlers.base import ApiHandler
from server import schemas
from server.schemas import ref

ERROR = ref("Error")
# A JSON body may always be refused as malformed (400), too big (413) or not JSON (415).
BODY_ERRORS = (400, 413, 415)


def error_responses(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": _phrase(s), "content": {"application/json": {"schema": ERROR}}}
        for s in sorted(set(statuses))
    }


def _phrase(status: int) -> str:
    return http.HTTPStatus(status).phrase


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def operation(
    summary: str,
    ok: tuple[int, str, str],
    *errors: int,
    body: str | None = None,
    body_required: bool = True,
    auth: bool | None = False,
    params: list[dict[str, Any]] | None = None,
    limited: bool = False,
) -> dict[str, Any]:
    """One operation whose request and responses reference `server.schemas` by name.

    `ok` is (status, description, response schema name); `auth=None` means a token is optional;
    `limited` routes may answer 429 with `Retry-After`."""
    status, description, schema = ok
    statuses = set(errors)
    op: dict[str, Any] = {"summary": summary}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = json_body(ref(body), required=body_required)
        statuses.update(BODY_ERRORS)
    if auth is None:
        op["security"] = [{}, {"bearer": []}]
    elif auth:
        op["security"] = [{"bearer": []}]
        statuses.add(401)
    op["responses"] = {
        str(status): json_response(description, ref(schema)),
        **error_responses(*statuses),
        **(rate_limited() if limited else {}),
    }
    return op


def websocket_operation(
    summary: str, params: list[dict[str, Any]], *errors: int, protocol: str
) -> dict[str, Any]:
    """A WebSocket route, as OpenAPI can say it: a GET that upgrades (101), or 426 without
    `Upgrade: websocket`; refusals before the upgrade are JSON errors."""
    return {
        "summary": summary,
        "description": protocol,
        "x-websocket": True,
        "parameters": [
            *params,
            {
                "name": "access_token",
                "in": "query",
                "description": "the bearer token, for browsers (they cannot set headers)",
                "schema": {"type": "string"},
            },
        ],
        "security": [{"bearer": []}],
        "responses": {
            "101": {"description": "switching protocols"},
            **error_responses(401, 426, *errors),
        },
    }


def path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def rate_limited() -> dict[str, Any]:
    """The 429 of a rate-limited route (issue 10.3): the error body and `Retry-After`."""
    return {
        "429": {
            "description": "over this client's rate limit; retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
            "content": {"application/json": {"schema": ERROR}},
        }
    }


COMPONENTS: dict[str, Any] = {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    # The very dicts the request validator reads: one definition, no copies.
    "schemas": schemas.ALL,
}


def build_document(module_names: list[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for name in module_names:
        module = importlib.import_module(name)
        for path, item in getattr(module, "openapi", {}).items():
            paths.setdefault(path, {}).update(item)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "multistream",
            "version": "1",
            "description": "Multi-stream livestreaming: screen and camera as independent WebRTC "
            "streams, per-viewer composites, PIX payments. Errors are always "
            '`{"error": {"status", "code", "message"}}`; a method a route does not serve is a '
            "405 carrying `Allow`. WebSocket routes (`x-websocket: true`) send error frames "
            '`{"type": "error", "error": {...}}` of the same shape.',
        },
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
    }


class OpenApiHandler(ApiHandler):
    def initialize(self, services: Any, document: dict[str, Any] | None = None) -> None:  # type: ignore[override]
        super().initialize(services)
        self.document = document or {}

    def get(self) -> None:
        self.write_json(self.document)


routes: list[tuple[Any, ...]] = []  # registered by make_app, which owns the module list
openapi = {
    "/api/v1/openapi.json": {
        "get": operation("This document", (200, "OpenAPI 3.1 document", "OpenApiDocument"))
    }
}
