"""Zero-copy numpy views of a yuv420p ``av.VideoFrame``'s planes (used by the frames API and
the numpy reference kernels alike)."""

from __future__ import annotations

import av
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
Planes = tuple[U8, U8, U8]
_U8 = np.dtype(np.uint8)


def plane_views(frame: av.VideoFrame) -> Planes:
    """Writable (height, width) views of a yuv420p frame's planes, strides as PyAV pads them."""
    if frame.format.name != "yuv420p":
        raise ValueError(f"expected a yuv420p frame, got {frame.format.name}")
    # One ndarray constructor per plane (buffer protocol, no copy): the cheapest view numpy offers.
    y, u, v = (
        np.ndarray((p.height, p.width), _U8, p, 0, (p.line_size, 1))  # type: ignore[arg-type]
        for p in frame.planes
    )
    return y, u, v
