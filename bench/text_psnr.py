"""Is small text still readable in the composite? PSNR of the screen's text region, per encoder setting.

    .venv/bin/python -m bench.text_psnr                    # every setting, 1080p (~3 min)
    .venv/bin/python -m bench.text_psnr --seconds 2 --only today,x264-veryfast-15

The media path, replayed frame by frame without the network (same codecs, same compositor):

1. a 1080p page of small text (``bench.content.text_page``; static, or ``--scroll`` px/frame) is
   encoded by the **publisher** (VP8 realtime at ``--publisher-bps``, as an aiortc/Chromium sender
   does) and decoded: that decoded picture is what a passthrough viewer sees (column
   *passthrough*) and what the server's compositor receives;
2. the server composes it with a 720p camera (noise and motion; 25 % bottom-right, rounded) through
   ``compositor.Compositor`` and encodes the composite with the **setting** of the row;
3. the viewer decodes it. PSNR (luma) of the text region -- the page outside the overlay
   rectangle -- against the original page, averaged over the frames after the first second.

The ``today`` row mirrors ``server/media/codecs.create_context`` for H.264 (x264 ultrafast,
zerolatency, Constrained Baseline, maxrate = bufsize = bitrate, composite at the camera's 30 fps).
Other rows change one thing at a time: frame rate 15 (twice the bits per frame), slower presets,
``tune=stillimage``, capped CRF. ``ms/frame`` is the encoder's own CPU time per frame (single thread)
on this machine, so quality is never quoted without its cost.
"""

from __future__ import annotations

import argparse
import fractions
import statistics
import sys
import time
from dataclasses import dataclass, field

import av
import numpy as np
import numpy.typing as npt

from bench import content
from compositor import Compositor, Layout, plane_views
from compositor.layout import overlay_rect

U8 = npt.NDArray[np.uint8]
W, H = 1920, 1080
CAMERA = (1280, 720)
LAYOUT = Layout(corner="bottom-right", size_pct=25, radius_pct=12)


@dataclass(frozen=True)
class Setting:
    """One composite encoder configuration (libx264 unless ``codec`` says otherwise)."""

    name: str
    fps: int = 30
    preset: str = "ultrafast"
    tune: str = "zerolatency"
    crf: int | None = None  # capped CRF (maxrate/bufsize still cap it) instead of ABR
    bitrate: int = 2_500_000
    extra: dict[str, str] = field(default_factory=dict)

    def context(self, width: int, height: int) -> av.CodecContext:
        ctx = av.CodecContext.create("libx264", "w")
        options = {
            "preset": self.preset,
            "tune": self.tune,
            "bufsize": str(self.bitrate),
            "maxrate": str(self.bitrate),
            "x264-params": f"keyint={self.fps * 4}:repeat-headers=1",  # as codecs.py
            **self.extra,
        }
        if self.crf is not None:
            options["crf"] = str(self.crf)
        ctx.options = options
        ctx.profile = "Baseline"
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        if self.crf is None:
            ctx.bit_rate = self.bitrate
        ctx.framerate = fractions.Fraction(self.fps, 1)
        ctx.time_base = fractions.Fraction(1, self.fps)
        ctx.thread_count = 1
        return ctx


SETTINGS = [
    Setting("today"),  # = server/media/codecs.py: ultrafast, zerolatency, 30 fps, 2.5 Mb/s
    Setting("x264-ultrafast-15", fps=15),
    Setting("x264-superfast-15", fps=15, preset="superfast"),
    Setting("x264-veryfast-30", preset="veryfast"),
    Setting("x264-veryfast-15", fps=15, preset="veryfast"),
    Setting(
        "x264-veryfast-15-stillimage", fps=15, preset="veryfast", tune="stillimage,zerolatency"
    ),
    Setting("x264-faster-15-stillimage", fps=15, preset="faster", tune="stillimage,zerolatency"),
    Setting("x264-veryfast-15-crf18", fps=15, preset="veryfast", crf=18),
    Setting("x264-veryfast-10", fps=10, preset="veryfast"),
    # Adaptive quantisation and psy-rd move bits from flat areas into texture and are off in
    # ultrafast: on a page of text they cost PSNR. tune=psnr turns both off at any preset.
    Setting("x264-veryfast-15-psnr", fps=15, preset="veryfast", tune="psnr,zerolatency"),
    Setting("x264-superfast-15-psnr", fps=15, preset="superfast", tune="psnr,zerolatency"),
    Setting("x264-ultrafast-15-crf20", fps=15, crf=20),
    Setting(
        "x264-veryfast-15-psnr-crf20", fps=15, preset="veryfast", tune="psnr,zerolatency", crf=20
    ),
]


def psnr(a: U8, b: U8) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def text_mask() -> npt.NDArray[np.bool_]:
    """The page outside the camera overlay (plus a margin for the border and chroma bleed)."""
    r = overlay_rect(W, H, *CAMERA, LAYOUT, "bottom-right")
    mask = np.ones((H, W), bool)
    mask[max(0, r.y - 8) : r.y + r.h + 8, max(0, r.x - 8) : r.x + r.w + 8] = False
    return mask


def publisher_frames(
    seconds: float, scroll: int, bitrate: int, dense: bool
) -> tuple[list[U8], list[av.VideoFrame]]:
    """Original luma pages and the publisher's decoded frames (30 fps), VP8 realtime."""
    if dense:
        page = content.text_page(W, H, seed=11)
    else:
        page = np.concatenate([content.document_page(W, H, 11), content.document_page(W, H, 12)])
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.time_base, enc.framerate = fractions.Fraction(1, 30), fractions.Fraction(30, 1)
    enc.bit_rate = bitrate
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    dec = av.CodecContext.create("vp8", "r")
    originals, decoded = [], []
    for n in range(int(seconds * 30)):
        frame = av.VideoFrame(W, H, "yuv420p")
        y, u, v = plane_views(frame)
        top = (n * scroll) % (page.shape[0] - H)
        y[...] = page[top : top + H]
        u[...] = 128
        v[...] = 128
        frame.pts, frame.time_base = n, enc.time_base
        originals.append(y.copy())
        for packet in enc.encode(frame):
            for out in dec.decode(packet):
                decoded.append(out.reformat(format="yuv420p"))
    return originals, decoded


def composite_psnr(
    setting: Setting,
    originals: list[U8],
    published: list[av.VideoFrame],
    mask: npt.NDArray[np.bool_],
) -> dict[str, float]:
    camera = content.CameraSource(*CAMERA)
    compositor = Compositor(LAYOUT, size=(W, H), buffers=1)
    enc = setting.context(W, H)
    dec = av.CodecContext.create("h264", "r")
    step = 30 // setting.fps
    scores, bits, enc_s, frames = [], 0, 0.0, 0
    skip = setting.fps  # the first second: rate control settling
    for i, n in enumerate(range(0, min(len(published), len(originals)), step)):
        out = compositor.compose(published[n], camera.frame(n))
        out.pts, out.time_base = i, enc.time_base
        t0 = time.thread_time()  # CPU time: the machine is shared, wall time would include waits
        packets = enc.encode(out)
        enc_s += time.thread_time() - t0
        frames += 1
        for packet in packets:
            bits += packet.size * 8
            for got in dec.decode(packet):
                y = plane_views(got.reformat(format="yuv420p"))[0]
                k = int(got.pts) if got.pts is not None else i
                if k >= skip:
                    scores.append(psnr(y[mask], originals[k * step][mask]))
    return {
        "psnr_db": statistics.mean(scores) if scores else float("nan"),
        "psnr_min_db": min(scores) if scores else float("nan"),
        "mbps": bits / (frames / setting.fps) / 1e6,
        "ms_per_frame": enc_s / frames * 1e3,
    }


def passthrough_psnr(
    originals: list[U8], published: list[av.VideoFrame], mask: npt.NDArray[np.bool_]
) -> float:
    """What a passthrough viewer sees: the publisher's decoded frames, after the first second."""
    pairs = list(zip(published, originals, strict=False))[30:]
    return statistics.mean(psnr(plane_views(f)[0][mask], o[mask]) for f, o in pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--scroll", type=int, default=0, help="page scroll, px per 30 fps frame")
    parser.add_argument("--publisher-bps", type=int, default=2_500_000)
    parser.add_argument("--only", help="comma-separated setting names")
    parser.add_argument(
        "--dense", action="store_true", help="a page packed edge to edge with text (harder)"
    )
    args = parser.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else None
    mask = text_mask()
    originals, published = publisher_frames(
        args.seconds, args.scroll, args.publisher_bps, args.dense
    )
    passthrough = passthrough_psnr(originals, published, mask)
    print(
        f"1080p {'dense text' if args.dense else 'document'} page "
        f"({'static' if not args.scroll else f'scrolling {args.scroll} px/frame'}), "
        f"publisher VP8 {args.publisher_bps / 1e6:.1f} Mb/s 30 fps, {args.seconds:g} s; "
        f"PSNR of the text region (luma, outside the 25 % camera overlay) vs the original page\n"
    )
    print(
        "| rung | setting | fps | composite PSNR dB (mean / min) | passthrough PSNR dB | Mb/s | encode ms/frame |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for setting in SETTINGS:
        if wanted and setting.name not in wanted:
            continue
        r = composite_psnr(setting, originals, published, mask)
        print(
            f"| 1080p | {setting.name} (preset {setting.preset}, tune {setting.tune}"
            f"{'' if setting.crf is None else f', crf {setting.crf}'}) | {setting.fps} | "
            f"{r['psnr_db']:.1f} / {r['psnr_min_db']:.1f} | {passthrough:.1f} | {r['mbps']:.2f} | "
            f"{r['ms_per_frame']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
