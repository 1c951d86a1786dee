"""The OpenAPI 3 document, assembled from the `openapi` dict each handlers module keeps beside its
`routes`, so a route and its description change together (a test keeps them in sync)."""

from __future__ import annotations

import importlib
from typing import Any

from handlers.base import ApiHandler

ERROR = {"$ref": "#/components/schemas/Error"}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "error", "content": {"application/json": {"schema": ERROR}}}
        for s in statuses
    }


def json_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


def rate_limited() -> dict[str, Any]:
    """The 429 of a rate-limited route (issue 10.3): the error body and `Retry-After`."""
    return {
        "429": {
            "description": "over this client's rate limit; retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
            "content": {"application/json": {"schema": ERROR}},
        }
    }


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


COMPONENTS: dict[str, Any] = {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["status", "code", "message"],
                    "properties": {
                        "status": {"type": "integer"},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                }
            },
        },
        "Quality": {
            "type": "object",
            "properties": {
                "preset": {
                    "type": "string",
                    "enum": ["360p", "480p", "720p", "1080p", "1440p", "2160p"],
                },
                "fps": {"type": "integer", "minimum": 5, "maximum": 30},
                "content_hint": {"type": "string", "enum": ["detail", "text", "motion"]},
            },
            "additionalProperties": False,
        },
        "Pricing": {
            "type": "object",
            "properties": {
                "base": {"type": "integer", "minimum": 0},
                "addons": {
                    "type": "object",
                    "properties": {
                        "screen": {"type": "integer", "minimum": 0},
                        "camera": {"type": "integer", "minimum": 0},
                    },
                    "additionalProperties": False,
                },
                "bundle_discount_pct": {"type": "integer", "minimum": 0, "maximum": 100},
            },
            "additionalProperties": False,
        },
        "Stream": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "session_id": {"type": "string"},
                "kind": {"type": "string", "enum": ["screen", "camera"]},
                "status": {"type": "string", "enum": ["pending", "live", "stopped", "failed"]},
                "quality": {"type": "object"},
            },
        },
        "Session": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "string", "enum": ["live", "ended"]},
                "created_at": {"type": "string", "format": "date-time"},
                "ended_at": {"type": ["string", "null"], "format": "date-time"},
                "pricing": {"$ref": "#/components/schemas/Pricing"},
                "streams": {"type": "array", "items": {"$ref": "#/components/schemas/Stream"}},
            },
        },
        "Preferences": {
            "type": "object",
            "properties": {
                "enabled_streams": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["screen", "camera"]},
                    "uniqueItems": True,
                },
                "mode": {"type": "string", "enum": ["separate", "composite"]},
                "pip": {
                    "type": "object",
                    "properties": {
                        "corner": {
                            "type": "string",
                            "enum": [
                                "top-left",
                                "top-right",
                                "bottom-left",
                                "bottom-right",
                                "auto",
                            ],
                        },
                        "size_pct": {"type": "integer", "minimum": 10, "maximum": 40},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
        "Quote": {
            "type": "object",
            "properties": {
                "amount_centavos": {"type": "integer"},
                "currency": {"type": "string", "enum": ["BRL"]},
                "items": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
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
            '`{"error": {"status", "code", "message"}}`.',
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
        "get": {
            "summary": "This document",
            "responses": {"200": json_response("OpenAPI 3 document")},
        }
    }
}
