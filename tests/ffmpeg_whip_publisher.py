"""Publish a synthetic H.264 + Opus source with FFmpeg's `whip` muxer (through PyAV).

Run as a separate process (`python -m tests.ffmpeg_whip_publisher URL TOKEN SECONDS [CERT KEY]`):
the muxer does its HTTP exchange and ICE/DTLS handshake inside blocking FFmpeg calls, which would
stall the server's event loop if it ran in the test process. CERT/KEY (PEM) are passed to the
muxer's `cert_file`/`key_file` options — see tests/test_whip_ffmpeg.py for why.
"""

from __future__ import annotations

import fractions
import logging
import sys
import time

import av
import numpy as np


def main(url: str, token: str, seconds: float, cert: str | None, key: str | None) -> None:
    logging.basicConfig(level=logging.WARNING)
    av.logging.set_level(av.logging.ERROR)  # FFmpeg's own error lines, via Python logging
    options = {"authorization": token}
    if cert and key:
        options.update(cert_file=cert, key_file=key)
    out = av.open(url, mode="w", format="whip", options=options)
    video = out.add_stream("libx264", rate=30)
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    # WebRTC H.264: constrained baseline, no B-frames, a keyframe every second.
    video.options = {"profile": "baseline", "tune": "zerolatency", "bf": "0", "g": "30"}
    audio = out.add_stream("libopus", rate=48000)
    audio.layout = "stereo"
    start = time.monotonic()
    frames = int(seconds * 30)
    for i in range(frames):
        image = np.zeros((240, 320, 3), np.uint8)
        image[:, :, 0] = 200  # red: the viewer checks the colour survives the trip
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
        for packet in video.encode(frame):
            out.mux(packet)
        tone = (np.sin(np.arange(1600) * 0.05) * 3000).astype(np.int16)
        samples = np.repeat(tone[None, :], 2, axis=0).reshape(1, -1)
        aframe = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        aframe.sample_rate, aframe.pts = 48000, i * 1600
        for packet in audio.encode(aframe):
            out.mux(packet)
        time.sleep(max(0.0, start + (i + 1) / 30 - time.monotonic()))
    out.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], float(args[2]), *(args[3:5] if len(args) >= 5 else (None, None)))
