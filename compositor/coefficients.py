"""Fixed-point resampling taps per (source size, target size), shared by both kernels.

Downscaling uses an exact area (box) filter: output pixel ``j`` averages the source interval
``[j*n/m, (j+1)*n/m)``, each source pixel weighted by its overlap. Upscaling uses centre-aligned
bilinear interpolation. Weights are integers that sum exactly to ``1 << bits`` per output pixel
(cumulative rounding), so the kernels are pure integer arithmetic and both implementations agree
bit for bit.

Vertical taps use ``VERTICAL_BITS`` = 8 so a weighted sum of 8-bit samples fits in 16 bits
(255 * 256 = 65280) and vectorises on 16-bit lanes; horizontal taps use ``HORIZONTAL_BITS`` = 14, so
the final sum (65280 * 16384 + rounding) still fits a signed 32-bit accumulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

VERTICAL_BITS = 8
HORIZONTAL_BITS = 14
TOTAL_BITS = VERTICAL_BITS + HORIZONTAL_BITS


@dataclass(frozen=True, slots=True)
class Taps:
    """``offsets[j]`` is the first source index of output ``j``; ``weights[j, t]`` its tap weights.

    Every row of ``weights`` sums to ``1 << bits``; ``offsets[j] + taps <= source`` always holds.
    """

    source: int
    target: int
    bits: int
    offsets: npt.NDArray[np.int32]
    weights: npt.NDArray[np.int32]

    @property
    def taps(self) -> int:
        return int(self.weights.shape[1])

    @property
    def identity(self) -> bool:
        return self.source == self.target


def _round_div(num: npt.NDArray[np.int64], den: int) -> npt.NDArray[np.int64]:
    return (2 * num + den) // (2 * den)


def make_taps(source: int, target: int, bits: int) -> Taps:
    """Taps resampling ``source`` samples into ``target`` samples (area down, bilinear up)."""
    if source < 1 or target < 1:
        raise ValueError(f"sizes must be positive, got {source} -> {target}")
    one = 1 << bits
    if target <= source:
        # Positions are measured in units of 1/(source*target) of the line: source pixel x spans
        # [x*target, (x+1)*target), output j spans [j*source, (j+1)*source).
        starts = np.arange(target, dtype=np.int64) * source
        first = starts // target
        last = ((starts + source - 1) // target).astype(np.int64)
        ntaps = int((last - first).max()) + 1
        weights = np.zeros((target, ntaps), dtype=np.int64)
        for t in range(ntaps):
            x = first + t
            lo = np.maximum(x * target, starts)
            hi = np.minimum((x + 1) * target, starts + source)
            covered_before = np.clip(lo - starts, 0, source)
            covered_after = np.clip(hi - starts, 0, source)
            valid = (x <= last) & (hi > lo)
            w = _round_div(covered_after * one, source) - _round_div(covered_before * one, source)
            weights[:, t] = np.where(valid, w, 0)
        offsets = first
    else:
        # Centre-aligned: output j samples source position (j + 0.5) * source / target - 0.5.
        j = np.arange(target, dtype=np.int64)
        num = (2 * j + 1) * source - target
        den = 2 * target
        num = np.maximum(num, 0)
        offsets = num // den
        frac = _round_div((num % den) * one, den)
        ntaps = 2 if source > 1 else 1
        weights = np.zeros((target, ntaps), dtype=np.int64)
        if ntaps == 1:
            weights[:, 0] = one
            offsets = np.zeros(target, dtype=np.int64)
        else:
            at_end = offsets >= source - 1
            frac = np.where(at_end, 0, frac)
            offsets = np.minimum(offsets, source - 1)
            weights[:, 0] = one - frac
            weights[:, 1] = frac
    ntaps = weights.shape[1]
    # Keep every window inside the source: slide it left and move the weights with it.
    overflow = np.maximum(offsets + ntaps - source, 0)
    if overflow.any():
        for k in np.flatnonzero(overflow).tolist():
            shift = int(overflow[k])
            row = weights[k].copy()
            weights[k] = 0
            weights[k, shift:] = row[: ntaps - shift]
            offsets[k] -= shift
    if not (weights.sum(axis=1) == one).all():
        raise AssertionError("tap weights must sum to one")
    return Taps(
        source=source,
        target=target,
        bits=bits,
        offsets=np.ascontiguousarray(offsets, dtype=np.int32),
        weights=np.ascontiguousarray(weights, dtype=np.int32),
    )


@dataclass(frozen=True, slots=True)
class PlaneTaps:
    """Vertical and horizontal taps for resampling one plane."""

    vertical: Taps
    horizontal: Taps


def plane_taps(src_w: int, src_h: int, dst_w: int, dst_h: int) -> PlaneTaps:
    return PlaneTaps(
        vertical=make_taps(src_h, dst_h, VERTICAL_BITS),
        horizontal=make_taps(src_w, dst_w, HORIZONTAL_BITS),
    )
