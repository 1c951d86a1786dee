"""The readable numpy implementation of the kernels: the source of truth for ``_fast``.

Both modules expose the same API (``pip_plane``, ``PipPlan``, ``corner_scores``; see
``compositor.kernel_api``) with the same integer semantics, so the test suite asserts bit-exact
equality between them.

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

from collections.abc import Sequence

import av
import numpy as np
import numpy.typing as npt

from compositor.coefficients import TOTAL_BITS
from compositor.kernel_api import I32, U8, PlaneSpec
from compositor.planes import plane_views

NAME = "reference"
SIMD_CHOICES = ("auto", "baseline")
MAX_PLANES = 4


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


class PipPlan:
    """``pip_plane`` for up to four planes of fixed sizes: the same contract as ``_fast.PipPlan``.

    The reference has no tables to build, so a plan only checks its planes' geometry once and
    then, per frame, that the arrays match it before calling ``pip_plane`` per plane. ``simd`` is
    accepted (and checked) so callers need not know which implementation they hold.
    """

    def __init__(self, planes: Sequence[PlaneSpec], *, simd: str = "auto") -> None:
        if simd not in SIMD_CHOICES:
            raise ValueError(f"simd must be one of {SIMD_CHOICES}, got {simd!r}")
        checked: list[PlaneSpec] = []
        for p in planes:
            if len(p) != 12:
                raise ValueError(f"each plane needs 12 items, got {len(p)}")
            (big_h, big_w), (ch, cw), rx, ry, vo, vw, ho, hw = p[:8]
            if big_h < 1 or big_w < 1 or ch < 1 or cw < 1:
                raise ValueError(
                    f"plane sizes must be positive, got {(big_h, big_w)} and {(ch, cw)}"
                )
            h, w = len(vo), len(ho)
            if rx < 0 or ry < 0 or rx + w > big_w or ry + h > big_h:
                raise ValueError(f"rectangle {rx},{ry} {w}x{h} outside plane {big_w}x{big_h}")
            for name, offsets, weights, source in (
                ("vertical", vo, vw, ch),
                ("horizontal", ho, hw, cw),
            ):
                if len(offsets) and (
                    offsets.min() < 0 or offsets.max() + weights.shape[1] > source
                ):
                    raise ValueError(f"{name}: a tap window reads outside the source plane")
            checked.append(p)
        if not 1 <= len(checked) <= MAX_PLANES:
            raise ValueError(f"a plan holds 1..{MAX_PLANES} planes, got {len(checked)}")
        self._planes = checked

    def run(
        self,
        out: Sequence[U8],
        background: Sequence[U8] | None,
        fill: Sequence[int] | None,
        camera: Sequence[U8],
    ) -> None:
        """Resample ``camera[i]`` into ``out[i]`` over ``background[i]`` or ``fill[i]``."""
        n = len(self._planes)
        if len(out) != n or len(camera) != n:
            raise ValueError(f"the plan has {n} planes, got {len(out)} out / {len(camera)} camera")
        if background is not None and len(background) != n:
            raise ValueError(f"the plan has {n} planes, got {len(background)} background")
        if fill is not None and len(fill) != n:
            raise ValueError(f"the plan has {n} planes, got {len(fill)} fill values")
        for i, p in enumerate(self._planes):
            _expect(out[i], "out", p[0])
            if not out[i].flags.writeable:
                raise ValueError("out must be writable")
            _expect(camera[i], "camera", p[1])
            if background is not None:
                _expect(background[i], "background", p[0])
            value = -1 if fill is None else fill[i]
            if not -1 <= value <= 255:
                raise ValueError(f"fill must be -1 (keep) or 0..255, got {value}")
        for i, p in enumerate(self._planes):
            pip_plane(
                out[i],
                None if background is None else background[i],
                -1 if fill is None else fill[i],
                camera[i],
                *p[2:],
            )

    def run_frames(
        self,
        out: av.VideoFrame,
        background: av.VideoFrame | None,
        fill: Sequence[int] | None,
        camera: av.VideoFrame,
    ) -> None:
        """``run`` on three-plane yuv420p ``av.VideoFrame``s instead of numpy plane views."""
        if len(self._planes) != 3:
            raise ValueError(
                f"run_frames needs a three-plane plan, this one has {len(self._planes)}"
            )
        self.run(
            _frame_planes(out, "out", self._planes, camera=False),
            None
            if background is None
            else _frame_planes(background, "background", self._planes, camera=False),
            fill,
            _frame_planes(camera, "camera", self._planes, camera=True),
        )


def _expect(array: U8, name: str, shape: tuple[int, int]) -> None:
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D uint8 array")
    if array.shape != tuple(shape):
        raise ValueError(f"{name} has shape {array.shape}, the plan expects {tuple(shape)}")


def _frame_planes(
    frame: av.VideoFrame, name: str, planes: Sequence[PlaneSpec], *, camera: bool
) -> tuple[U8, U8, U8]:
    if frame.format.name != "yuv420p":
        raise ValueError(f"{name} must be a yuv420p frame, got {frame.format.name}")
    views = plane_views(frame)
    for i, (view, p) in enumerate(zip(views, planes, strict=True)):
        h, w = p[1] if camera else p[0]
        if view.shape != (h, w):
            raise ValueError(
                f"{name} plane {i} is {view.shape[1]}x{view.shape[0]}, the plan expects {w}x{h}"
            )
    return views
