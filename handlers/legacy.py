"""The pre-multistream single-stream API, served from the same sessions (one camera stream each).

These routes come last in the app so `/api/v1/livestream/{id}` never shadows a newer route.
"""

from __future__ import annotations

from handlers.base import ApiHandler
from handlers.openapi import operation, path_param
from server import legacy
from server.accounts import with_saved_receiver
from server.schemas import validate

PREFIX = "/api/v1/livestream"


class LegacyStartHandler(ApiHandler):
    async def post(self) -> None:
        await self.rate_limit("session_start")
        owner = await self.account()
        body = validate(with_saved_receiver(self.json_body(), owner), "LegacyStart")
        self.write_json(await legacy.start(self.services.sessions, body, owner), 201)


class LegacyGetHandler(ApiHandler):
    async def get(self, session_id: str) -> None:
        self.write_json(await legacy.get(self.services.sessions, session_id))


class LegacyStopHandler(ApiHandler):
    async def post(self, session_id: str) -> None:
        claims = await self.session_claims(session_id)
        validate(self.json_body(allow_empty=True), "NoFields")
        self.write_json(await legacy.stop(self.services.sessions, claims, session_id))


routes = [
    (rf"{PREFIX}/start", LegacyStartHandler),
    (rf"{PREFIX}/([^/]+)/stop", LegacyStopHandler),
    (rf"{PREFIX}/([^/]+)", LegacyGetHandler),
]


_ID = path_param("livestream_id")
openapi = {
    f"{PREFIX}/start": {
        "post": {
            **operation(
                "Legacy: start a single-stream (camera) livestream (API token)",
                (201, "livestream and token", "LegacyStarted"),
                401,
                403,
                503,
                body="LegacyStart",
                auth=True,
                limited=True,
            ),
            "deprecated": True,
        }
    },
    f"{PREFIX}/{{livestream_id}}": {
        "get": {
            **operation(
                "Legacy: livestream status",
                (200, "livestream", "LegacyLivestreamAnswer"),
                404,
                params=[_ID],
            ),
            "deprecated": True,
        }
    },
    f"{PREFIX}/{{livestream_id}}/stop": {
        "post": {
            **operation(
                "Legacy: stop the livestream",
                (200, "ended livestream", "LegacyLivestreamAnswer"),
                403,
                404,
                body="NoFields",
                body_required=False,
                auth=True,
                params=[_ID],
            ),
            "deprecated": True,
        }
    },
}
