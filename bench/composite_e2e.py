"""Text in the composite, end to end: PSNR of the screen's text per composite rung, and the latency
the composite adds over passthrough, through the real server.

    .venv/bin/python -m bench.composite_e2e            # ~40 s: a server process, H.264 and VP8
    .venv/bin/python -m pytest bench/bench_composite.py --benchmark-only

One aiortc publisher sends a static 1080p document page as the screen (quality preset 1080p, 15 fps,
content hint ``text``; H.264 as a browser's sender makes it: x264 zerolatency, Constrained Baseline,
2.5 Mb/s, finest quantiser 14 so the page reaches passthrough viewers at ~46.5 dB as from a live
sender, pre-encoded once so the reference is the same on every run) and a noisy 720p30 camera
(pre-encoded too). The same publisher feeds every path:

- **passthrough**: a viewer of the screen stream gets the publisher's own packets;
- **composite, per rung**: a composite viewer (camera 25 % bottom-right) pinned to each rung of the
  composite ladder in turn (``PUT /session/{id}/quality``), each rung measured in its own window
  next to the passthrough frames of that window; the top rung once more with a VP8-only viewer.
  Two viewers decode at a time, so the client (which also runs the publisher's 1080p encoder)
  keeps up.

Every viewer decodes with aiortc. **Text PSNR**: luma of the text region (the page outside the camera
overlay and outside the frame-number code) against the page the publisher sent; a scaled rung is
compared with the page scaled by the same area filter. **Latency**: the page carries its frame
number as a block code in its top margin, so each viewer records when each frame number arrived;
the composite's *added* latency is the median over frames both received of (composite arrival −
passthrough arrival): the server's decode + compose + encode, and any wait for the frame's turn.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from bench import bench_fanout as fan
from bench import content
from compositor import Layout, Scaler, plane_views
from compositor.layout import overlay_rect
from server.media import aiortc_hooks
from server.media.ingest import is_keyframe
from tests.media_helpers import new_pc

PREFIX = fan.PREFIX
W, H = 1920, 1080
CAMERA = (1280, 720)
LAYOUT = Layout(corner="bottom-right", size_pct=25)
SCREEN_FPS = 15
CLIP_S, CLIP_KEY_S = 30, 4
# The clip's finest quantiser: a live sender never refines a still page to near-lossless (aiortc's
# live x264 sender measured 46.5 dB passthrough on this page, issue 13); QP 14 gives ~46.3 dB.
CLIP_QMIN = 14
# The frame-number code: BITS blocks of BLOCK x BLOCK pixels in the page's blank top margin.
BITS, BLOCK, CODE_X, CODE_Y = 16, 24, 16, 12
U8 = npt.NDArray[np.uint8]


def stamp(luma: U8, n: int) -> None:
    for bit in range(BITS):
        x = CODE_X + bit * BLOCK
        luma[CODE_Y : CODE_Y + BLOCK, x : x + BLOCK] = 16 if (n >> bit) & 1 else 235


def read_stamp(luma: U8) -> int:
    """The frame number in a decoded picture of any size (the code scales with the picture)."""
    s = luma.shape[1] / W
    n = 0
    for bit in range(BITS):
        cx = int((CODE_X + bit * BLOCK + BLOCK / 2) * s)
        cy = int((CODE_Y + BLOCK / 2) * s)
        r = max(1, int(BLOCK * s / 4))
        if luma[cy - r : cy + r, cx - r : cx + r].mean() < 125:
            n |= 1 << bit
    return n


def text_mask(width: int, height: int) -> npt.NDArray[np.bool_]:
    """The text region at `width`x`height`: all but the camera overlay and the frame code."""
    s = width / W
    r = overlay_rect(width, height, *CAMERA, LAYOUT, "bottom-right")
    m = int(8 * s) + 2
    mask = np.ones((height, width), bool)
    mask[max(0, r.y - m) : r.y + r.h + m, max(0, r.x - m) : r.x + r.w + m] = False
    mask[: int((CODE_Y + BLOCK + 8) * s) + 2, : int((CODE_X + BITS * BLOCK + 8) * s) + 2] = False
    return mask


def psnr(a: U8, b: U8) -> float:
    d = a.astype(np.float32) - b.astype(np.float32)
    mse = float(np.vdot(d, d)) / d.size
    return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


def page_clip(page: U8, bitrate: int) -> list[bytes]:
    """`CLIP_S` seconds of the page at `SCREEN_FPS`, each frame stamped with its number, encoded
    once as a browser's H.264 sender would (x264, zerolatency, Constrained Baseline, ABR at
    `bitrate`, a key frame every `CLIP_KEY_S`) and cached on disk. A clip rather than a live
    encoder: the publisher's quality is then the same on every run (a live encoder in this busy
    process drops frames and re-sends key frames, and the passthrough reference moves with it)."""

    def encode() -> list[av.Packet]:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = W, H, "yuv420p"
        ctx.time_base = fractions.Fraction(1, SCREEN_FPS)
        ctx.framerate = fractions.Fraction(SCREEN_FPS, 1)
        ctx.bit_rate = bitrate
        ctx.gop_size = SCREEN_FPS * CLIP_KEY_S
        ctx.options = {"preset": "veryfast", "tune": "zerolatency", "bframes": "0"}
        ctx.qmin = CLIP_QMIN
        ctx.profile = "Baseline"
        out: list[av.Packet] = []
        for n in range(CLIP_S * SCREEN_FPS):
            frame = av.VideoFrame(W, H, "yuv420p")
            y, u, v = plane_views(frame)
            y[...] = page
            stamp(y, n)
            u[...] = 128
            v[...] = 128
            frame.pts, frame.time_base = n, ctx.time_base
            out.extend(ctx.encode(frame))
        out.extend(ctx.encode(None))
        return out

    key = f"stamped-page-{W}x{H}-h264-{SCREEN_FPS}-{CLIP_S}-{CLIP_KEY_S}-{bitrate}-q{CLIP_QMIN}-v1"
    return content.cached(key, encode)


class PageTrack(MediaStreamTrack):
    """The page clip, looped at `SCREEN_FPS`; remembers when each frame number was sent. A key
    frame request (PLI/FIR from the server) is answered as a live sender would: the next frame
    sent is the clip's next key frame (the frame numbers jump ahead, the timing does not)."""

    kind = "video"

    def __init__(self, payloads: list[bytes]) -> None:
        super().__init__()
        self.payloads = payloads
        self.keys = [i for i, p in enumerate(payloads) if is_keyframe("H264", p)]
        self.made: dict[int, float] = {}
        self.key_requests = 0
        self._n = 0  # frames sent: the clock
        self._i = 0  # position in the clip
        self._start: float | None = None

    def request_keyframe(self) -> None:
        self.key_requests += 1
        self._i = next((k for k in self.keys if k >= self._i % len(self.payloads)), 0)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n / SCREEN_FPS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        i = self._i % len(self.payloads)
        packet = av.Packet(self.payloads[i])
        packet.pts = self._n * (90_000 // SCREEN_FPS)
        packet.time_base = fractions.Fraction(1, 90_000)
        self.made[i] = time.monotonic()
        self._n += 1
        self._i = i + 1
        return packet


@dataclass
class Path:
    """One viewer's frames in one measuring window."""

    name: str
    codec: str
    rung: str
    arrivals: dict[int, float] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)


@dataclass
class Sink:
    """Where a viewer's decoded frames go: the current window's `Path`, or nowhere between."""

    path: Path | None = None


@dataclass
class Row:
    name: str
    codec: str
    rung: str
    size: str
    fps: float
    psnr_mean: float
    psnr_median: float
    psnr_min: float
    latency_ms: float
    added_ms: float | None


async def _receive(
    track_ready: asyncio.Future[Any],
    sink: Sink,
    references: dict[tuple[int, int], tuple[U8, npt.NDArray[np.bool_]]],
    psnr_every: int,
) -> None:
    track = await asyncio.wait_for(track_ready, 30)
    k = 0
    while True:
        frame = await track.recv()
        now = time.monotonic()
        path = sink.path
        if path is None:
            continue
        luma = plane_views(frame)[0] if frame.format.name == "yuv420p" else None
        if luma is None:
            luma = plane_views(frame.reformat(format="yuv420p"))[0]
        path.size = (frame.width, frame.height)
        path.arrivals.setdefault(read_stamp(luma), now)
        k += 1
        if k % psnr_every == 0:
            ref = references.get((frame.width, frame.height))
            if ref is not None:
                page, mask = ref
                path.scores.append(psnr(luma[mask], page[mask]))


def _references(page: U8) -> dict[tuple[int, int], tuple[U8, npt.NDArray[np.bool_]]]:
    """The page (code region masked out) at every size a rung may have, area-scaled."""
    out = {(W, H): (page, text_mask(W, H))}
    for height in (720, 540, 360, 270, 180):
        width = round(W * height / H / 2) * 2
        frame = av.VideoFrame(W, H, "yuv420p")
        y, u, v = plane_views(frame)
        y[...], u[...], v[...] = page, 128, 128
        scaled = Scaler(width, height, buffers=1).scale(frame)
        out[(width, height)] = (plane_views(scaled)[0].copy(), text_mask(width, height))
    return out


async def _viewer(
    http: fan.Http, path: str, token: str, codec: str
) -> tuple[Any, dict[str, Any], asyncio.Future[Any]]:
    pc = new_pc()
    fan.prefer(pc.addTransceiver("video", direction="recvonly"), codec)
    track_ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pc.on("track", lambda t: track_ready.done() or track_ready.set_result(t))
    answer = await http.post(path, await fan.offer(pc), token)
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return pc, answer, track_ready


async def measure(
    base: str,
    *,
    settle_s: float = 6.0,
    window_s: float = 10.0,
    rung_settle_s: float = 3.0,
    publisher_bps: int = 2_500_000,
    all_rungs: bool = True,
    vp8: bool = True,
    h264: bool = True,
    psnr_every: int = 2,
    broadcaster: str | None = None,
) -> list[Row]:
    """Run the scene against the server at `base`; one row per path (passthrough first).

    Two viewers decode at a time (this process also runs the publisher's 1080p encoder): the
    passthrough viewer and one composite viewer, moved from rung to rung (`PUT .../quality`), each
    rung measured in its own window next to the passthrough frames of that window; then a VP8
    composite viewer for its top rung.
    """
    page = content.document_page(W, H, 11)
    references = _references(page)
    screen = PageTrack(page_clip(page, publisher_bps))
    http = fan.Http(base)
    pcs: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    rows: list[Row] = []
    try:
        started = await http.post(
            f"{PREFIX}/session/start",
            {
                "title": "composite e2e",
                "streams": ["screen", "camera"],
                "quality": {
                    "screen": {"preset": "1080p", "fps": SCREEN_FPS, "content_hint": "text"},
                    "camera": {"preset": "720p", "fps": 30},
                },
            },
            # A broadcaster's API token: given (the tests' server has one), or signed up.
            token=broadcaster or await http.account(),
        )
        token, session_id = started["broadcaster_token"], started["session"]["id"]
        streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
        # The camera too is a pre-encoded loop (720p30 H.264, `bench.bench_fanout`'s clip).
        camera = fan.ClipTrack("video", fan.session_clips("H264")["camera"], 30, 90_000)
        for kind, track in (("screen", screen), ("camera", camera)):
            pcs.append(
                await fan.publish(
                    http, f"{PREFIX}/stream/{streams[kind]}/signal/offer", track, "H264", token
                )
            )
        aiortc_hooks.forward_keyframe_requests(
            pcs[0].getTransceivers()[0].sender, screen.request_keyframe
        )

        async def open_viewer(
            codec: str, composite: bool
        ) -> tuple[Sink, Any, tuple[str, str], list[str]]:
            joined = await http.post(f"{PREFIX}/session/{session_id}/join", {})
            viewer_token = joined["viewer_token"]
            if composite:
                await http.put(
                    f"{PREFIX}/session/{session_id}/preferences",
                    {
                        "enabled_streams": ["screen", "camera"],
                        "mode": "composite",
                        "pip": {"corner": "bottom-right", "size_pct": LAYOUT.size_pct},
                    },
                    viewer_token,
                )
                url = f"{PREFIX}/session/{session_id}/composite/signal/offer"
            else:
                url = f"{PREFIX}/stream/{streams['screen']}/signal/offer"
            pc, answer, track_ready = await _viewer(http, url, viewer_token, codec)
            pcs.append(pc)
            rungs = await pin(answer["pc_id"], viewer_token, "source")
            sink = Sink()
            tasks.append(asyncio.create_task(_receive(track_ready, sink, references, psnr_every)))
            return sink, pc, (answer["pc_id"], viewer_token), rungs

        async def pin(pc_id: str, viewer_token: str, rung: str) -> list[str]:
            # Pinned to a rung: adaptation must not move a measuring viewer.
            state = await http.put(
                f"{PREFIX}/session/{session_id}/quality",
                {"pc_id": pc_id, "quality": rung},
                viewer_token,
            )
            return [r["name"] for r in state["rungs"]]

        passthrough, _, _, _ = await open_viewer("H264", False)
        for codec in [c for c, on in (("H264", h264), ("VP8", vp8)) if on]:
            sink, pc, who, rungs = await open_viewer(codec, True)
            settle = settle_s
            for rung in rungs if all_rungs and codec == "H264" else ["source"]:
                if rung != "source":
                    await pin(*who, rung)
                await asyncio.sleep(settle)
                settle = rung_settle_s
                reference = Path("passthrough", "H264", "source")
                measured = Path("composite", codec, rung)
                passthrough.path, sink.path = reference, measured
                await asyncio.sleep(window_s)
                passthrough.path = sink.path = None
                if not rows:
                    rows.append(_row(reference, None, screen.made, window_s))
                rows.append(_row(measured, reference, screen.made, window_s))
            await pc.close()
    finally:
        for t in tasks:
            t.cancel()
        for pc in pcs:
            await pc.close()
    return rows


def _row(path: Path, reference: Path | None, made: dict[int, float], window_s: float) -> Row:
    latencies = [t - made[n] for n, t in path.arrivals.items() if n in made]
    added = (
        [t - reference.arrivals[n] for n, t in path.arrivals.items() if n in reference.arrivals]
        if reference is not None
        else []
    )
    nan = float("nan")
    return Row(
        path.name,
        path.codec,
        path.rung,
        f"{path.size[0]}x{path.size[1]}",
        round(len(path.arrivals) / window_s, 1),
        round(statistics.mean(path.scores), 1) if path.scores else nan,
        round(statistics.median(path.scores), 1) if path.scores else nan,
        round(min(path.scores), 1) if path.scores else nan,
        round(statistics.median(latencies) * 1e3, 1) if latencies else nan,
        round(statistics.median(added) * 1e3, 1) if added else None,
    )


HEADER = (
    "| path | codec | rung | size | fps | text PSNR dB (mean / median / min) | latency ms (median) | "
    "added vs passthrough ms (median) |\n| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"
)


def render_row(r: Row | dict[str, Any]) -> str:
    d = r if isinstance(r, dict) else r.__dict__
    added = "-" if d["added_ms"] is None else f"{d['added_ms']}"
    return (
        f"| {d['name']} | {d['codec']} | {d['rung']} | {d['size']} | {d['fps']} | "
        f"{d['psnr_mean']} / {d['psnr_median']} / {d['psnr_min']} | {d['latency_ms']} | {added} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=6.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--publisher-bps", type=int, default=2_500_000)
    parser.add_argument("--top-only", action="store_true", help="only the top composite rung")
    args = parser.parse_args(argv)
    server = fan.start_server("ours", "H264,VP8", 2_500_000)
    try:
        rows = asyncio.run(
            measure(
                server.base,
                settle_s=args.settle,
                window_s=args.window,
                publisher_bps=args.publisher_bps,
                all_rungs=not args.top_only,
            )
        )
    finally:
        server.stop()
    print(
        f"static 1080p document page (frame number coded in its margin), publisher aiortc H.264 "
        f"{args.publisher_bps / 1e6:.1f} Mb/s at {SCREEN_FPS} fps, content hint text; camera "
        f"720p30 at 25 % bottom-right; one {args.window:g} s window per rung (after {args.settle:g} "
        f"s, then 3 s per rung switch), each next to the passthrough frames of that window. One "
        f"frame at {SCREEN_FPS} fps = {1000 / SCREEN_FPS:.1f} ms.\n"
    )
    print(HEADER)
    for row in rows:
        print(render_row(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
