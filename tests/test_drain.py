"""SIGTERM to a real `multistream serve` mid-session: readiness and new work turn 503 at once, media
keeps flowing until the deadline, then peers, encoders and recorders close, the recording is a
playable file with its document completed, and the process exits 0 — each step timed."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import av
import pytest

from store import open_store
from tests.api_helpers import assert_error, web_broadcaster
from tests.conftest import Client
from tests.media_helpers import (
    PREFIX,
    PatternTrack,
    join,
    publish,
    start_session,
    view,
    view_composite,
)
from tests.ops_helpers import start_server

DEADLINE_S = 3
# Closing media and the HTTP server after the deadline, on a loaded 2-core machine.
MARGIN_S = 10


async def _metric(api: Client, name: str) -> float:
    text = (await api.get("/metrics")).body.decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def _wait_for(api: Client, name: str, value: float, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while await _metric(api, name) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
@pytest.mark.store_backends
async def test_sigterm_drains_a_live_session(tmp_path: Path, store_url: str | None) -> None:
    data = tmp_path / "data"
    env = {
        "MULTISTREAM_DRAIN_DEADLINE": str(DEADLINE_S),
        "MULTISTREAM_LOG_JSON": "1",
        "MULTISTREAM_INSTANCE_ID": "drain-test",
    }
    if store_url is not None:
        env["MULTISTREAM_STORE"] = store_url
    server = start_server(data, tmp_path / "server.log", env)
    api = Client(server.base_url)
    await web_broadcaster(api)
    peers: list = []
    try:
        started = await start_session(api)
        sid = started["session"]["id"]
        token = started["broadcaster_token"]
        streams = {s["kind"]: s for s in started["session"]["streams"]}
        screen = streams["screen"]
        peers.append(await publish(api, token, screen["id"], PatternTrack("screen", 320, 180, 10)))
        peers.append(
            await publish(api, token, streams["camera"]["id"], PatternTrack("camera", 160, 120, 15))
        )
        joined = await join(api, sid, {"enabled_streams": ["screen"], "mode": "separate"})
        viewer, resp = await view(
            api, joined["viewer_token"], f"{PREFIX}/stream/{screen['id']}/signal/offer"
        )
        peers.append(viewer)
        assert resp.status == 200, resp.body
        composite, _ = await view_composite(api, sid, {"corner": "bottom-right", "size_pct": 25})
        peers.append(composite)
        await viewer.wait_frames(10)
        await composite.wait_frames(5)
        await _wait_for(api, "multistream_recorders_open", 2.0)
        metrics_before = (await api.get("/metrics")).body.decode()
        (tmp_path / "metrics-live.txt").write_text(metrics_before)
        for line in (
            'multistream_viewers{mode="separate"} 1.0',
            'multistream_viewers{mode="composite"} 1.0',
            'multistream_peer_connections{role="publisher"} 2.0',
            'multistream_peer_connections{role="subscriber"} 2.0',
            "multistream_composite_layouts 1.0",
            "multistream_sessions_live 1.0",
            'multistream_streams{kind="camera",status="live"} 1.0',
        ):
            assert line in metrics_before, line

        t0 = time.monotonic()
        server.signal(signal.SIGTERM)
        # Readiness turns 503 at once (within one poll of the loop handling the signal).
        while (ready := await api.get("/readyz")).status == 200:
            assert time.monotonic() - t0 < 1.0, "readiness still 200 a second after SIGTERM"
            await asyncio.sleep(0.005)
        t_ready = time.monotonic() - t0
        assert_error(ready, 503, "draining")
        assert_error(
            await api.post(
                f"{PREFIX}/session/start", {"title": "late"}, token=api.broadcaster_token
            ),
            503,
            "draining",
        )
        assert_error(await api.post(f"{PREFIX}/session/{sid}/join"), 503, "draining")
        t_refused = time.monotonic() - t0
        # The live session carries on during the deadline: frames still arrive, status answers.
        await viewer.wait_frames(5, timeout=DEADLINE_S)
        t_frames = time.monotonic() - t0
        assert (await api.get(f"{PREFIX}/session/{sid}/status")).status == 200

        code = await asyncio.to_thread(server.proc.wait, DEADLINE_S + MARGIN_S)
        t_exit = time.monotonic() - t0
    finally:
        for peer in peers:
            await peer.pc.close()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
    assert code == 0
    assert DEADLINE_S - 0.5 <= t_exit <= DEADLINE_S + MARGIN_S

    # The server's own timeline, from its JSON log lines.
    steps = [
        (line["msg"].split("step=")[1].split()[0], float(line["msg"].split("t=")[1].split("s")[0]))
        for line in server.json_lines()
        if line["msg"].startswith("drain step=")
    ]
    names = [name for name, _ in steps]
    required = [
        "draining",
        "deadline",
        "signaling_closed",
        "media_closed",
        "streams_released",
        "leases_released",
        "http_closed",
        "exit",
    ]
    assert [n for n in names if n in required] == required, names
    assert set(names) <= {*required, "chat_closed"}, names
    assert dict(steps)["deadline"] >= DEADLINE_S - 0.05
    timeline = {
        "client": {
            "readyz_503_s": round(t_ready, 3),
            "start_and_join_refused_s": round(t_refused, 3),
            "frames_still_arriving_s": round(t_frames, 3),
            "process_exit_s": round(t_exit, 3),
        },
        "server": dict(steps),
    }
    (tmp_path / "drain-timeline.json").write_text(json.dumps(timeline, indent=2))
    print("drain timeline:", json.dumps(timeline))

    # The recording is finalised: a playable file, and its document completed in the store.
    files = sorted((data / "recordings").rglob("*.mkv"))
    assert len(files) == 2, files
    for path in files:
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames >= 15, path
    store = open_store(store_url or f"sqlite:///{data / 'multistream.sqlite3'}")
    await store.open()
    try:
        recordings = await store.find("recordings", {"session_id": sid})
        stream_docs = [await store.get("broadcast_streams", s["id"]) for s in streams.values()]
        session_doc = await store.get("broadcast_sessions", sid)
    finally:
        await store.close()
    assert len(recordings) == 2
    for rec in recordings:
        assert rec["status"] == "complete"
        assert rec["bytes"] == (data / "recordings" / rec["file"]).stat().st_size
        # Recorded through the deadline: at least the deadline's seconds.
        assert rec["duration_s"] >= DEADLINE_S
    # No media flows for the streams any more; the session itself outlives the process.
    assert all(doc is not None and doc["status"] == "pending" for doc in stream_docs)
    assert session_doc is not None and session_doc["status"] == "live"


@pytest.mark.timeout(60)
async def test_idle_server_drains_at_once(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data", tmp_path / "server.log", {"MULTISTREAM_DRAIN_DEADLINE": "30"}
    )
    try:
        t0 = time.monotonic()
        server.signal(signal.SIGINT)
        code = await asyncio.to_thread(server.proc.wait, 15)
        elapsed = time.monotonic() - t0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
    assert code == 0
    # No peer connection here: nothing to wait for, the 30 s deadline is not spent.
    assert elapsed < 10
    assert "drain step=idle" in server.log_text()


@pytest.mark.timeout(60)
async def test_second_signal_skips_the_rest_of_the_deadline(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data", tmp_path / "server.log", {"MULTISTREAM_DRAIN_DEADLINE": "60"}
    )
    api = Client(server.base_url)
    await web_broadcaster(api)
    publisher = None
    try:
        started = await start_session(api, ("camera",))
        (camera,) = started["session"]["streams"]
        publisher = await publish(
            api, started["broadcaster_token"], camera["id"], PatternTrack("camera", 160, 120, 15)
        )
        await _wait_for(api, "multistream_recorders_open", 1.0)
        t0 = time.monotonic()
        server.signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        # Still draining: the publisher keeps the 60 s deadline running.
        assert server.proc.poll() is None
        server.signal(signal.SIGINT)
        code = await asyncio.to_thread(server.proc.wait, 15)
        elapsed = time.monotonic() - t0
    finally:
        if publisher is not None:
            await publisher.pc.close()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
    assert code == 0
    assert elapsed < 10
    log = server.log_text()
    assert "drain step=hurry" in log and "drain step=deadline" in log
    assert len(list((tmp_path / "data" / "recordings").rglob("*.mkv"))) == 1
