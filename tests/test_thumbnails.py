"""Stream-list thumbnails: a real publisher's latest screen frame as a small JPEG, rendered only
when asked and at most every few seconds."""

from __future__ import annotations

import asyncio
import io

import av
import numpy as np

from tests.media_helpers import PREFIX, PatternTrack, publish, start_session


def _decode(jpeg: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(jpeg), format="mjpeg") as container:
        return next(container.decode(video=0))


async def _thumbnail(api, sid: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await api.get(f"{PREFIX}/session/{sid}/thumbnail.jpg")
        if resp.status == 200:
            return resp
        assert resp.status == 204, resp.body
        assert asyncio.get_running_loop().time() < deadline, "no thumbnail in time"
        await asyncio.sleep(0.2)


async def test_thumbnail_is_a_small_jpeg_of_the_screen_rendered_at_most_every_few_seconds(
    server, api
) -> None:
    started = await start_session(api)
    sid, token = started["session"]["id"], started["broadcaster_token"]
    streams = {s["kind"]: s for s in started["session"]["streams"]}
    # Nothing on air yet: no picture, and nothing rendered.
    assert (await api.get(f"{PREFIX}/session/{sid}/thumbnail.jpg")).status == 204
    thumbnails = server.services.thumbnails
    assert thumbnails.renders == 0
    pub = await publish(api, token, streams["screen"]["id"], PatternTrack("screen", 640, 360, 10))
    try:
        resp = await _thumbnail(api, sid)
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert resp.body[:2] == b"\xff\xd8"  # a JPEG
        frame = _decode(resp.body)
        assert (frame.width, frame.height) == (320, 180)
        # It shows the screen: a light, colourless page (the camera pattern is dark red).
        r, g, b = (float(np.median(c)) for c in np.moveaxis(frame.to_ndarray(format="rgb24"), 2, 0))
        assert min(r, g, b) > 180 and max(r, g, b) - min(r, g, b) < 25, (r, g, b)
        # Many list viewers asking at once: one render, the cached picture for everyone.
        renders = thumbnails.renders
        answers = await asyncio.gather(
            *(api.get(f"{PREFIX}/session/{sid}/thumbnail.jpg") for _ in range(10))
        )
        assert {a.status for a in answers} == {200}
        assert thumbnails.renders == renders
    finally:
        await pub.pc.close()


async def test_thumbnail_of_unknown_or_ended_session(server, api) -> None:
    assert (await api.get(f"{PREFIX}/session/ses_nope/thumbnail.jpg")).status == 404
    started = await start_session(api)
    sid, token = started["session"]["id"], started["broadcaster_token"]
    await api.post(f"{PREFIX}/session/{sid}/end", token=token)
    assert (await api.get(f"{PREFIX}/session/{sid}/thumbnail.jpg")).status == 204
