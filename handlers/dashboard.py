"""The broadcaster's dashboard API: its sessions with earnings (JSON and CSV), and each session's
replay (the recordings in order, and the composite replay rendered on request with its progress).
Every route needs the owner's log-in cookie or API token."""

from __future__ import annotations

from typing import Any

from handlers.base import ApiHandler
from handlers.openapi import error_responses, operation, path_param
from server.errors import Forbidden
from server.schemas import validate
from store.protocol import Doc

ACCOUNT = "/api/v1/account"
LIVESTREAM = "/api/v1/livestream"
ID = r"([^/]+)"


class _OwnerHandler(ApiHandler):
    async def owned(self, session_id: str) -> tuple[Doc, Doc]:
        user = await self.account()
        session = await self.services.sessions.get_session(session_id)
        if session.get("owner_id") != user["id"]:
            raise Forbidden("this session belongs to another broadcaster", code="not_owner")
        return user, session


class SessionsHandler(ApiHandler):
    async def get(self) -> None:
        user = await self.account()
        listed = await self.services.dashboard.sessions_of(user)
        for item in listed["sessions"]:
            item["replay"] = await self.services.replays.state(item["id"])
        self.write_json(listed)


class EarningsCsvHandler(ApiHandler):
    async def get(self) -> None:
        user = await self.account()
        text = await self.services.dashboard.earnings_csv(user)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="earnings.csv"')
        self.finish(text.encode())


class ReplayHandler(_OwnerHandler):
    async def get(self, session_id: str) -> None:
        """The recordings in order (with their download/play URLs) and the composite's state."""
        _, session = await self.owned(session_id)
        claims = await self.session_claims(session_id)
        recordings = await self.services.media.library.list(claims, session_id)
        self.write_json(await _replay(self, session, recordings))

    async def post(self, session_id: str) -> None:
        """Start rendering the composite replay (202); idempotent while it renders or is done."""
        _, session = await self.owned(session_id)
        validate(self.json_body(allow_empty=True), "NoFields")
        await self.services.replays.start(session)
        claims = await self.session_claims(session_id)
        recordings = await self.services.media.library.list(claims, session_id)
        self.write_json(await _replay(self, session, recordings), 202)


async def _replay(handler: ApiHandler, session: Doc, recordings: list[Any]) -> dict[str, Any]:
    sid = session["id"]
    base = f"{LIVESTREAM}/session/{sid}"
    composite = await handler.services.replays.state(sid)
    if composite["status"] == "done":
        composite["url"] = f"{base}/replay/composite"
    return {
        "session_id": sid,
        "recordings": [{**r, "url": f"{base}/recordings/{r['id']}"} for r in recordings],
        "composite": composite,
    }


routes = [
    (rf"{ACCOUNT}/sessions", SessionsHandler),
    (f"{ACCOUNT}/earnings.csv", EarningsCsvHandler),  # "." matches itself too
    (rf"{ACCOUNT}/sessions/{ID}/replay", ReplayHandler),
]

_SID = path_param("session_id")
openapi = {
    f"{ACCOUNT}/sessions": {
        "get": operation(
            "The broadcaster's sessions, live and past, newest first, with paid earnings (BRL)",
            (200, "sessions and the total", "DashboardSessions"),
            auth=True,
        )
    },
    f"{ACCOUNT}/earnings.csv": {
        "get": {
            "summary": "Earnings per session as CSV (paid PIX orders; centavos and BRL), "
            "then a total row",
            "responses": {
                "200": {
                    "description": "CSV",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                **error_responses(401),
            },
            "security": [{"bearer": []}],
        }
    },
    f"{ACCOUNT}/sessions/{{session_id}}/replay": {
        "get": operation(
            "The session's replay: recordings in order, and the composite replay's state",
            (200, "recordings and composite", "Replay"),
            403,
            404,
            auth=True,
            params=[_SID],
        ),
        "post": operation(
            "Render the composite replay of an ended session in the background",
            (202, "recordings and the composite's state (poll GET for progress)", "Replay"),
            403,
            404,
            409,
            body="NoFields",
            body_required=False,
            auth=True,
            params=[_SID],
        ),
    },
}
