"""Real-looking synthetic sources for benchmarks: a page of text, a camera, a voice-like signal.

A flat pattern compresses to one RTP packet per frame and flatters any forwarding path; these
sources are built to look, to an encoder, like what a broadcaster sends: a 1080p page of small
text that scrolls (every frame changes, sharp edges everywhere), a camera picture with sensor noise
and motion, and Opus audio of a tone plus noise. ``encode_clip`` turns a source into a loop of
pre-encoded packets (first frame a key frame), so a benchmark publisher sends realistic bitrates
without paying for an encoder in the measuring process.
"""

from __future__ import annotations

import fractions
import hashlib
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
WORDS = [
    "session",
    "stream",
    "viewer",
    "composite",
    "packet",
    "encoder",
    "layout",
    "camera",
    "screen",
    "overlay",
    "keyframe",
    "bitrate",
    "latency",
    "receiver",
    "transport",
    "quality",
    "preset",
    "corner",
    "payment",
    "order",
    "chat",
    "replay",
    "def",
    "class",
    "return",
    "await",
    "async",
    "import",
    "from",
    "self",
    "None",
    "True",
    "False",
    "lambda",
    "yield",
]


def text_page(width: int, height: int, seed: int = 1, scale: float = 0.55) -> U8:
    """A light page covered in lines of small dark text (luma only), taller than the screen so
    it can scroll. Uses OpenCV's Hershey font (the bench extra); each line is different."""
    import cv2

    rng = np.random.default_rng(seed)
    page_h = height * 2
    page = np.full((page_h, width), 235, np.uint8)
    line_h = max(12, int(34 * scale))
    y = line_h
    while y < page_h - 4:
        x, words = 12 + int(rng.integers(0, 40)), []
        while True:
            word = str(rng.choice(WORDS))
            (w, _), _ = cv2.getTextSize(
                " ".join([*words, word]), cv2.FONT_HERSHEY_SIMPLEX, scale, 1
            )
            if x + w > width - 12:
                break
            words.append(word)
        cv2.putText(
            page, " ".join(words), (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 20, 1, cv2.LINE_AA
        )
        y += line_h
    return page


def document_page(width: int, height: int, seed: int = 11, scale: float = 0.6) -> U8:
    """A page as a document or web article shows it: a centred column of ~15 px text in
    paragraphs (ragged right edges, blank lines between), on a white page; luma only."""
    import cv2

    rng = np.random.default_rng(seed)
    page = np.full((height, width), 245, np.uint8)
    left, right = width // 6, width - width // 6
    line_h = int(40 * scale)
    y = 60
    while y < height - 40:
        for _ in range(int(rng.integers(3, 8))):
            if y >= height - 40:
                break
            words: list[str] = []
            limit = right - int(rng.integers(0, (right - left) // 4))
            while True:
                word = str(rng.choice(WORDS))
                (w, _), _ = cv2.getTextSize(
                    " ".join([*words, word]), cv2.FONT_HERSHEY_SIMPLEX, scale, 1
                )
                if left + w > limit:
                    break
                words.append(word)
            cv2.putText(
                page,
                " ".join(words),
                (left, y),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                25,
                1,
                cv2.LINE_AA,
            )
            y += line_h
        y += line_h  # paragraph gap
    return page


class ScreenSource:
    """1080p-style screen: a text page scrolling ``speed`` px per frame, grey chroma, plus a
    small noisy 'video' box in a corner (what a shared browser tab with an embed looks like)."""

    def __init__(self, width: int, height: int, speed: int = 2, seed: int = 1) -> None:
        self.width, self.height, self.speed = width, height, speed
        self.page = text_page(width, height, seed)
        self.rng = np.random.default_rng(seed + 7)

    def frame(self, n: int) -> av.VideoFrame:
        w, h = self.width, self.height
        top = (n * self.speed) % (self.page.shape[0] - h)
        frame = av.VideoFrame(w, h, "yuv420p")
        y, u, v = (
            np.ndarray((p.height, p.width), np.uint8, p, 0, (p.line_size, 1))  # type: ignore[arg-type]
            for p in frame.planes
        )
        y[...] = self.page[top : top + h]
        bw, bh = w // 6, h // 6
        y[h - bh - 16 : h - 16, w - bw - 16 : w - 16] = self.rng.integers(
            40, 200, (bh, bw), np.uint8
        )
        u[...] = 128
        v[...] = 128
        return frame


class CameraSource:
    """Camera-like: smooth lit background, a moving bright shape and per-frame sensor noise."""

    def __init__(self, width: int, height: int, seed: int = 3) -> None:
        self.width, self.height = width, height
        self.rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width]
        self.base = (90 + 50 * np.sin(xx / 97.0) * np.cos(yy / 71.0)).astype(np.float32)
        self.yy, self.xx = yy, xx

    def frame(self, n: int) -> av.VideoFrame:
        w, h = self.width, self.height
        cx, cy = w / 2 + w / 4 * np.sin(n / 20), h / 2 + h / 5 * np.cos(n / 27)
        blob = 90 * np.exp(-(((self.xx - cx) / (w / 10)) ** 2 + ((self.yy - cy) / (h / 7)) ** 2))
        luma = self.base + blob + self.rng.normal(0, 4, (h, w)).astype(np.float32)
        frame = av.VideoFrame(w, h, "yuv420p")
        y, u, v = (
            np.ndarray((p.height, p.width), np.uint8, p, 0, (p.line_size, 1))  # type: ignore[arg-type]
            for p in frame.planes
        )
        y[...] = np.clip(luma, 0, 255).astype(np.uint8)
        u[...] = 110
        v[...] = 150
        return frame


def encode_clip(
    source: ScreenSource | CameraSource,
    codec: str,
    fps: int,
    frames: int,
    bitrate: int,
) -> list[av.Packet]:
    """``frames`` frames of ``source`` encoded once (VP8 or H.264, realtime settings, one key
    frame first), to be looped by a publisher. Bitrate is a target, as a live sender would run."""
    name = {"vp8": "libvpx", "h264": "libx264"}[codec.lower()]
    ctx = av.CodecContext.create(name, "w")
    ctx.width, ctx.height, ctx.pix_fmt = source.width, source.height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, fps)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.bit_rate = bitrate
    ctx.gop_size = frames + 1  # the loop's first frame is its only key frame
    if name == "libvpx":
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "end-usage": "cbr",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "buf_size": str(bitrate),
            "max-intra-rate": "600",  # key frame <= 6 frames' budget, as a live sender caps it
        }
    else:
        ctx.options = {"preset": "veryfast", "tune": "zerolatency", "bframes": "0"}
        ctx.profile = "Baseline"
    out: list[av.Packet] = []
    for n in range(frames):
        frame = source.frame(n)
        frame.pts, frame.time_base = n, ctx.time_base
        out.extend(ctx.encode(frame))
    out.extend(ctx.encode(None))
    return out


def opus_clip(seconds: float, bitrate: int = 48_000) -> list[av.Packet]:
    """Opus at 48 kHz, 20 ms packets, of a wavering tone plus noise (never silence, which Opus
    would shrink to a few bytes)."""
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48_000, "stereo", "s16"
    ctx.bit_rate = bitrate
    ctx.time_base = fractions.Fraction(1, 48_000)
    rng = np.random.default_rng(5)
    out: list[av.Packet] = []
    for i, chunk in enumerate(_audio_chunks(seconds, rng)):
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, i * 960, ctx.time_base
        out.extend(ctx.encode(frame))
    out.extend(ctx.encode(None))
    return out


def _audio_chunks(seconds: float, rng: np.random.Generator) -> Iterator[npt.NDArray[np.int16]]:
    for i in range(int(seconds * 50)):
        t = (np.arange(960) + i * 960) / 48_000
        tone = 6000 * np.sin(2 * np.pi * (220 + 40 * np.sin(t * 3)) * t)
        mono = (tone + rng.normal(0, 1500, 960)).astype(np.int16)
        yield np.repeat(mono[None, :], 2, axis=0).reshape(1, -1)


CACHE = Path(tempfile.gettempdir()) / "multistream-bench-clips"


def cached(key: str, make: Callable[[], list[av.Packet]]) -> list[bytes]:
    """The payloads of ``make()``, kept on disk under ``key`` (encoding 1080p takes a while)."""
    path = CACHE / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".pickle")
    if path.exists():
        data: list[bytes] = pickle.loads(path.read_bytes())
        return data
    payloads = [bytes(p) for p in make()]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(payloads))
    tmp.replace(path)
    return payloads
