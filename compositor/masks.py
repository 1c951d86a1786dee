"""8-bit coverage masks for a rounded, optionally bordered overlay, built once per layout.

A pixel of the overlay is ``blend(screen, blend(camera, border_colour, border), alpha)``: ``alpha``
is the anti-aliased coverage of the rounded rectangle, ``border`` the coverage of the ring between it
and the rectangle inset by ``border_px``. ``spans[i] = (l, r)`` marks the run of row ``i`` where
alpha is 255 and border is 0, which the kernels copy without blending.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class OverlayMask:
    alpha: U8
    border: U8
    spans: npt.NDArray[np.int32]


def _coverage(w: int, h: int, inset: float, radius: float) -> npt.NDArray[np.float64]:
    """Anti-aliased coverage (0..1) of a rounded rectangle inset from a w x h box (signed distance)."""
    half_w, half_h = w / 2 - inset, h / 2 - inset
    if half_w <= 0 or half_h <= 0:
        return np.zeros((h, w))
    radius = max(0.0, min(radius, half_w, half_h))
    xs = np.abs(np.arange(w) + 0.5 - w / 2) - (half_w - radius)
    ys = np.abs(np.arange(h) + 0.5 - h / 2) - (half_h - radius)
    qx = xs[None, :]
    qy = ys[:, None]
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    inside = np.minimum(np.maximum(qx, qy), 0)
    distance = outside + inside - radius
    return np.clip(0.5 - distance, 0.0, 1.0)


def _to_u8(coverage: npt.NDArray[np.float64]) -> U8:
    return np.ascontiguousarray(np.rint(coverage * 255), dtype=np.uint8)


def _spans(alpha: U8, border: U8) -> npt.NDArray[np.int32]:
    opaque = (alpha == 255) & (border == 0)
    h = opaque.shape[0]
    spans = np.zeros((h, 2), dtype=np.int32)
    for i in range(h):
        idx = np.flatnonzero(opaque[i])
        if idx.size and idx[-1] - idx[0] + 1 == idx.size:
            spans[i] = (idx[0], idx[-1] + 1)
    return spans


def _halve(mask: U8) -> U8:
    """Chroma-plane mask: rounded mean of each 2x2 block (edges replicated for odd sizes)."""
    h, w = mask.shape
    padded = np.pad(mask, ((0, h & 1), (0, w & 1)), mode="edge").astype(np.uint16)
    total = padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2]
    return np.ascontiguousarray((total + 2) >> 2, dtype=np.uint8)


def overlay_masks(
    w: int, h: int, radius_pct: int, border_px: int
) -> tuple[OverlayMask, OverlayMask]:
    """Masks for the luma plane (w x h) and for each chroma plane (half size)."""
    radius = min(w, h) * radius_pct / 100
    outer = _coverage(w, h, 0.0, radius)
    if border_px:
        inner = _coverage(w, h, float(border_px), max(0.0, radius - border_px))
        ring = np.clip(outer - inner, 0.0, 1.0)
        border_cov = np.divide(ring, outer, out=np.zeros_like(ring), where=outer > 0)
    else:
        border_cov = np.zeros((h, w))
    alpha, border = _to_u8(outer), _to_u8(border_cov)
    alpha_c, border_c = _halve(alpha), _halve(border)
    return (
        OverlayMask(alpha, border, _spans(alpha, border)),
        OverlayMask(alpha_c, border_c, _spans(alpha_c, border_c)),
    )
