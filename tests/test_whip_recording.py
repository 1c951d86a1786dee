"""WHIP publications are recorded like any other: here the case only WHIP brings, a camera that
publishes its microphone alone (no video track) — recorded as an Opus-only Matroska file."""

from __future__ import annotations

import asyncio

import av
import pytest

from tests.conftest import make_settings
from tests.media_helpers import start_session, wait_stream_status
from tests.whip_helpers import whip_publish


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "data", record=True)


async def test_audio_only_camera_publication_is_recorded(server, api):
    started = await start_session(api, ("camera",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    stream_id = started["session"]["streams"][0]["id"]
    mic, resp = await whip_publish(api, token, sid, "camera", None, audio=True)
    assert resp.status == 201, resp.body
    await wait_stream_status(server.services.store, stream_id, "live")
    await asyncio.sleep(2.0)
    # No video: no encoder is started for the recording.
    assert server.services.media.counters()["encoders_running"] == 0
    assert (await api.request("DELETE", mic.location, token=token)).status == 200
    await wait_stream_status(server.services.store, stream_id, "stopped")
    await mic.pc.close()
    [recording] = await server.services.store.find("recordings")
    assert recording["status"] == "complete"
    assert recording["video_codec"] is None and recording["audio_codec"] == "opus"
    assert 1.0 < recording["duration_s"] < 10.0
    path = server.services.settings.recordings_dir / recording["file"]
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["audio"]
        packets = sum(1 for p in container.demux() if p.size)
    assert packets > 40  # 20 ms Opus packets for well over a second
