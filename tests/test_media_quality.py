"""A stream's quality reaches the server's encoders (issue 12, item 2): the preset's size caps what
the server encodes for the stream and its composites, and the content hint picks the tuning."""

from __future__ import annotations

import asyncio

import pytest

from server.domain import KIND_RULES, StreamQuality
from server.media import codecs
from server.settings import Settings
from tests.conftest import make_settings
from tests.media_helpers import (
    PREFIX,
    PatternTrack,
    join,
    publish,
    view,
    view_composite,
)

SETTINGS = Settings()


def test_quality_is_a_typed_value_with_defaults_for_old_documents() -> None:
    q = StreamQuality.of("screen", {"preset": "720p", "fps": 10, "content_hint": "text"})
    assert (q.preset.height, q.fps, q.tuning, q.max_height) == (720, 10, "text", 720)
    legacy = StreamQuality.of("camera", None)
    rules = KIND_RULES["camera"]
    assert legacy.preset.name == rules.default_preset and legacy.fps == rules.default_fps
    assert legacy.tuning == "motion"
    # "detail" is a text hint too: keep resolution, sharpen, give up frames first.
    assert StreamQuality.of("screen", {"content_hint": "detail"}).tuning == "text"


def test_profile_carries_the_preset_cap_and_the_hint_tuning() -> None:
    screen = codecs.profile_for(
        StreamQuality.of("screen", {"preset": "720p", "fps": 15, "content_hint": "text"}), SETTINGS
    )
    assert (screen.fps, screen.tuning, screen.max_height) == (15, "text", 720)
    camera = codecs.profile_for(StreamQuality.of("camera", {"preset": "480p"}), SETTINGS)
    assert (camera.fps, camera.tuning, camera.max_height) == (30, "motion", 480)


def test_text_tuning_reaches_the_encoder_options() -> None:
    text = codecs.EncodeProfile("composite", 15, 2_500_000, tuning="text")
    motion = codecs.EncodeProfile("camera", 30, 1_200_000, tuning="motion")
    h264_text = codecs.create_context("H264", 1920, 1080, text).options
    h264_motion = codecs.create_context("H264", 1280, 720, motion).options
    assert (h264_text["preset"], h264_text["tune"]) == ("superfast", "psnr,zerolatency")
    assert (h264_motion["preset"], h264_motion["tune"]) == ("ultrafast", "zerolatency")
    vp8_text = codecs.create_context("VP8", 1920, 1080, text).options
    vp8_motion = codecs.create_context("VP8", 1280, 720, motion).options
    # VP8: more encoder time and no skipping of "static" blocks for text; speed for motion.
    assert (vp8_text["cpu-used"], vp8_text["static-thresh"]) == ("8", "0")
    assert (vp8_motion["cpu-used"], vp8_motion["static-thresh"]) == ("10", "1")


def test_a_text_composite_follows_the_screen_frame_rate_and_cap() -> None:
    screen = StreamQuality.of("screen", {"preset": "1440p", "fps": 15, "content_hint": "text"})
    camera = StreamQuality.of("camera", {"preset": "720p", "fps": 30})
    both = codecs.composite_profile(screen, camera, SETTINGS)
    assert (both.fps, both.tuning, both.max_height) == (15, "text", 1440)
    alone = codecs.composite_profile(None, camera, SETTINGS)
    assert (alone.fps, alone.tuning, alone.max_height) == (30, "motion", 720)


@pytest.mark.parametrize(
    ("width", "height", "cap", "size"),
    [
        (1920, 1080, 720, (1280, 720)),
        (1280, 720, 1080, (1280, 720)),
        (1366, 769, None, (1366, 768)),
    ],
)
def test_capped_size(width: int, height: int, cap: int | None, size: tuple[int, int]) -> None:
    assert codecs.capped_size(width, height, cap) == size


@pytest.fixture
def settings(tmp_path):
    # Every output through the server's encoders: what the preset must cap.
    return make_settings(tmp_path / "data", passthrough=False, adaptive=False)


async def _session(api, screen_quality: dict) -> tuple[str, str, dict]:
    resp = await api.post(
        f"{PREFIX}/session/start",
        {
            "title": "quality",
            "streams": ["screen", "camera"],
            "quality": {"screen": screen_quality, "camera": {"preset": "360p"}},
        },
        token=api.broadcaster_token,
    )
    assert resp.status == 201, resp.body
    started = resp.json
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    return started["session"]["id"], started["broadcaster_token"], streams


async def test_a_720p_stream_is_never_encoded_above_720_lines(server, api):
    """The publisher sends 1080 lines; the preset says 720p: the server's encode is 1280x720."""
    session_id, token, streams = await _session(
        api, {"preset": "720p", "fps": 15, "content_hint": "text"}
    )
    pubs = [
        await publish(api, token, streams["screen"], PatternTrack("screen", 1920, 1080, 15)),
        await publish(api, token, streams["camera"], PatternTrack("camera", 320, 240, 15)),
    ]
    joined = await join(api, session_id)
    viewer, resp = await view(
        api, joined["viewer_token"], f"{PREFIX}/stream/{streams['screen']}/signal/offer"
    )
    assert resp.status == 200, resp.body
    composite, _ = await view_composite(api, session_id)
    try:
        await asyncio.gather(viewer.wait_frames(3, 20), composite.wait_frames(3, 20))
        for got in (viewer.frames[-1], composite.frames[-1]):
            assert (got.width, got.height) == (1280, 720)
        encoders = server.services.media.running_encoders()
        screen = [e.profile for e in encoders if streams["camera"] not in e.name]
        assert screen and all(p.max_height == 720 and p.tuning == "text" for p in screen)
        # The camera's own encodes (its recording here) follow the camera's preset and hint.
        camera = [e.profile for e in encoders if streams["camera"] in e.name]
        assert all(p.max_height == 360 and p.tuning == "motion" for p in camera)
    finally:
        await viewer.close()
        await composite.close()
        for pub in pubs:
            await pub.pc.close()


async def test_a_text_composite_is_encoded_at_the_screen_rate_with_text_tuning(server, api):
    session_id, token, streams = await _session(
        api, {"preset": "1080p", "fps": 10, "content_hint": "detail"}
    )
    pubs = [
        await publish(api, token, streams["screen"], PatternTrack("screen", 640, 360, 10)),
        await publish(api, token, streams["camera"], PatternTrack("camera", 320, 240, 30)),
    ]
    composite, _ = await view_composite(api, session_id)
    try:
        await composite.wait_frames(3, 20)
        [encoder] = [
            e for e in server.services.media.running_encoders() if e.name.startswith("composite:")
        ]
        assert (encoder.profile.fps, encoder.profile.tuning) == (10, "text")
        assert encoder.profile.max_height == 1080
    finally:
        await composite.close()
        for pub in pubs:
            await pub.pc.close()
