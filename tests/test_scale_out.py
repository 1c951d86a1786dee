"""Two real server processes on loopback sharing one store (an SQLite file in WAL mode, or a MongoDB
database, where SessionSync follows change streams): one API, media on the instance that ingests
it, and control through either instance reaching that media."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api_helpers import assert_error, web_broadcaster
from tests.conftest import Client
from tests.media_helpers import PREFIX, PatternTrack, join, publish, start_session, view
from tests.ops_helpers import ServerProcess, free_port, start_server

SECRET = "scale-out-shared-token-secret-" + "s" * 24

pytestmark = pytest.mark.store_backends


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def _metrics(api: Client) -> str:
    return (await api.get("/metrics")).body.decode()


async def _wait_metric(api: Client, name: str, value: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (got := _metric(await _metrics(api), name)) != value:
        assert time.monotonic() < deadline, f"{name}={got}, expected {value}"
        await asyncio.sleep(0.1)


async def _wait_peers(api: Client, role: str, value: float, timeout: float = 10) -> None:
    wanted = f'multistream_peer_connections{{role="{role}"}} {value}'
    deadline = time.monotonic() + timeout
    while wanted not in (text := await _metrics(api)):
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.1)


@pytest.fixture
def instances(
    tmp_path: Path, store_url: str | None
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    shared = store_url or f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            started.append(
                start_server(
                    tmp_path / name,
                    tmp_path / f"{name}.log",
                    {
                        "MULTISTREAM_STORE": shared,
                        "MULTISTREAM_TOKEN_SECRET": SECRET,
                        "MULTISTREAM_INSTANCE_ID": f"inst-{name}",
                        "MULTISTREAM_PUBLIC_URL": f"http://127.0.0.1:{port}",
                        "MULTISTREAM_DRAIN_DEADLINE": "0",
                    },
                    port=port,
                )
            )
        yield started[0], started[1]
    finally:
        for server in started:
            assert server.stop() == 0


@pytest.mark.timeout(120)
async def test_session_from_one_instance_is_served_and_controlled_by_the_other(
    instances: tuple[ServerProcess, ServerProcess],
) -> None:
    a_proc, b_proc = instances
    a, b = Client(a_proc.base_url), Client(b_proc.base_url)
    await web_broadcaster(a)
    started = await start_session(a)
    sid = started["session"]["id"]
    token = started["broadcaster_token"]
    streams = {s["kind"]: s for s in started["session"]["streams"]}
    assert started["session"]["instance_id"] == "inst-a"

    # Visible through B, which points clients at A's signaling.
    status = await b.get(f"{PREFIX}/session/{sid}/status")
    assert status.status == 200
    assert status.json["signaling_url"] == a_proc.base_url
    listed = (await b.get(f"{PREFIX}/sessions")).json["sessions"]
    assert sid in {s["id"] for s in listed}

    # Joinable through B: the viewer token B signs is good on A (shared secret).
    joined = await join(b, sid, {"enabled_streams": ["screen", "camera"], "mode": "separate"})
    assert joined["signaling_url"] == a_proc.base_url
    signal = Client(joined["signaling_url"])
    screen_pub = await publish(
        signal, token, streams["screen"]["id"], PatternTrack("screen", 320, 180, 10)
    )
    camera_pub = await publish(
        signal, token, streams["camera"]["id"], PatternTrack("camera", 160, 120, 15)
    )
    viewer, resp = await view(
        signal, joined["viewer_token"], f"{PREFIX}/stream/{streams['camera']['id']}/signal/offer"
    )
    try:
        assert resp.status == 200, resp.body
        await viewer.wait_frames(5)
        # Media stays on the ingesting instance.
        await _wait_metric(a, "multistream_sessions_live", 1.0)
        a_text, b_text = await _metrics(a), await _metrics(b)
        assert 'multistream_peer_connections{role="publisher"} 2.0' in a_text
        assert 'multistream_peer_connections{role="subscriber"} 1.0' in a_text
        assert _metric(b_text, "multistream_sessions_live") == 0.0
        assert 'multistream_peer_connections{role="publisher"} 0.0' in b_text

        # A viewer's preferences put through B reach its media on A: camera disabled → closed.
        put = await b.put(
            f"{PREFIX}/session/{sid}/preferences",
            {"enabled_streams": ["screen"], "pip": {"corner": "top-left", "size_pct": 25}},
            token=joined["viewer_token"],
        )
        assert put.status == 200, put.body
        got = await a.get(f"{PREFIX}/session/{sid}/preferences", token=joined["viewer_token"])
        assert got.json["preferences"]["enabled_streams"] == ["screen"]
        assert got.json["preferences"]["pip"] == {"corner": "top-left", "size_pct": 25}
        await _wait_peers(a, "subscriber", 0.0)

        # The broadcaster stops the camera through B: its publisher connection on A closes.
        stop = await b.post(f"{PREFIX}/session/{sid}/streams/camera/stop", token=token)
        assert stop.status == 200, stop.body
        await _wait_peers(a, "publisher", 1.0)
        assert 'multistream_streams{kind="camera",status="stopped"} 1.0' in await _metrics(a)

        # Ending through B ends the media on A: publisher closed, recorder finalised.
        end = await b.post(f"{PREFIX}/session/{sid}/end", token=token)
        assert end.status == 200, end.body
        await _wait_metric(a, "multistream_recorders_open", 0.0)
        # The recorder can finish before the publisher's connection has closed: wait for both.
        await _wait_peers(a, "publisher", 0.0)
        assert _metric(await _metrics(a), "multistream_sessions_live") == 0.0
        # And A refuses what an ended session no longer allows.
        assert_error(await a.post(f"{PREFIX}/session/{sid}/join"), 409)
    finally:
        await viewer.close()
        await screen_pub.pc.close()
        await camera_pub.pc.close()
    assert "made elsewhere, replayed instance=inst-a" in a_proc.log_text()
