"""The DTLS role policy of server/media/dtls.py: an `actpass` offer is answered `passive` (we are the
DTLS server) and the connection still comes up; a fixed-role offer is left alone. (The aiortc hooks
it uses, `dtls_role`/`set_dtls_role`, are checked in tests/test_media_aiortc_hooks.py.)"""

from __future__ import annotations

import asyncio

from aiortc import RTCSessionDescription

from server.media import dtls, ice
from tests.media_helpers import PatternTrack, new_pc, offer_of


async def _answer(offer_sdp: str) -> tuple[object, str]:
    pc = new_pc()
    await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
    for t in pc.getTransceivers():
        t.direction = "recvonly"
    ice.restrict(pc, ("127.0.0.1",))
    dtls.answer_as_server(pc)
    await pc.setLocalDescription(await pc.createAnswer())
    return pc, pc.localDescription.sdp


async def test_actpass_offer_is_answered_passive_and_connects() -> None:
    sender = new_pc()
    sender.addTransceiver(PatternTrack("screen", 64, 64, 10), direction="sendonly")
    offer = await offer_of(sender)
    assert "a=setup:actpass" in offer["sdp"]
    receiver, answer = await _answer(offer["sdp"])
    assert "a=setup:passive" in answer and "a=setup:active" not in answer
    await sender.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for _ in range(200):
        if receiver.connectionState == "connected" and sender.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    assert receiver.connectionState == "connected"
    assert receiver.getTransceivers()[0].receiver.transport._role == "server"
    await sender.close()
    await receiver.close()


async def test_passive_offer_keeps_us_the_dtls_client() -> None:
    sender = new_pc()
    sender.addTransceiver(PatternTrack("screen", 64, 64, 10), direction="sendonly")
    offer = await offer_of(sender)
    passive = offer["sdp"].replace("a=setup:actpass", "a=setup:passive")  # as FFmpeg offers
    receiver, answer = await _answer(passive)
    assert "a=setup:active" in answer and "a=setup:passive" not in answer
    await sender.close()
    await receiver.close()
