"""Sessions and preferences survive a restart of the server (a new process on the same data)."""

from __future__ import annotations

import pytest

from multistream.app import make_app
from server.lifespan import open_services
from tests.api_helpers import PREFIX, START_BODY, make_broadcaster

# The whole module runs on SQLite and on MongoDB (the wire server started by conftest).
pytestmark = pytest.mark.store_backends


async def test_state_survives_restart(settings) -> None:
    async with open_services(settings) as services:
        sessions = services.sessions
        owner, _ = await make_broadcaster(services)
        started = await sessions.start_session(dict(START_BODY), owner=owner)
        sid = started["session"]["id"]
        joined = await sessions.join(sid, None)
        claims = services.tokens.verify(joined["viewer_token"])
        await sessions.put_preferences(
            claims, sid, {"mode": "composite", "pip": {"corner": "auto"}}
        )
        make_app(services.settings, services)
    async with open_services(settings) as services:
        status = await services.sessions.status(sid)
        assert status["session"]["title"] == START_BODY["title"]
        again = await services.sessions.join(sid, joined["viewer_token"])
        assert again["viewer_id"] == joined["viewer_id"]
        assert again["preferences"]["mode"] == "composite"
        assert again["preferences"]["pip"]["corner"] == "auto"
        assert PREFIX  # routes unchanged across restarts
