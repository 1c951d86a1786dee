"""SessionSync in one process: two instances' services on one store.

Changes made through the other instance are replayed once to this instance's listeners; changes
made here (which the local SessionService already announced) never are. Each test runs three ways:
polled by hand on SQLite and on MongoDB (a standalone mongod has no change streams), and fed by
MongoDB's change stream. A fed sync has caught up when it has applied a marker written after the
changes (change streams deliver in commit order), so "nothing replayed" is checked exactly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from server.lifespan import open_services
from server.services import Services
from server.session_sync import SessionSync
from store.changes import feed_of
from store.protocol import Doc
from tests import mongodb
from tests.api_helpers import make_broadcaster
from tests.conftest import make_settings

MODES = [
    pytest.param(("sqlite", "poll"), id="sqlite-poll"),
    pytest.param(("mongodb", "poll"), id="mongodb-poll", marks=pytest.mark.mongodb_live),
    pytest.param(("mongodb", "feed"), id="mongodb-feed", marks=pytest.mark.mongodb_live),
]


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


class Driver:
    """Runs one `SessionSync` the way a mode says: `poll()` by hand, or following the feed."""

    def __init__(self, services: Services, mode: str) -> None:
        self.services = services
        self.mode = mode
        self.heard = Heard()
        self.sync = SessionSync(services.store, services.settings, [self.heard])

    async def begin(self) -> SessionSync:
        self.services.sessions.add_listener(self.sync)
        if self.mode == "poll":
            await self.sync.poll()  # baseline
            return self.sync
        backend = getattr(self.services.store, "inner", self.services.store)
        self.sync.feed = await feed_of(backend)
        assert self.sync.feed is not None, "the MongoDB wire server is a replica set"
        self.sync.start()
        await asyncio.wait_for(self.sync.following.wait(), 10)
        return self.sync

    async def settle(self) -> None:
        """Everything committed so far has been seen."""
        if self.mode == "poll":
            await self.sync.poll()
            return
        marker = f"marker-{uuid.uuid4().hex}"
        await self.services.store.upsert(
            "viewer_preferences",
            {"id": marker, "session_id": "-", "viewer_id": "-", "updated_at": "-"},
        )
        for _ in range(500):
            last = self.sync.last_change
            if last is not None and last.doc_id == marker:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the change feed did not deliver the marker within 5 s")


@pytest.fixture(params=MODES)
async def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param[1])


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """The backend the `mode` parameter names (overrides conftest's)."""
    return str(request.node.callspec.params["mode"][0])


async def owner_of(services: Services) -> dict[str, Any]:
    """The test broadcaster (one account per store, shared by both instances)."""
    user, _ = await make_broadcaster(services)
    return user


@pytest.fixture
async def pair(tmp_path: Path, store_url: str | None) -> AsyncIterator[tuple[Services, Services]]:
    def url(name: str) -> str:
        if store_url is None:
            return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
        return f"{store_url}&appName={name}"  # so a test can cut one instance's change streams

    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_services(
                make_settings(tmp_path / "a", store_url=url("inst-a"), instance_id="inst-a")
            )
        )
        b = await stack.enter_async_context(
            open_services(
                make_settings(tmp_path / "b", store_url=url("inst-b"), instance_id="inst-b")
            )
        )
        yield a, b


@pytest.fixture
async def driver(pair: tuple[Services, Services], mode: str) -> AsyncIterator[Driver]:
    d = Driver(pair[0], mode)
    yield d
    await d.sync.close()


async def test_remote_changes_replay_once_and_local_ones_never(
    pair: tuple[Services, Services], driver: Driver
) -> None:
    a, b = pair
    heard = driver.heard
    sync = await driver.begin()

    started = await a.sessions.start_session(
        {"title": "t", "streams": ["screen", "camera"]}, owner=await owner_of(a)
    )
    sid = started["session"]["id"]
    broadcaster = a.tokens.verify(started["broadcaster_token"])
    joined = await b.sessions.join(sid, None)
    viewer = b.tokens.verify(joined["viewer_token"])
    await driver.settle()
    # The join through B wrote the viewer's first preferences: news to A (harmless when the viewer
    # has no media here yet, and its layout when it has).
    assert heard.events == [("preferences_changed", "separate")]
    heard.events.clear()

    # Local: A stops the screen. Its SessionService told the sync, so nothing is replayed.
    await a.sessions.stop_stream(broadcaster, sid, "screen")
    await driver.settle()
    assert heard.events == []

    # Remote: through B, the camera stops and the viewer switches to composite.
    await b.sessions.stop_stream(broadcaster, sid, "camera")
    await b.sessions.put_preferences(viewer, sid, {"mode": "composite"})
    await driver.settle()
    assert heard.events == [("stream_stopped", "camera"), ("preferences_changed", "composite")]
    await driver.settle()
    assert len(heard.events) == 2, "a change is replayed once"

    # Remote restart of the camera, then the end of the session, both through B.
    await b.sessions.start_stream(broadcaster, sid, "camera")
    await driver.settle()
    await b.sessions.end_session(broadcaster, sid)
    await driver.settle()
    await driver.settle()
    assert heard.events[2:] == [("stream_started", "camera"), ("session_ended", sid)]
    assert sync.replayed == 5


async def test_sessions_owned_by_another_instance_are_left_alone(
    pair: tuple[Services, Services], driver: Driver
) -> None:
    _a, b = pair
    heard = driver.heard
    await driver.begin()
    started = await b.sessions.start_session(
        {"title": "b's", "streams": ["screen"]}, owner=await owner_of(b)
    )
    claims = b.tokens.verify(started["broadcaster_token"])
    await driver.settle()
    await b.sessions.stop_stream(claims, started["session"]["id"], "screen")
    await b.sessions.end_session(claims, started["session"]["id"])
    await driver.settle()
    assert heard.events == []


async def test_a_burst_larger_than_a_page_does_not_stall_the_cursor(
    pair: tuple[Services, Services], driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More preference writes inside the overlap window than one page holds: later changes still
    arrive (the cursor pages on instead of re-reading the same window)."""
    monkeypatch.setattr("server.session_sync._MAX_DOCS", 5)
    a, b = pair
    heard = driver.heard
    await driver.begin()
    started = await a.sessions.start_session(
        {"title": "t", "streams": ["screen", "camera"]}, owner=await owner_of(a)
    )
    sid = started["session"]["id"]
    for _ in range(12):
        await b.sessions.join(sid, None)
    await driver.settle()
    assert len(heard.events) == 12
    late = await b.sessions.join(sid, None)
    await b.sessions.put_preferences(
        b.tokens.verify(late["viewer_token"]), sid, {"mode": "composite"}
    )
    await driver.settle()
    assert heard.events[-1] == ("preferences_changed", "composite")


async def test_local_changes_are_not_replayed_even_when_heard_before_announced(
    pair: tuple[Services, Services], driver: Driver
) -> None:
    """The store's answer and the feed race: the feed (or a poll) may see a local write before the
    local SessionService has told the sync about it. Here it never tells it at all: the write's
    `replay_on: null` alone keeps it from being replayed."""
    a, b = pair
    heard = driver.heard
    await driver.begin()
    a.sessions._listeners.remove(driver.sync)  # the local announcement never comes
    started = await a.sessions.start_session(
        {"title": "t", "streams": ["screen", "camera"]}, owner=await owner_of(a)
    )
    sid = started["session"]["id"]
    broadcaster = a.tokens.verify(started["broadcaster_token"])
    await driver.settle()
    await a.sessions.stop_stream(broadcaster, sid, "screen")
    await a.sessions.start_stream(broadcaster, sid, "screen")
    await a.sessions.stop_stream(broadcaster, sid, "camera")
    await driver.settle()
    await a.sessions.end_session(broadcaster, sid)
    await driver.settle()
    assert heard.events == []
    # The same kinds of change made through B are replayed.
    again = await a.sessions.start_session(
        {"title": "t2", "streams": ["camera"]}, owner=await owner_of(a)
    )
    sid2 = again["session"]["id"]
    claims = a.tokens.verify(again["broadcaster_token"])
    await driver.settle()
    await b.sessions.stop_stream(claims, sid2, "camera")
    await driver.settle()
    await b.sessions.end_session(claims, sid2)
    await driver.settle()
    assert heard.events == [("stream_stopped", "camera"), ("session_ended", sid2)]


@pytest.mark.mongodb_live
@pytest.mark.parametrize("mode", [("mongodb", "feed")], ids=["mongodb-feed"], indirect=True)
async def test_the_feed_resumes_after_an_interruption_without_losing_a_change(
    pair: tuple[Services, Services], driver: Driver, mongodb_server: mongodb.WireServer
) -> None:
    """A's change stream is cut (the server drops it and refuses to reopen it) while B makes
    changes to A's session; once the server lets it back, the sync resumes from its last change
    and replays every one of them, once, in order."""
    a, b = pair
    heard = driver.heard
    driver.sync.retry_s = 0.1
    sync = await driver.begin()
    started = await a.sessions.start_session(
        {"title": "t", "streams": ["screen", "camera"]}, owner=await owner_of(a)
    )
    sid = started["session"]["id"]
    claims = a.tokens.verify(started["broadcaster_token"])
    viewer = b.tokens.verify((await b.sessions.join(sid, None))["viewer_token"])
    await driver.settle()
    heard.events.clear()
    async with mongodb.feeds_cut(mongodb_server, "inst-a"):
        await asyncio.wait_for(_interrupted(sync), 10)
        await b.sessions.stop_stream(claims, sid, "camera")
        await b.sessions.put_preferences(viewer, sid, {"mode": "composite"})
        await b.sessions.stop_stream(claims, sid, "screen")
        await asyncio.sleep(0.5)  # the sync retries meanwhile, and is refused
        assert heard.events == [] and not sync.following.is_set()
    await driver.settle()
    assert heard.events == [
        ("stream_stopped", "camera"),
        ("preferences_changed", "composite"),
        ("stream_stopped", "screen"),
    ]
    assert sync.interruptions >= 1


async def _interrupted(sync: SessionSync) -> None:
    while sync.following.is_set():
        await asyncio.sleep(0.02)
