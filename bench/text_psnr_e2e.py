"""Text readability end to end, through the real server: passthrough vs composite, today's encoders.

    .venv/bin/python -m bench.text_psnr_e2e          # ~1 min

One aiortc publisher (H.264, so the same packets can be passed through) sends a static 1080p
document page as the screen and a noisy 720p camera; one viewer receives the screen stream
(passthrough: the publisher's own encoding), another the composite (the server decodes, composes
the camera 25 % bottom-right, and re-encodes with its shared x264 encoder). Both decode with
aiortc. PSNR (luma) of the text region -- the page outside the overlay -- against the page the
publisher sent, over the frames of a measuring window after a settle time. The page is static, so
every received frame is compared with the same picture (no frame alignment to get wrong).

The server's encoder settings are whatever ``server/media/codecs.py`` sets; to compare settings
without the network use ``python -m bench.text_psnr``.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import statistics
import sys
import time
from typing import Any

import av
import numpy as np
from aiortc import RTCSessionDescription
from aiortc.codecs import h264
from aiortc.mediastreams import MediaStreamTrack

from bench import bench_fanout as fan
from bench import content
from bench.text_psnr import CAMERA, LAYOUT, H, W, psnr, text_mask
from compositor import plane_views
from tests.media_helpers import new_pc

PREFIX = fan.PREFIX


class StillTrack(MediaStreamTrack):
    """A fixed 1080p picture (the document page) at ``fps``: what a shared static page is."""

    kind = "video"

    def __init__(self, luma: np.ndarray, fps: int) -> None:
        super().__init__()
        self.luma, self.fps, self._n, self._start = luma, fps, 0, None  # type: ignore[var-annotated]

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame(W, H, "yuv420p")
        y, u, v = plane_views(frame)
        y[...] = self.luma
        u[...] = 128
        v[...] = 128
        frame.pts, frame.time_base = self._n * (90000 // self.fps), fractions.Fraction(1, 90000)
        self._n += 1
        return frame


class LoopTrack(MediaStreamTrack):
    """A camera: a few seconds of ``CameraSource`` frames, precomputed and looped at 30 fps."""

    kind = "video"

    def __init__(self, frames: list[av.VideoFrame]) -> None:
        super().__init__()
        self.frames, self._n, self._start = frames, 0, None  # type: ignore[var-annotated]

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n / 30 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        src = self.frames[self._n % len(self.frames)]
        frame = av.VideoFrame(src.width, src.height, "yuv420p")
        for dst, s in zip(plane_views(frame), plane_views(src), strict=True):
            dst[...] = s
        frame.pts, frame.time_base = self._n * 3000, fractions.Fraction(1, 90000)
        self._n += 1
        return frame


async def _receive(pc: Any, path: str, http: fan.Http, token: str, got: list[np.ndarray]) -> None:
    """Subscribe (recvonly video) and keep the luma of every decoded frame until cancelled."""
    pc.addTransceiver("video", direction="recvonly")
    answer = await http.post(path, await fan.offer(pc), token)
    track_ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pc.on("track", lambda t: track_ready.done() or track_ready.set_result(t))
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    track = await asyncio.wait_for(track_ready, 20)
    while True:
        frame = await track.recv()
        got.append(plane_views(frame.reformat(format="yuv420p"))[0].copy())


async def run(settle_s: float, window_s: float, publisher_bps: int, screen_fps: int) -> None:
    # The publisher is aiortc's own H.264 encoder; hold it at the given bitrate (client process).
    h264.DEFAULT_BITRATE = h264.MIN_BITRATE = h264.MAX_BITRATE = publisher_bps  # type: ignore[attr-defined]
    page = content.document_page(W, H, 11)
    camera_src = content.CameraSource(*CAMERA)
    camera_frames = [camera_src.frame(n) for n in range(60)]
    server = fan.start_server("ours", "H264", 2_500_000)
    http = fan.Http(server.base)
    pcs: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    received: list[list[np.ndarray]] = []
    try:
        started = await http.post(
            f"{PREFIX}/session/start",
            token=await http.account(),
            body={
                "title": "text psnr",
                "streams": ["screen", "camera"],
                "quality": {
                    "screen": {"preset": "1080p", "fps": screen_fps, "content_hint": "text"},
                    "camera": {"preset": "720p", "fps": 30},
                },
            },
        )
        token, session_id = started["broadcaster_token"], started["session"]["id"]
        streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
        pcs.append(
            await fan.publish(
                http,
                f"{PREFIX}/stream/{streams['screen']}/signal/offer",
                StillTrack(page, screen_fps),
                "H264",
                token,
            )
        )
        pcs.append(
            await fan.publish(
                http,
                f"{PREFIX}/stream/{streams['camera']}/signal/offer",
                LoopTrack(camera_frames),
                "H264",
                token,
            )
        )
        joined = await http.post(f"{PREFIX}/session/{session_id}/join", {})
        viewer = joined["viewer_token"]
        joined_c = await http.post(f"{PREFIX}/session/{session_id}/join", {})
        viewer_c = joined_c["viewer_token"]
        await http.put(
            f"{PREFIX}/session/{session_id}/preferences",
            {
                "enabled_streams": ["screen", "camera"],
                "mode": "composite",
                "pip": {"corner": "bottom-right", "size_pct": LAYOUT.size_pct},
            },
            viewer_c,
        )
        paths = {
            "passthrough": (f"{PREFIX}/stream/{streams['screen']}/signal/offer", viewer),
            "composite": (f"{PREFIX}/session/{session_id}/composite/signal/offer", viewer_c),
        }
        for path, tok in paths.values():
            pc = new_pc()
            pcs.append(pc)
            received.append([])
            tasks.append(asyncio.create_task(_receive(pc, path, http, tok, received[-1])))
        await asyncio.sleep(settle_s)
        marks = [len(got) for got in received]
        await asyncio.sleep(window_s)
        ends = [len(got) for got in received]
        mask = text_mask()
        print(
            f"static 1080p document page, publisher aiortc H.264 {publisher_bps / 1e6:.1f} Mb/s at "
            f"{screen_fps} fps, camera 720p30; {window_s:g} s window after {settle_s:g} s\n"
        )
        print("| path | frames | fps | text PSNR dB (mean / min / max) |")
        print("| --- | ---: | ---: | ---: |")
        for name, got, mark, end in zip(paths, received, marks, ends, strict=True):
            frames = got[mark:end]
            scores = [psnr(f[mask], page[mask]) for f in frames if f.shape == page.shape]
            if not scores:
                print(f"| {name} | 0 | 0 | - |")
                continue
            print(
                f"| {name} | {len(scores)} | {len(scores) / window_s:.1f} | "
                f"{statistics.mean(scores):.1f} / {min(scores):.1f} / {max(scores):.1f} |",
                flush=True,
            )
    finally:
        for t in tasks:
            t.cancel()
        for pc in pcs:
            await pc.close()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=6.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--publisher-bps", type=int, default=2_500_000)
    parser.add_argument("--screen-fps", type=int, default=15)
    args = parser.parse_args(argv)
    asyncio.run(run(args.settle, args.window, args.publisher_bps, args.screen_fps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
