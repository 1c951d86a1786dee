"""The interface both kernel modules (``_fast`` and ``_reference``) implement, for the type checker.

``frames`` talks to whichever module ``backend.load_kernels`` picked only through these
protocols, so both must offer the same plan-based API: build a ``PipPlan`` once per
(layout, sizes), then one ``run``/``run_frames`` call per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]

# One plane of a plan: ((out_h, out_w), (camera_h, camera_w), rx, ry, v_offsets, v_weights,
# h_offsets, h_weights, alpha, border, spans, colour) -- the arguments of ``pip_plane`` that do
# not change from frame to frame.
PlaneSpec = tuple[
    tuple[int, int],
    tuple[int, int],
    int,
    int,
    I32,
    I32,
    I32,
    I32,
    U8 | None,
    U8 | None,
    I32 | None,
    int,
]


class PipPlanLike(Protocol):
    """``pip_plane`` for 1-4 planes of fixed sizes, validated once, run per frame."""

    def run(
        self,
        out: Sequence[U8],
        background: Sequence[U8] | None,
        fill: Sequence[int] | None,
        camera: Sequence[U8],
    ) -> None: ...

    def run_frames(
        self,
        out: av.VideoFrame,
        background: av.VideoFrame | None,
        fill: Sequence[int] | None,
        camera: av.VideoFrame,
    ) -> None: ...


class PipPlanFactory(Protocol):
    def __call__(self, planes: Sequence[PlaneSpec], *, simd: str = ...) -> PipPlanLike: ...


class Kernels(Protocol):
    """A kernel module: its name, the one-shot ``pip_plane``, ``PipPlan`` and ``corner_scores``."""

    NAME: str

    # The class both modules export, seen as what it is to a caller: a plan factory.
    @property
    def PipPlan(self) -> PipPlanFactory: ...

    def pip_plane(
        self,
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
    ) -> None: ...

    def corner_scores(self, plane: U8, rects: I32, step: int) -> npt.NDArray[np.int64]: ...
