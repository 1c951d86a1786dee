"""The dashboard's sessions, earnings and CSV, and the composite replay: rendered offline with the
compositor from real recordings (PyAV-written files for the timeline rules; a real aiortc session for
the API), downloadable under the same entitlement as live media."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from compositor import Layout
from server.replay import Segment, render
from tests.api_helpers import ACCOUNT_PREFIX, START_BODY, assert_error, login_cookie
from tests.conftest import make_settings
from tests.media_helpers import (
    CAMERA_V,
    PREFIX,
    PatternTrack,
    join,
    publish,
    wait_stream_status,
    write_recording,
)

SIZES = {"screen": (320, 176), "camera": (160, 96)}


def recording(path: Path, pattern: str, seconds: float) -> Path:
    return write_recording(path, pattern, seconds, SIZES[pattern])


def camera_share(frame: av.VideoFrame, corner: str) -> float:
    """Share of strongly red (camera) chroma in the quarter of the picture at `corner`."""
    v = frame.to_ndarray(format="yuv420p")[frame.height + frame.height // 4 :]
    v = v.reshape(frame.height // 2, frame.width // 2)
    h, w = v.shape
    rows = slice(h // 2, h) if corner.startswith("bottom") else slice(0, h // 2)
    cols = slice(w // 2, w) if corner.endswith("right") else slice(0, w // 2)
    return float(np.mean(v[rows, cols] > (CAMERA_V + 128) // 2))


def test_render_follows_the_timeline_and_the_layout(tmp_path: Path) -> None:
    """Screen throughout; the camera on, off (stopped) and on again: the composite shows the camera
    in the session's corner only while it was on, and lasts as long as the session."""
    segments = [
        Segment("screen", recording(tmp_path / "s.mkv", "screen", 4.0), 0.0, 4.0),
        Segment("camera", recording(tmp_path / "c1.mkv", "camera", 1.5), 0.0, 1.5),
        Segment("camera", recording(tmp_path / "c2.mkv", "camera", 1.5), 2.5, 1.5),
    ]
    seen: list[float] = []
    made = render(segments, tmp_path / "out.mp4", Layout("top-left", 30), progress=seen.append)
    assert made["frames"] == 60 and made["width"] == 320 and made["height"] == 176
    assert seen[-1] == 1.0 and seen == sorted(seen)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [s.type for s in c.streams] == ["video"]
        assert c.streams.video[0].codec_context.name == "h264"
        frames = list(c.decode(video=0))
    assert len(frames) == 60
    at = {round(float(f.pts * f.time_base), 2): f for f in frames}
    assert camera_share(at[1.0], "top-left") > 0.2  # camera on, in the session's corner
    assert camera_share(at[1.0], "bottom-right") < 0.02
    assert camera_share(at[2.2], "top-left") < 0.02  # stopped: the screen alone
    assert camera_share(at[3.0], "top-left") > 0.2  # on again


def test_render_with_nothing_refuses(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to render"):
        render([], tmp_path / "out.mp4", Layout())


@pytest.fixture
def settings(tmp_path, store_url):
    return make_settings(tmp_path / "data", record=True, store_url=store_url)


async def _wait_replay(api: Any, sid: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    states = []
    for _ in range(600):
        state = (await api.get(f"{ACCOUNT_PREFIX}/sessions/{sid}/replay", headers=headers)).json
        states.append(state["composite"])
        if state["composite"]["status"] != "rendering":
            return states
        await asyncio.sleep(0.1)
    raise AssertionError(f"still rendering: {states[-1]}")


@pytest.mark.timeout(180)
@pytest.mark.store_backends
async def test_dashboard_earnings_csv_and_composite_replay(server, api) -> None:
    headers = await login_cookie(server)
    started = await api.post(f"{PREFIX}/session/start", START_BODY, headers=headers)
    assert started.status == 201, started.body
    sid, token = started.json["session"]["id"], started.json["broadcaster_token"]
    streams = {s["kind"]: s["id"] for s in started.json["session"]["streams"]}
    pubs = [
        await publish(api, token, streams["screen"], PatternTrack("screen", 320, 176, 15)),
        await publish(api, token, streams["camera"], PatternTrack("camera", 160, 96, 15), True),
    ]
    store = server.services.store
    for stream_id in streams.values():
        await wait_stream_status(store, stream_id, "live")
    # A viewer pays for both streams (the operator's path; the browser journey uses the webhook).
    both = {"enabled_streams": ["screen", "camera"]}
    viewer = await join(api, sid)
    prefs = f"{PREFIX}/session/{sid}/preferences"
    order = (await api.put(prefs, both, token=viewer["viewer_token"])).json["payment"]
    await server.services.payments.mark_paid(order["txid"])
    unpaid = await join(api, sid, both)
    await asyncio.sleep(2.5)
    assert (await api.post(f"{PREFIX}/session/{sid}/end", token=token)).status == 200
    for pub in pubs:
        await pub.pc.close()
    for _ in range(100):
        recs = await store.find("recordings", {"session_id": sid})
        if len(recs) == 2 and all(r["status"] == "complete" for r in recs):
            break
        await asyncio.sleep(0.1)

    listed = (await api.get(f"{ACCOUNT_PREFIX}/sessions", headers=headers)).json
    [row] = listed["sessions"]
    assert row["id"] == sid and row["status"] == "ended"
    assert row["earnings"] == {
        "paid_orders": 1,
        "amount_centavos": order["amount_centavos"],
        "currency": "BRL",
    }
    assert listed["total_centavos"] == order["amount_centavos"]
    text = (await api.get(f"{ACCOUNT_PREFIX}/earnings.csv", headers=headers)).body.decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:2] == ["session_id", "title"]
    assert rows[1][0] == sid and int(rows[1][6]) == order["amount_centavos"]
    assert rows[-1][0] == "total" and int(rows[-1][6]) == order["amount_centavos"]
    # Another broadcaster sees none of it.
    other = await login_cookie(server, "someone-else")
    assert (await api.get(f"{ACCOUNT_PREFIX}/sessions", headers=other)).json["sessions"] == []
    assert_error(await api.get(f"{ACCOUNT_PREFIX}/sessions/{sid}/replay", headers=other), 403)

    replay = (await api.get(f"{ACCOUNT_PREFIX}/sessions/{sid}/replay", headers=headers)).json
    assert [r["kind"] for r in replay["recordings"]] == ["screen", "camera"] or [
        r["kind"] for r in replay["recordings"]
    ] == ["camera", "screen"]
    assert replay["composite"]["status"] == "none"
    first = await api.get(replay["recordings"][0]["url"], headers=headers)  # the owner's cookie
    assert first.status == 200 and first.body[:4] == b"\x1a\x45\xdf\xa3"  # EBML: Matroska
    resp = await api.post(f"{ACCOUNT_PREFIX}/sessions/{sid}/replay", {}, headers=headers)
    assert resp.status == 202 and resp.json["composite"]["status"] in ("rendering", "done")
    states = await _wait_replay(api, sid, headers)
    assert states[-1]["status"] == "done", states[-1]
    progress = [s["progress"] for s in states]
    assert progress == sorted(progress) and progress[-1] == 1.0
    url = f"{PREFIX}/session/{sid}/replay/composite"
    owned = await api.get(url, headers=headers)
    assert owned.status == 200 and owned.headers["Content-Type"] == "video/mp4"
    path = Path(server.services.settings.recordings_dir) / sid / f"composite-{sid}.mp4"
    assert path.read_bytes() == owned.body
    with av.open(str(path)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        frames = list(c.decode(video=0))
    assert len(frames) >= 15 * 2
    assert camera_share(frames[len(frames) // 2], "bottom-right") > 0.1  # the default corner
    # Live's rule: the paying viewer gets it, the unpaid one is asked to pay, no token is 401.
    assert (await api.get(url, token=viewer["viewer_token"])).status == 200
    assert_error(await api.get(url, token=unpaid["viewer_token"]), 402, "payment_required")
    assert_error(await api.get(url), 401)


def test_the_replay_follows_the_sessions_default_layout() -> None:
    from server.replay import layout_of

    assert layout_of({"default_pip": {"corner": "top-left", "size_pct": 30}}) == Layout(
        "top-left", 30
    )
    assert layout_of({}) == Layout()  # the product default (bottom-right, 25 %)
    assert layout_of({"default_pip": {"corner": "nowhere", "size_pct": 30}}) == Layout()
