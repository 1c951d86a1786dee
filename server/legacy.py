"""The pre-multistream single-stream API as an adapter over the session service.

Old clients start, read and stop "a livestream"; underneath it is an ordinary session with one camera
stream (`legacy: true`), so the multi-stream API, the media plane and the stream list see it too.
"""

from __future__ import annotations

from typing import Any

from server.auth import Claims
from server.sessions import SessionService, public_session
from server.validation import only_fields
from store.protocol import Doc


async def start(sessions: SessionService, body: dict[str, Any], owner: Doc) -> dict[str, Any]:
    """One camera stream, priced by a single optional amount, for the account `owner`."""
    only_fields(body, ("title", "price_centavos", "pix", "quality"))
    started = await sessions.start_session(
        {
            "title": body.get("title", "Untitled livestream"),
            "streams": ["camera"],
            "pricing": {
                "base": body.get("price_centavos", 0),
                "addons": {},
                "bundle_discount_pct": 0,
            },
            **({"pix": body["pix"]} if "pix" in body else {}),
            **({"quality": {"camera": body["quality"]}} if "quality" in body else {}),
        },
        owner=owner,
        legacy=True,
    )
    return {"livestream": view(started["session"]), "token": started["broadcaster_token"]}


async def get(sessions: SessionService, session_id: str) -> dict[str, Any]:
    session = await sessions.get_session(session_id)
    streams = await sessions.streams_of(session_id)
    out = view(public_session(session, streams))
    out["viewer_count"] = sessions.presence.count(session_id)
    return {"livestream": out}


async def stop(sessions: SessionService, claims: Claims, session_id: str) -> dict[str, Any]:
    ended = await sessions.end_session(claims, session_id)
    return {"livestream": view(ended["session"])}


def view(session: dict[str, Any]) -> dict[str, Any]:
    """The single-stream shape old clients read: the camera stream's id flattened in."""
    camera = next((s for s in session.get("streams", []) if s["kind"] == "camera"), None)
    return {
        "id": session["id"],
        "title": session["title"],
        "status": session["status"],
        "created_at": session["created_at"],
        "ended_at": session.get("ended_at"),
        "stream_id": camera["id"] if camera else None,
        "stream_status": camera["status"] if camera else None,
        "price_centavos": session["pricing"]["base"],
    }
