"""Recordings of a session: the list, and a download with HTTP range requests (seekable players).

The download is Tornado's `StaticFileHandler` (ranges, ETag, If-Modified-Since) behind the same
token check as the API; a `<video src>` cannot send headers, so `?access_token=` works too.
"""

from __future__ import annotations

import tornado.web

from handlers.base import ApiHandler, bearer_token, session_claims_of
from handlers.errors import JsonErrors
from handlers.openapi import error_responses, json_response
from server.errors import DomainError
from server.media.library import RecordingLibrary
from server.schemas import ref
from server.services import Services

PREFIX = "/api/v1/livestream"
ID = r"([^/]+)"


def _library(services: Services) -> RecordingLibrary:
    return services.media.library


class RecordingListHandler(ApiHandler):
    async def get(self, session_id: str) -> None:
        claims = await self.session_claims(session_id)
        recordings = await _library(self.services).list(claims, session_id)
        self.write_json({"recordings": recordings})


class RecordingFileHandler(JsonErrors, tornado.web.StaticFileHandler):
    """Serves one recording file after the token check; errors are the API's JSON."""

    def initialize(self, services: Services) -> None:  # type: ignore[override]
        self.services = services
        super().initialize(path=str(services.settings.recordings_dir))

    async def get(self, session_id: str, recording_id: str, include_body: bool = True) -> None:  # type: ignore[override]
        try:
            token = bearer_token(self.request.headers.get("Authorization")) or self.get_argument(
                "access_token", None
            )
            # A session or viewer token, or the owner's API token or log-in (the dashboard).
            claims = await session_claims_of(self, self.services, session_id, token)
            _, relpath = await _library(self.services).file(claims, session_id, recording_id)
        except DomainError as err:
            self.fail(err)
            return
        self.set_header("Content-Disposition", f'attachment; filename="{recording_id}.mkv"')
        await super().get(relpath, include_body)

    async def head(self, session_id: str, recording_id: str) -> None:  # type: ignore[override]
        await self.get(session_id, recording_id, include_body=False)

    def get_content_type(self) -> str:
        return "video/x-matroska"


class CompositeReplayFileHandler(JsonErrors, tornado.web.StaticFileHandler):
    """The composite replay (MP4) under the live rule: the broadcaster, or a viewer entitled to
    every stream kind the composite shows (enabled and, on a priced session, paid)."""

    def initialize(self, services: Services) -> None:  # type: ignore[override]
        self.services = services
        super().initialize(path=str(services.settings.recordings_dir))

    async def get(self, session_id: str, include_body: bool = True) -> None:  # type: ignore[override]
        try:
            token = bearer_token(self.request.headers.get("Authorization")) or self.get_argument(
                "access_token", None
            )
            claims = await session_claims_of(self, self.services, session_id, token)
            session = await self.services.sessions.get_session(session_id)
            doc, relpath = await self.services.replays.file(session_id)
            await self.services.sessions.entitlement.require(claims, session, doc["kinds"])
        except DomainError as err:
            self.fail(err)
            return
        self.set_header("Content-Disposition", f'attachment; filename="{session_id}.mp4"')
        await super().get(relpath, include_body)

    async def head(self, session_id: str) -> None:  # type: ignore[override]
        await self.get(session_id, include_body=False)

    def get_content_type(self) -> str:
        return "video/mp4"


_SESSION_ID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
_REC_ID = {"name": "recording_id", "in": "path", "required": True, "schema": {"type": "string"}}

openapi = {
    f"{PREFIX}/session/{{session_id}}/replay/composite": {
        "get": {
            "summary": "Download the composite replay (MP4, H.264 + Opus) rendered after the "
            "session: the broadcaster, or a viewer entitled to every stream it shows (402/403 "
            "otherwise); Range requests supported",
            "responses": {
                "200": {"description": "the file"},
                "206": {"description": "a range"},
                **error_responses(401, 402, 403, 404),
            },
            "security": [{"bearer": []}],
            "parameters": [_SESSION_ID],
        }
    },
    f"{PREFIX}/session/{{session_id}}/recordings": {
        "get": {
            "summary": "Recordings of this session (broadcaster: all; viewer: enabled and, on a "
            "priced session, paid streams -- 402 otherwise)",
            "responses": {
                "200": json_response("recordings", ref("RecordingList")),
                **error_responses(401, 402, 403, 404, 503),
            },
            "security": [{"bearer": []}],
            "parameters": [_SESSION_ID],
        }
    },
    f"{PREFIX}/session/{{session_id}}/recordings/{{recording_id}}": {
        "get": {
            "summary": "Download one recording (Matroska); Range requests supported",
            "responses": {
                "200": {"description": "the file"},
                "206": {"description": "a range"},
                **error_responses(401, 402, 403, 404),
            },
            "security": [{"bearer": []}],
            "parameters": [_SESSION_ID, _REC_ID],
        }
    },
}

routes = [
    (rf"{PREFIX}/session/{ID}/replay/composite", CompositeReplayFileHandler),
    (rf"{PREFIX}/session/{ID}/recordings", RecordingListHandler),
    (rf"{PREFIX}/session/{ID}/recordings/{ID}", RecordingFileHandler),
]
