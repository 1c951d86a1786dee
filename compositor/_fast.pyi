"""Type stub for the compiled kernels (``_fast.pyx``): the ``kernel_api`` contract plus the SIMD
switches. ``tests/test_compositor_stub.py`` runs mypy's stubtest so this cannot drift."""

from collections.abc import Sequence
from typing import Final

import av
import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

from compositor.kernel_api import I32, U8, PlaneSpec

NAME: Final[str]
SIMD_CHOICES: Final[tuple[str, ...]]
HAVE_AVX2: Final[bool]
DEFAULT_SIMD: Final[str]
SIMD: Final[str]

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
    *,
    simd: str = ...,
) -> None: ...

@disjoint_base  # a cdef class: no class can inherit from it and another
class PipPlan:
    def __init__(self, planes: Sequence[PlaneSpec], *, simd: str = ...) -> None: ...
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

def corner_scores(plane: U8, rects: I32, step: int) -> npt.NDArray[np.int64]: ...
