"""Signaling refuses bad input with 4xx JSON and leaves no peer connection behind."""

from __future__ import annotations

import gc

from aiortc import RTCPeerConnection

from tests.api_helpers import assert_error
from tests.media_helpers import PREFIX, PatternTrack, join, new_pc, offer_of, start_session, view


def open_pcs() -> int:
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
    )


async def publisher_offer() -> tuple[RTCPeerConnection, dict]:
    pc = new_pc()
    pc.addTransceiver(PatternTrack("screen", 64, 64, 5), direction="sendonly")
    return pc, await offer_of(pc)


MALFORMED = [
    {"sdp": "v=0\r\nthis is not sdp\r\n", "type": "offer"},
    {
        "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=rtpmap:96 VP8/90000\r\na=sendonly\r\n",
        "type": "offer",
    },  # no ICE/DTLS
    {"sdp": "v=0\r\nm=video x\r\n", "type": "offer"},
    {"sdp": "", "type": "offer"},
    {"sdp": 42, "type": "offer"},
    {"sdp": "v=0\r\n", "type": "answer"},
    {"sdp": "v=0\r\n" + "a=x\r\n" * 20000, "type": "offer"},  # oversized
]


async def test_malformed_and_oversized_sdp_is_400_without_leaks(server, api):
    started = await start_session(api)
    token = started["broadcaster_token"]
    stream_id = started["session"]["streams"][0]["id"]
    before = open_pcs()
    for body in MALFORMED:
        resp = await api.post(f"{PREFIX}/stream/{stream_id}/signal/offer", body, token=token)
        assert_error(resp, 400)
    # A valid offer with a garbled fingerprint/ufrag line gets past the parser but not aiortc.
    pc, offer = await publisher_offer()
    broken = offer["sdp"].replace("a=fingerprint:sha-256", "a=fingerprint:sha-256 zz")
    resp = await api.post(
        f"{PREFIX}/stream/{stream_id}/signal/offer", {"sdp": broken, "type": "offer"}, token=token
    )
    assert resp.status == 400, resp.body
    await pc.close()
    assert server.services.media.counters()["peer_connections"] == 0
    assert open_pcs() == before


async def test_viewer_cannot_publish_and_other_sessions_token_is_refused(server, api):
    a = await start_session(api)
    b = await start_session(api)
    a_screen = a["session"]["streams"][0]["id"]
    viewer = await join(api, a["session"]["id"])
    before = open_pcs()
    pc, offer = await publisher_offer()
    try:
        # A viewer token sending a publisher's (send-only) offer.
        resp = await api.post(
            f"{PREFIX}/stream/{a_screen}/signal/offer", offer, token=viewer["viewer_token"]
        )
        assert_error(resp, 403, "not_publisher")
        # Session B's broadcaster publishing into session A's stream.
        resp = await api.post(
            f"{PREFIX}/stream/{a_screen}/signal/offer", offer, token=b["broadcaster_token"]
        )
        assert_error(resp, 403)
        # Session B's token asking for A's composite.
        resp = await api.post(
            f"{PREFIX}/session/{a['session']['id']}/composite/signal/offer",
            offer,
            token=b["broadcaster_token"],
        )
        assert_error(resp, 403)
        # No token at all; a forged one; an unknown stream.
        assert_error(await api.post(f"{PREFIX}/stream/{a_screen}/signal/offer", offer), 401)
        assert_error(
            await api.post(f"{PREFIX}/stream/{a_screen}/signal/offer", offer, token="not-a-token"),
            401,
        )
        assert_error(
            await api.post(
                f"{PREFIX}/stream/str_doesnotexist/signal/offer",
                offer,
                token=a["broadcaster_token"],
            ),
            404,
        )
        # Candidates for a connection that does not exist (or is not this token's).
        assert_error(
            await api.post(
                f"{PREFIX}/stream/{a_screen}/signal/candidate",
                {"pc_id": "pc_nope", "candidate": {"candidate": ""}},
                token=a["broadcaster_token"],
            ),
            404,
        )
    finally:
        await pc.close()
    assert server.services.media.counters()["peer_connections"] == 0
    assert open_pcs() == before


async def test_auth_is_checked_before_the_body_is_parsed(server, api):
    started = await start_session(api)
    stream_id = started["session"]["streams"][0]["id"]
    resp = await api.post(
        f"{PREFIX}/stream/{stream_id}/signal/offer",
        raw=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp, 401)


async def test_a_viewer_cannot_open_unbounded_connections(server, api):
    started = await start_session(api)
    stream_id = started["session"]["streams"][0]["id"]
    viewer = await join(api, started["session"]["id"])
    path = f"{PREFIX}/stream/{stream_id}/signal/offer"
    opened = []
    try:
        for _ in range(4):
            v, resp = await view(api, viewer["viewer_token"], path)
            assert resp.status == 200, resp.body
            opened.append(v)
        _, resp = await view(api, viewer["viewer_token"], path)
        assert_error(resp, 429, "too_many_connections")
        assert server.services.media.counters()["viewers"] == 4
    finally:
        for v in opened:
            await v.close()
