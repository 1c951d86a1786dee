"""Publisher pictures that cost what real ones cost: multi-packet VP8 frames at ~1.5 Mb/s.

A flat colour or a thin moving bar encodes to one small RTP packet per frame and hides every
congestion problem. Here the *screen* is a page of glyph-like text that scrolls (plus a ticking
clock-like block), the *camera* a smooth random texture panning under a moving highlight — both
change every frame. Pictures are cut from big precomputed planes, so a frame costs a copy (~0.1 ms),
not a redraw. The same pictures feed the aiortc publisher (`ContentTrack`) and Chromium's fake camera
(`write_y4m`), so both publishers send the same content.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from tests.media_helpers import PatternTrack

WIDTH, HEIGHT = 1280, 720
SCROLL_PX = 2  # per frame: a slow scroll, like reading along
PAGE_ROWS = 4 * HEIGHT
INSET = (384, 216)  # the screen's embedded video


@cache
def _page() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tall light page with lines of dark 'words' of 7x11 glyph cells, and coloured spans."""
    rng = np.random.default_rng(13)
    y = np.full((PAGE_ROWS, WIDTH), 236, np.uint8)
    u = np.full((PAGE_ROWS // 2, WIDTH // 2), 128, np.uint8)
    v = np.full((PAGE_ROWS // 2, WIDTH // 2), 128, np.uint8)
    glyphs = rng.random((64, 11, 7)) < 0.38  # 64 'letters', each a random 7x11 bitmap
    for top in range(8, PAGE_ROWS - 20, 18):
        x = 16 + int(rng.integers(0, 4)) * 28  # indentation
        line_end = int(rng.integers(WIDTH // 3, WIDTH - 16))
        while x < line_end:
            word = int(rng.integers(2, 10))
            colour = rng.random() < 0.2  # some words highlighted, like syntax colouring
            for _ in range(word):
                if x + 8 > WIDTH:
                    break
                cell = glyphs[int(rng.integers(0, 64))]
                y[top : top + 11, x : x + 7][cell] = 40
                x += 8
            if colour:
                span = slice(max(0, (x - 8 * word) // 2), x // 2)
                u[top // 2 : top // 2 + 6, span] = 90
                v[top // 2 : top // 2 + 6, span] = 170
            x += 8
    return y, u, v


@cache
def _texture() -> np.ndarray:
    """A smooth random texture twice the frame size (a camera's surfaces and shading)."""
    rng = np.random.default_rng(7)
    coarse = rng.random((2 * HEIGHT // 16 + 2, 2 * WIDTH // 16 + 2)).astype(np.float32)
    fine = np.kron(coarse, np.ones((16, 16), np.float32))[: 2 * HEIGHT, : 2 * WIDTH]
    # Box-blur the blocks into gradients, then add a little grain.
    for axis in (0, 1):
        fine = (
            fine + np.roll(fine, 4, axis) + np.roll(fine, 8, axis) + np.roll(fine, 12, axis)
        ) / 4
    grain = rng.normal(0, 0.03, fine.shape).astype(np.float32)
    return np.clip(40 + 170 * (fine + grain), 16, 235).astype(np.uint8)


def screen_picture(n: int) -> np.ndarray:
    """Frame `n` of the scrolling text page (yuv420p, HEIGHT*3/2 x WIDTH)."""
    y, u, v = _page()
    top = (n * SCROLL_PX) % (PAGE_ROWS - HEIGHT) & ~1
    luma = y[top : top + HEIGHT].copy()
    # A block of changing digits (a clock, a counter): small, but new every frame.
    rng = np.random.default_rng(n)
    luma[24:48, WIDTH - 200 : WIDTH - 24] = np.where(rng.random((24, 176)) < 0.4, 40, 236)
    # An embedded video in a corner of the page (a demo clip, a presenter's preview).
    tex = _texture()
    x = (n * 5) % (WIDTH - INSET[0])
    luma[-INSET[1] - 24 : -24, -INSET[0] - 24 : -24] = tex[200 : 200 + INSET[1], x : x + INSET[0]]
    chroma_u = u[top // 2 : top // 2 + HEIGHT // 2]
    chroma_v = v[top // 2 : top // 2 + HEIGHT // 2]
    return np.concatenate(
        [luma, chroma_u.reshape(HEIGHT // 4, WIDTH), chroma_v.reshape(HEIGHT // 4, WIDTH)]
    )


def camera_picture(n: int) -> np.ndarray:
    """Frame `n` of the panning texture with a moving highlight (yuv420p)."""
    tex = _texture()
    t = n / 30
    x = int((np.sin(t * 0.7) * 0.5 + 0.5) * WIDTH)
    y = int((np.cos(t * 0.5) * 0.5 + 0.5) * HEIGHT)
    luma = tex[y : y + HEIGHT, x : x + WIDTH].copy()
    cx = int((t * 160) % WIDTH)
    luma[HEIGHT // 3 : 2 * HEIGHT // 3, cx : cx + 120] //= 2
    luma[HEIGHT // 3 : 2 * HEIGHT // 3, cx : cx + 120] += 110
    u = np.full((HEIGHT // 2, WIDTH // 2), 110, np.uint8)
    v = tex[y // 2 : y // 2 + HEIGHT // 2, x // 2 : x // 2 + WIDTH // 2] // 4 + 118
    return np.concatenate([luma, u.reshape(HEIGHT // 4, WIDTH), v.reshape(HEIGHT // 4, WIDTH)])


PICTURES = {"screen": screen_picture, "camera": camera_picture}


class ContentTrack(PatternTrack):
    """An aiortc video source of the lab's screen or camera pictures at `fps`."""

    def __init__(self, kind: str, fps: float = 30) -> None:
        super().__init__(f"lab-{kind}", WIDTH, HEIGHT, fps)
        self._draw = PICTURES[kind]

    def picture(self, n: int) -> np.ndarray:
        return self._draw(n)

    @property
    def frames_sent(self) -> int:
        """Frames handed to the encoder so far (the source rate a viewer is compared with)."""
        return self._n


def write_y4m(path: Path, kind: str, frames: int = 60, fps: int = 30) -> Path:
    """The same pictures as a Y4M clip for Chromium's `--use-file-for-fake-video-capture` (loops)."""
    draw = PICTURES[kind]
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            fh.write(b"FRAME\n" + draw(n).tobytes())
    return path
