"""SessionSync in one process: two instances' services on one SQLite file, polled by hand.

Changes made through the other instance are replayed once to this instance's listeners; changes
made here (which the local SessionService already announced) never are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from server.lifespan import open_services
from server.services import Services
from server.session_sync import SessionSync
from store.protocol import Doc
from tests.conftest import make_settings


class Heard:
    """A listener that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def stream_started(self, stream: Doc) -> None:
        self.events.append(("stream_started", stream["kind"]))

    async def stream_stopped(self, stream: Doc) -> None:
        self.events.append(("stream_stopped", stream["kind"]))

    async def session_ended(self, session: Doc) -> None:
        self.events.append(("session_ended", session["id"]))

    async def preferences_changed(self, prefs: Doc) -> None:
        self.events.append(("preferences_changed", prefs["mode"]))


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Services, Services]]:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_services(make_settings(tmp_path / "a", store_url=url, instance_id="inst-a"))
        )
        b = await stack.enter_async_context(
            open_services(make_settings(tmp_path / "b", store_url=url, instance_id="inst-b"))
        )
        yield a, b


async def test_remote_changes_replay_once_and_local_ones_never(
    pair: tuple[Services, Services],
) -> None:
    a, b = pair
    heard = Heard()
    sync = SessionSync(a.store, a.settings, [heard])
    a.sessions.add_listener(sync)
    await sync.poll()  # baseline

    started = await a.sessions.start_session({"title": "t", "streams": ["screen", "camera"]})
    sid = started["session"]["id"]
    broadcaster = a.tokens.verify(started["broadcaster_token"])
    joined = await b.sessions.join(sid, None)
    viewer = b.tokens.verify(joined["viewer_token"])
    await sync.poll()
    # The join through B wrote the viewer's first preferences: news to A (harmless when the viewer
    # has no media here yet, and its layout when it has).
    assert heard.events == [("preferences_changed", "separate")]
    heard.events.clear()

    # Local: A stops the screen. Its SessionService told the sync, so nothing is replayed.
    await a.sessions.stop_stream(broadcaster, sid, "screen")
    await sync.poll()
    assert heard.events == []

    # Remote: through B, the camera stops and the viewer switches to composite.
    await b.sessions.stop_stream(broadcaster, sid, "camera")
    await b.sessions.put_preferences(viewer, sid, {"mode": "composite"})
    await sync.poll()
    assert heard.events == [("stream_stopped", "camera"), ("preferences_changed", "composite")]
    await sync.poll()
    assert len(heard.events) == 2, "a change is replayed once"

    # Remote restart of the camera, then the end of the session, both through B.
    await b.sessions.start_stream(broadcaster, sid, "camera")
    await sync.poll()
    await b.sessions.end_session(broadcaster, sid)
    await sync.poll()
    await sync.poll()
    assert heard.events[2:] == [("stream_started", "camera"), ("session_ended", sid)]
    assert sync.replayed == 5


async def test_sessions_owned_by_another_instance_are_left_alone(
    pair: tuple[Services, Services],
) -> None:
    a, b = pair
    heard = Heard()
    sync = SessionSync(a.store, a.settings, [heard])
    await sync.poll()
    started = await b.sessions.start_session({"title": "b's", "streams": ["screen"]})
    claims = b.tokens.verify(started["broadcaster_token"])
    await sync.poll()
    await b.sessions.stop_stream(claims, started["session"]["id"], "screen")
    await b.sessions.end_session(claims, started["session"]["id"])
    await sync.poll()
    assert heard.events == []


async def test_a_burst_larger_than_a_page_does_not_stall_the_cursor(
    pair: tuple[Services, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More preference writes inside the overlap window than one page holds: later changes still
    arrive (the cursor pages on instead of re-reading the same window)."""
    monkeypatch.setattr("server.session_sync._MAX_DOCS", 5)
    a, b = pair
    heard = Heard()
    sync = SessionSync(a.store, a.settings, [heard])
    await sync.poll()  # baseline
    started = await a.sessions.start_session({"title": "t", "streams": ["screen", "camera"]})
    sid = started["session"]["id"]
    for _ in range(12):
        await b.sessions.join(sid, None)
    await sync.poll()
    assert len(heard.events) == 12
    late = await b.sessions.join(sid, None)
    await b.sessions.put_preferences(
        b.tokens.verify(late["viewer_token"]), sid, {"mode": "composite"}
    )
    await sync.poll()
    assert heard.events[-1] == ("preferences_changed", "composite")
