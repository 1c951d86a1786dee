"""Multi-stream session API: start, status, join, preferences, per-stream control, end, list."""

from __future__ import annotations

from handlers.base import ApiHandler
from handlers.forward import forward_http, is_forwarded
from handlers.openapi import error_responses, operation, path_param
from server import schemas
from server.accounts import with_saved_receiver
from server.schemas import validate
from server.sessions import MAX_PAGE

PREFIX = "/api/v1/livestream"
ID = r"([^/]+)"
KIND = r"(screen|camera|[^/]+)"


class StartSessionHandler(ApiHandler):
    async def post(self) -> None:
        await self.rate_limit("session_start")
        owner = await self.account()
        body = validate(with_saved_receiver(self.json_body(), owner), "StartSession")
        self.write_json(await self.services.sessions.start_session(body, owner=owner), 201)


class SessionStatusHandler(ApiHandler):
    async def get(self, session_id: str) -> None:
        self.write_json(await self.services.sessions.status(session_id))


class JoinHandler(ApiHandler):
    async def post(self, session_id: str) -> None:
        await self.rate_limit("join")
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


class DefaultLayoutHandler(ApiHandler):
    async def put(self, session_id: str) -> None:
        claims = self.claims()
        body = validate(self.json_body(), "DefaultLayout")
        self.write_json(await self.services.sessions.set_default_layout(claims, session_id, body))


class StreamControlHandler(ApiHandler):
    async def post(self, session_id: str, kind: str, action: str) -> None:
        claims = await self.session_claims(session_id)
        validate(self.json_body(allow_empty=True), "NoFields")
        sessions = self.services.sessions
        if action == "start":
            stream = await sessions.start_stream(claims, session_id, kind)
        else:
            stream = await sessions.stop_stream(claims, session_id, kind)
        self.write_json({"stream": stream})


class EndSessionHandler(ApiHandler):
    async def post(self, session_id: str) -> None:
        claims = await self.session_claims(session_id)
        validate(self.json_body(allow_empty=True), "NoFields")  # `{"admin": true}` is refused
        self.write_json(await self.services.sessions.end_session(claims, session_id))


class ThumbnailHandler(ApiHandler):
    """A live session's stream-list picture: a small JPEG of its latest screen frame, rendered at
    most every few seconds and only when asked (204 until a frame has been decoded)."""

    async def get(self, session_id: str) -> None:
        session = await self.services.sessions.get_session(session_id)
        jpeg = None
        if session["status"] == "live":
            # The picture is decoded where the media is: ask the owner (without taking the
            # session over, as a signaling request would when its lease has run out).
            lease = await self.services.ownership.current(session["id"])
            mine = lease is None or lease["holder"] == self.services.settings.instance_id
            if not mine and not is_forwarded(self):
                await forward_http(self, str(lease["address"]), b"")  # type: ignore[index]
                return
            jpeg = await self.services.thumbnails.jpeg(session["id"])
        if jpeg is None:
            self.set_status(204)
            self.finish()
            return
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Cache-Control", "no-cache")
        self.finish(jpeg)


class SessionListHandler(ApiHandler):
    async def get(self) -> None:
        page = await self.services.sessions.live_sessions(
            self.get_argument("limit", None), self.get_argument("cursor", None)
        )
        self.write_json(page)


routes = [
    (rf"{PREFIX}/session/start", StartSessionHandler),
    (rf"{PREFIX}/session/{ID}/status", SessionStatusHandler),
    (rf"{PREFIX}/session/{ID}/join", JoinHandler),
    (rf"{PREFIX}/session/{ID}/preferences", PreferencesHandler),
    (rf"{PREFIX}/session/{ID}/layout", DefaultLayoutHandler),
    (rf"{PREFIX}/session/{ID}/streams/{KIND}/(start|stop)", StreamControlHandler),
    (rf"{PREFIX}/session/{ID}/end", EndSessionHandler),
    (rf"{PREFIX}/session/{ID}/thumbnail.jpg", ThumbnailHandler),
    (rf"{PREFIX}/sessions", SessionListHandler),
]


_SESSION_ID = path_param("session_id")
_KIND = {**path_param("kind"), "schema": schemas.KIND}
_ACTION = {**path_param("action"), "schema": {"type": "string", "enum": ["start", "stop"]}}

openapi = {
    f"{PREFIX}/session/start": {
        "post": operation(
            "Start a broadcast session with its streams (a broadcaster: API token or log-in)",
            (201, "the session and the broadcaster token", "SessionStarted"),
            401,
            403,
            503,
            body="StartSession",
            auth=True,
            limited=True,
        )
    },
    f"{PREFIX}/session/{{session_id}}/status": {
        "get": operation(
            "Session, streams, live viewer count, price list",
            (200, "status", "SessionStatus"),
            404,
            params=[_SESSION_ID],
        )
    },
    f"{PREFIX}/session/{{session_id}}/join": {
        "post": operation(
            "Join as a viewer (present an earlier viewer token to be the same viewer)",
            (200, "viewer id, token, preferences, quote and any payment owed", "Joined"),
            401,
            404,
            409,
            503,
            body="NoFields",
            body_required=False,
            auth=None,
            params=[_SESSION_ID],
            limited=True,
        )
    },
    f"{PREFIX}/session/{{session_id}}/preferences": {
        "get": operation(
            "The viewer's saved layout",
            (200, "preferences and quote", "PreferencesSaved"),
            403,
            404,
            auth=True,
            params=[_SESSION_ID],
        ),
        "put": operation(
            "Save the viewer's layout and re-quote",
            (200, "preferences, quote and any payment owed", "PreferencesSaved"),
            403,
            404,
            409,
            body="Preferences",
            auth=True,
            params=[_SESSION_ID],
        ),
    },
    f"{PREFIX}/session/{{session_id}}/layout": {
        "put": operation(
            "The broadcaster's picture-in-picture: the default layout of viewers who have not "
            "chosen their own; their composites move at once",
            (200, "the session's default layout", "DefaultLayoutSaved"),
            403,
            404,
            409,
            body="DefaultLayout",
            auth=True,
            params=[_SESSION_ID],
        )
    },
    f"{PREFIX}/session/{{session_id}}/streams/{{kind}}/{{action}}": {
        "post": operation(
            "Start or stop one stream while the others go on",
            (200, "the stream", "StreamChanged"),
            403,
            404,
            409,
            503,
            body="NoFields",
            body_required=False,
            auth=True,
            params=[_SESSION_ID, _KIND, _ACTION],
        )
    },
    f"{PREFIX}/session/{{session_id}}/end": {
        "post": operation(
            "End the session",
            (200, "the ended session", "SessionEnded"),
            403,
            404,
            body="NoFields",
            body_required=False,
            auth=True,
            params=[_SESSION_ID],
        )
    },
    f"{PREFIX}/session/{{session_id}}/thumbnail.jpg": {
        "get": {
            "summary": "A live session's thumbnail: a 320x180 JPEG of its latest screen frame "
            "(the camera's without a screen), re-rendered at most every 5 s, only when asked",
            "parameters": [_SESSION_ID],
            "responses": {
                "200": {
                    "description": "the JPEG",
                    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                },
                "204": {"description": "no frame yet (or the session has ended)"},
                **error_responses(404),
            },
        }
    },
    f"{PREFIX}/sessions": {
        "get": operation(
            "Live sessions with their streams, newest first, a page at a time",
            (200, "`{sessions, next}`: pass `next` as `cursor` for the next page", "SessionList"),
            400,
            params=[
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "opaque: a `next` value this server returned",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,512}$"},
                },
            ],
        )
    },
}
