"""Synthetic yuv420p frames for the compositor tests (no fixtures: plain functions)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from compositor import plane_views


def make_frame(
    width: int, height: int, seed: int = 0, pts: int | None = None, flat: int | None = None
) -> av.VideoFrame:
    """A yuv420p frame of random (or flat) content; padding bytes are left as PyAV allocated them."""
    frame = av.VideoFrame(width, height, "yuv420p")
    rng = np.random.default_rng(seed)
    for plane in plane_views(frame):
        if flat is None:
            plane[...] = rng.integers(0, 256, plane.shape, dtype=np.uint8)
        else:
            plane[...] = flat
    if pts is not None:
        frame.pts = pts
        frame.time_base = Fraction(1, 90000)
    return frame


def planes_of(frame: av.VideoFrame) -> list[np.ndarray]:
    return [p.copy() for p in plane_views(frame)]
