"""Composite replay render speed (× realtime): `server.replay.render` over recordings made like the
recorder's (VP8 Matroska, a 1280x720 text-like screen and a 640x360 moving camera, the camera
stopped for a stretch), with the Cython kernels beside the numpy reference in the same run, and the
share of the time that is decode + encode (the same render with composing skipped is not possible,
so a plain transcode of the screen recording is the floor shown).

    .venv/bin/python -m bench.replay_render [--seconds 20]
"""

from __future__ import annotations

import argparse
import fractions
import tempfile
import time
from pathlib import Path

import av

from compositor import Layout
from server.replay import Segment, render
from tests.media_helpers import write_recording


def transcode_floor(src: Path, out: Path) -> float:
    """Seconds to decode the screen recording and encode it as `render` does (no compositing)."""
    t0 = time.monotonic()
    with av.open(str(src)) as inp, av.open(str(out), "w", format="mp4") as dst:
        stream = dst.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "tune": "stillimage"}
        for i, frame in enumerate(inp.decode(video=0)):
            frame.pts, frame.time_base = i, fractions.Fraction(1, 15)
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    s = args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        screen = write_recording(d / "screen.mkv", "screen", s, (1280, 720))
        cam1 = write_recording(d / "cam1.mkv", "camera", s * 0.4, (640, 360))
        cam2 = write_recording(d / "cam2.mkv", "camera", s * 0.4, (640, 360))
        segments = [
            Segment("screen", screen, 0.0, s),
            Segment("camera", cam1, 0.0, s * 0.4),
            Segment("camera", cam2, s * 0.6, s * 0.4),
        ]
        print(f"{s:.0f} s session, 1280x720 screen + 640x360 camera (off 40 %-60 %), 15 fps")
        floor = transcode_floor(screen, d / "floor.mp4")
        print(f"  decode+encode floor (screen only) {s / floor:6.2f}x realtime")
        for kernels in ("fast", "reference"):
            made = render(segments, d / f"{kernels}.mp4", Layout(), kernels=kernels)
            print(
                f"  composite replay, {kernels:9s} kernels {made['speed_x_realtime']:6.2f}x realtime"
                f" ({made['render_s']:.2f} s for {made['duration_s']:.0f} s)"
            )


if __name__ == "__main__":
    main()
