"""The pre-multistream single-stream API, served from the same sessions (one camera stream each).

These routes come last in the app so `/api/v1/livestream/{id}` never shadows a newer route.
"""

from __future__ import annotations

from handlers.base import ApiHandler
from handlers.openapi import error_responses, json_body, json_response
from server import legacy
from server.schemas import validate

PREFIX = "/api/v1/livestream"


class LegacyStartHandler(ApiHandler):
    async def post(self) -> None:
        body = validate(self.json_body(), "LegacyStart")
        self.write_json(await legacy.start(self.services.sessions, body), 201)


class LegacyGetHandler(ApiHandler):
    async def get(self, session_id: str) -> None:
        self.write_json(await legacy.get(self.services.sessions, session_id))


class LegacyStopHandler(ApiHandler):
    async def post(self, session_id: str) -> None:
        claims = self.claims()
        validate(self.json_body(allow_empty=True), "NoFields")
        self.write_json(await legacy.stop(self.services.sessions, claims, session_id))


routes = [
    (rf"{PREFIX}/start", LegacyStartHandler),
    (rf"{PREFIX}/([^/]+)/stop", LegacyStopHandler),
    (rf"{PREFIX}/([^/]+)", LegacyGetHandler),
]


_ID = {"name": "livestream_id", "in": "path", "required": True, "schema": {"type": "string"}}
openapi = {
    f"{PREFIX}/start": {
        "post": {
            "summary": "Legacy: start a single-stream (camera) livestream",
            "deprecated": True,
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string"},
                        "price_centavos": {"type": "integer", "minimum": 0},
                    },
                }
            ),
            "responses": {
                "201": json_response("livestream and token"),
                **error_responses(400, 413),
            },
        }
    },
    f"{PREFIX}/{{livestream_id}}": {
        "get": {
            "summary": "Legacy: livestream status",
            "deprecated": True,
            "parameters": [_ID],
            "responses": {"200": json_response("livestream"), **error_responses(404)},
        }
    },
    f"{PREFIX}/{{livestream_id}}/stop": {
        "post": {
            "summary": "Legacy: stop the livestream",
            "deprecated": True,
            "parameters": [_ID],
            "security": [{"bearer": []}],
            "responses": {
                "200": json_response("ended livestream"),
                **error_responses(401, 403, 404),
            },
        }
    },
}
