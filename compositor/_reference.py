"""The readable numpy implementation of the kernels: the source of truth for ``_fast``.

Both modules expose the same two functions with the same integer semantics, so the test suite
asserts bit-exact equality between them.

``pip_plane`` resamples ``camera`` into the rectangle at (``rx``, ``ry``) of ``out`` whose size is
given by the tap tables (vertical pass first, kept exact in integers, then the horizontal pass with
one rounding shift). Outside the rectangle ``out`` receives ``background`` (same shape), or
``fill`` when there is no background (``fill=-1`` leaves ``out`` untouched). With masks, each
overlay pixel is ``blend(bg, blend(camera, colour, border), alpha)`` where
``blend(a, b, m) = round((a * (255 - m) + b * m) / 255)``; ``spans`` is only a speed hint.

``corner_scores`` sums absolute horizontal and vertical neighbour differences of a plane over a
sampled grid inside each rectangle (every ``step``-th row; in sampled row ``k`` every ``step``-th
column starting at ``k % step``): a cheap measure of how much text or edge detail an overlay there
would hide.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from compositor.coefficients import TOTAL_BITS

U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]
NAME = "reference"


def _blend(
    a: npt.NDArray[np.int64], b: npt.NDArray[np.int64] | int, m: U8
) -> npt.NDArray[np.int64]:
    mm = m.astype(np.int64)
    x = a * (255 - mm) + b * mm
    return (x + 127) // 255


def pip_plane(
    out: U8,
    background: U8 | None,
    fill: int,
    camera: U8,
    rx: int,
    ry: int,
    v_offsets: I32,
    v_weights: I32,
    h_offsets: I32,
    h_weights: I32,
    alpha: U8 | None,
    border: U8 | None,
    spans: I32 | None,
    colour: int,
) -> None:
    h, w = len(v_offsets), len(h_offsets)
    if background is not None and background.shape != out.shape:
        raise ValueError(f"background shape {background.shape} != out shape {out.shape}")
    if rx < 0 or ry < 0 or rx + w > out.shape[1] or ry + h > out.shape[0]:
        raise ValueError(f"rectangle {rx},{ry} {w}x{h} outside plane {out.shape[1]}x{out.shape[0]}")
    cam = camera.astype(np.int64)
    inter = np.zeros((h, cam.shape[1]), dtype=np.int64)
    for t in range(v_weights.shape[1]):
        inter += v_weights[:, t, None].astype(np.int64) * cam[v_offsets + t, :]
    acc = np.zeros((h, w), dtype=np.int64)
    for t in range(h_weights.shape[1]):
        acc += h_weights[None, :, t].astype(np.int64) * inter[:, h_offsets + t]
    scaled = (acc + (1 << (TOTAL_BITS - 1))) >> TOTAL_BITS
    region = (slice(ry, ry + h), slice(rx, rx + w))
    if alpha is not None and border is not None:
        if background is not None:
            under = background[region].astype(np.int64)
        elif fill >= 0:
            under = np.full((h, w), fill, dtype=np.int64)
        else:
            under = out[region].astype(np.int64)
        scaled = _blend(under, _blend(scaled, colour, border), alpha)
    if background is not None:
        np.copyto(out, background)
    elif fill >= 0:
        out[...] = fill
    out[region] = scaled.astype(np.uint8)


def corner_scores(plane: U8, rects: I32, step: int) -> npt.NDArray[np.int64]:
    if step < 1:
        raise ValueError(f"step must be positive, got {step}")
    scores = np.zeros(len(rects), dtype=np.int64)
    p = plane.astype(np.int64)
    for i, (x, y, w, h) in enumerate(rects.tolist()):
        if x < 0 or y < 0 or x + w > p.shape[1] or y + h > p.shape[0]:
            raise ValueError(f"rectangle {x},{y} {w}x{h} outside plane {p.shape[1]}x{p.shape[0]}")
        total = 0
        for row, yy in enumerate(range(y, y + h - 1, step)):
            # Stagger the columns row by row so every column phase gets sampled: a fixed
            # stride would miss all edges of text drawn on a matching pixel grid.
            xs = np.arange(x + row % step, x + w - 1, step)
            centre = p[yy, xs]
            total += int(
                np.abs(centre - p[yy, xs + 1]).sum() + np.abs(centre - p[yy + 1, xs]).sum()
            )
        scores[i] = total
    return scores
