"""The same recording and separate-mode checks with passthrough off: every output is encoded by
the server's shared encoders (H.264 first), and the recorder muxes that encoder's packets."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings
from tests.test_media_lifecycle import test_recording_decodes_with_matching_duration as _recording
from tests.test_media_separate import (
    test_camera_viewer_hears_forwarded_opus_and_sees_camera as _camera,
)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "data", passthrough=False)


async def test_recording_of_the_shared_encoder(server, api, settings):
    await _recording(server, api, settings)
    assert server.services.media.counters()["passthrough_viewers"] == 0


async def test_camera_viewer_through_the_shared_encoder(server, api):
    await _camera(server, api)
