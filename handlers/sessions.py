"""Multi-stream session API: start, status, join, preferences, per-stream control, end, list."""

from __future__ import annotations

from handlers.base import ApiHandler
from handlers.openapi import error_responses, json_body, json_response
from server.schemas import validate

PREFIX = "/api/v1/livestream"
ID = r"([^/]+)"
KIND = r"(screen|camera|[^/]+)"


class StartSessionHandler(ApiHandler):
    async def post(self) -> None:
        body = validate(self.json_body(), "StartSession")
        self.write_json(await self.services.sessions.start_session(body), 201)


class SessionStatusHandler(ApiHandler):
    async def get(self, session_id: str) -> None:
        self.write_json(await self.services.sessions.status(session_id))


class JoinHandler(ApiHandler):
    async def post(self, session_id: str) -> None:
        validate(self.json_body(allow_empty=True), "NoFields")  # no fields yet: refuse any
        token = self.optional_token()
        self.write_json(await self.services.sessions.join(session_id, token))


class PreferencesHandler(ApiHandler):
    async def get(self, session_id: str) -> None:
        self.write_json(await self.services.sessions.get_preferences(self.claims(), session_id))

    async def put(self, session_id: str) -> None:
        claims = self.claims()
        body = validate(self.json_body(), "Preferences")
        self.write_json(await self.services.sessions.put_preferences(claims, session_id, body))


class StreamControlHandler(ApiHandler):
    async def post(self, session_id: str, kind: str, action: str) -> None:
        claims = self.claims()
        validate(self.json_body(allow_empty=True), "NoFields")
        sessions = self.services.sessions
        if action == "start":
            stream = await sessions.start_stream(claims, session_id, kind)
        else:
            stream = await sessions.stop_stream(claims, session_id, kind)
        self.write_json({"stream": stream})


class EndSessionHandler(ApiHandler):
    async def post(self, session_id: str) -> None:
        claims = self.claims()
        validate(self.json_body(allow_empty=True), "NoFields")  # `{"admin": true}` is refused
        self.write_json(await self.services.sessions.end_session(claims, session_id))


class SessionListHandler(ApiHandler):
    async def get(self) -> None:
        self.write_json({"sessions": await self.services.sessions.live_sessions()})


routes = [
    (rf"{PREFIX}/session/start", StartSessionHandler),
    (rf"{PREFIX}/session/{ID}/status", SessionStatusHandler),
    (rf"{PREFIX}/session/{ID}/join", JoinHandler),
    (rf"{PREFIX}/session/{ID}/preferences", PreferencesHandler),
    (rf"{PREFIX}/session/{ID}/streams/{KIND}/(start|stop)", StreamControlHandler),
    (rf"{PREFIX}/session/{ID}/end", EndSessionHandler),
    (rf"{PREFIX}/sessions", SessionListHandler),
]


def _op(summary: str, ok: dict, *errors: int, body: dict | None = None, auth: bool = False) -> dict:
    op: dict = {"summary": summary, "responses": {**ok, **error_responses(*errors)}}
    if body is not None:
        op["requestBody"] = json_body(body)
    if auth:
        op["security"] = [{"bearer": []}]
    return op


_SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
_KIND = {
    "name": "kind",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": ["screen", "camera"]},
}
_ACTION = {
    "name": "action",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": ["start", "stop"]},
}
_START_BODY = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 200},
        "streams": {"type": "array", "items": {"type": "string", "enum": ["screen", "camera"]}},
        "pricing": {"$ref": "#/components/schemas/Pricing"},
        "quality": {
            "type": "object",
            "properties": {
                "screen": {"$ref": "#/components/schemas/Quality"},
                "camera": {"$ref": "#/components/schemas/Quality"},
            },
        },
        "pix": {
            "type": "object",
            "properties": {
                "key": {"type": "string"},
                "merchant_name": {"type": "string", "maxLength": 25},
                "merchant_city": {"type": "string", "maxLength": 15},
            },
        },
    },
    "additionalProperties": False,
}

openapi = {
    f"{PREFIX}/session/start": {
        "post": _op(
            "Start a broadcast session with its streams",
            {"201": json_response("session and broadcaster token")},
            400,
            413,
            503,
            body=_START_BODY,
        )
    },
    f"{PREFIX}/session/{{session_id}}/status": {
        "get": {
            **_op(
                "Session, streams, live viewer count, price list",
                {"200": json_response("status")},
                404,
            ),
            "parameters": [_SESSION_ID],
        }
    },
    f"{PREFIX}/session/{{session_id}}/join": {
        "post": {
            **_op(
                "Join as a viewer (present an earlier viewer token to be the same viewer)",
                {"200": json_response("viewer id, token, preferences, quote")},
                400,
                401,
                404,
                409,
                503,
            ),
            "parameters": [_SESSION_ID],
        }
    },
    f"{PREFIX}/session/{{session_id}}/preferences": {
        "get": {
            **_op(
                "The viewer's saved layout",
                {"200": json_response("preferences")},
                401,
                403,
                404,
                auth=True,
            ),
            "parameters": [_SESSION_ID],
        },
        "put": {
            **_op(
                "Save the viewer's layout and re-quote",
                {"200": json_response("preferences and quote")},
                400,
                401,
                403,
                404,
                409,
                413,
                body={"$ref": "#/components/schemas/Preferences"},
                auth=True,
            ),
            "parameters": [_SESSION_ID],
        },
    },
    f"{PREFIX}/session/{{session_id}}/streams/{{kind}}/{{action}}": {
        "post": {
            **_op(
                "Start or stop one stream while the others go on",
                {"200": json_response("the stream")},
                401,
                403,
                404,
                409,
                auth=True,
            ),
            "parameters": [_SESSION_ID, _KIND, _ACTION],
        }
    },
    f"{PREFIX}/session/{{session_id}}/end": {
        "post": {
            **_op(
                "End the session",
                {"200": json_response("the ended session")},
                401,
                403,
                404,
                auth=True,
            ),
            "parameters": [_SESSION_ID],
        }
    },
    f"{PREFIX}/sessions": {
        "get": _op("Live sessions with their streams", {"200": json_response("sessions")})
    },
}
