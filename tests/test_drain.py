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

from store.sqlite import SqliteStore
from tests.api_helpers import assert_error
from tests.conftest import Client
from tests.media_helpers import PREFIX, PatternTrack, join, publish, start_session, view
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
async def test_sigterm_drains_a_live_session(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(
        data,
        tmp_path / "server.log",
        {
            "MULTISTREAM_DRAIN_DEADLINE": str(DEADLINE_S),
            "MULTISTREAM_LOG_JSON": "1",
            "MULTISTREAM_INSTANCE_ID": "drain-test",
        },
    )
    api = Client(server.base_url)
    publisher = viewer = None
    try:
        started = await start_session(api, ("screen",))
        sid = started["session"]["id"]
        (screen,) = started["session"]["streams"]
        publisher = await publish(
            api, started["broadcaster_token"], screen["id"], PatternTrack("screen", 320, 180, 15)
        )
        joined = await join(api, sid, {"enabled_streams": ["screen"], "mode": "separate"})
        viewer, resp = await view(
            api, joined["viewer_token"], f"{PREFIX}/stream/{screen['id']}/signal/offer"
        )
        assert resp.status == 200, resp.body
        await viewer.wait_frames(10)
        await _wait_for(api, "multistream_recorders_open", 1.0)
        metrics_before = (await api.get("/metrics")).body.decode()
        (tmp_path / "metrics-live.txt").write_text(metrics_before)

        t0 = time.monotonic()
        server.signal(signal.SIGTERM)
        # Readiness turns 503 at once (within one poll of the loop handling the signal).
        while (ready := await api.get("/readyz")).status == 200:
            assert time.monotonic() - t0 < 1.0, "readiness still 200 a second after SIGTERM"
            await asyncio.sleep(0.005)
        t_ready = time.monotonic() - t0
        assert_error(ready, 503, "draining")
        assert_error(await api.post(f"{PREFIX}/session/start", {"title": "late"}), 503, "draining")
        assert_error(await api.post(f"{PREFIX}/session/{sid}/join"), 503, "draining")
        t_refused = time.monotonic() - t0
        # The live session carries on during the deadline: frames still arrive, status answers.
        await viewer.wait_frames(10, timeout=DEADLINE_S)
        t_frames = time.monotonic() - t0
        assert (await api.get(f"{PREFIX}/session/{sid}/status")).status == 200

        code = await asyncio.to_thread(server.proc.wait, DEADLINE_S + MARGIN_S)
        t_exit = time.monotonic() - t0
    finally:
        for pc_holder in (viewer, publisher):
            if pc_holder is not None:
                await pc_holder.pc.close()
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
    required = ["draining", "deadline", "media_closed", "streams_released", "http_closed", "exit"]
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
    assert len(files) == 1, files
    with av.open(str(files[0])) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 15
    store = SqliteStore(data / "multistream.sqlite3")
    await store.open()
    try:
        (rec,) = await store.find("recordings", {"session_id": sid})
        stream_doc = await store.get("broadcast_streams", screen["id"])
        session_doc = await store.get("broadcast_sessions", sid)
    finally:
        await store.close()
    assert rec["status"] == "complete"
    assert rec["bytes"] == files[0].stat().st_size
    # Recorded through the deadline: at least the seconds between first frame and SIGTERM + deadline.
    assert rec["duration_s"] >= DEADLINE_S
    # No media flows for it any more; the session itself outlives the process.
    assert stream_doc is not None and stream_doc["status"] == "pending"
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
