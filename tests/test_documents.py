"""The documents the services write have exactly the fields their TypedDicts declare (issue 12.3).

The TypedDicts in `server/documents.py` type the documents where they are made; this test keeps them
honest against what actually lands in the store, so a field added in one place shows up here.
"""

from __future__ import annotations

from typing import Any, get_type_hints

from server.documents import (
    ChatMessageDoc,
    OrderDoc,
    PreferencesDoc,
    SessionDoc,
    StoredPreferences,
    StreamDoc,
)
from tests.api_helpers import PREFIX, START_BODY


def fields(typed: Any) -> set[str]:
    return set(get_type_hints(typed))


async def test_stored_documents_have_the_declared_fields(server, api) -> None:
    r = await api.post(f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token)
    assert r.status == 201, r.body
    sid, broadcaster = r.json["session"]["id"], r.json["broadcaster_token"]
    store = server.services.store

    session = await store.get("broadcast_sessions", sid)
    assert session is not None and set(session) == fields(SessionDoc)
    streams = await store.find("broadcast_streams", {"session_id": sid}, limit=10)
    assert len(streams) == 2
    for stream in streams:
        assert set(stream) == fields(StreamDoc)
        assert set(stream["quality"]) == fields(get_type_hints(StreamDoc)["quality"])

    r = await api.post(f"{PREFIX}/session/{sid}/join")
    assert r.status in (200, 201), r.body
    viewer = r.json["viewer_id"]
    prefs = await store.get("viewer_preferences", f"{sid}:{viewer}")
    assert prefs is not None and set(prefs) == fields(StoredPreferences)
    assert fields(StoredPreferences) == fields(PreferencesDoc) | {"replay_on"}
    assert set(prefs["pip"]) == {"corner", "size_pct"}

    r = await api.put(
        f"{PREFIX}/session/{sid}/preferences",
        {"enabled_streams": ["screen", "camera"], "pip": {"corner": "top-left"}},
        token=r.json["viewer_token"],
    )
    assert r.status == 200, r.body
    prefs = await store.get("viewer_preferences", f"{sid}:{viewer}")
    assert prefs is not None and set(prefs) == fields(StoredPreferences)
    orders = await store.find("orders", {"session_id": sid}, limit=10)
    assert orders, "a priced session's viewer gets an order"
    for order in orders:
        assert set(order) == fields(OrderDoc)

    claims = server.services.tokens.verify(broadcaster)
    message = await server.services.chat.post(claims, sid, "hello", None)
    stored = await store.get("chat_messages", message["id"])
    assert stored is not None and set(stored) == fields(ChatMessageDoc)
