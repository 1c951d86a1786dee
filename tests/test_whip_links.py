"""ICE servers as `Link: <…>; rel="ice-server"` headers (RFC 9725 §4.6): on `OPTIONS` without TURN
credentials (anyone may send it), on the authenticated `201 Created` with them."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings
from tests.media_helpers import PatternTrack, start_session
from tests.whip_helpers import WHIP, whip_publish

# Nothing listens there: aiortc's gathering times the servers out (~5 s), so one test only.
SERVERS = ("stun:127.0.0.1:3478", "turn:ana:s3cret@127.0.0.1:3479")


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "data", record=False, ice_servers=SERVERS)


async def test_ice_servers_are_link_headers_credentials_only_when_authenticated(api):
    started = await start_session(api, ("screen",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    resp = await api.request("OPTIONS", f"{WHIP}/{sid}/screen", headers={"Origin": "http://x"})
    assert resp.status == 403  # a foreign origin is refused like every preflight
    resp = await api.request("OPTIONS", f"{WHIP}/{sid}/screen")
    assert resp.status == 204
    assert resp.headers.get_list("Link") == [
        '<stun:127.0.0.1:3478>; rel="ice-server"',
        '<turn:127.0.0.1:3479>; rel="ice-server"',
    ]
    assert "PATCH" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Accept-Post"] == "application/sdp"
    pub, resp = await whip_publish(api, token, sid, "screen", PatternTrack("screen", 64, 64, 5))
    assert resp.status == 201, resp.body
    assert resp.headers.get_list("Link") == [
        '<stun:127.0.0.1:3478>; rel="ice-server"',
        '<turn:127.0.0.1:3479>; rel="ice-server"; username="ana"; credential="s3cret"; '
        'credential-type="password"',
    ]
    assert pub is not None
    await pub.pc.close()
