"""Pixels for multistream: screen + camera picture-in-picture and scaling on yuv420p frames.

The frames API (``Layout``, ``compose``, ``scale``, ``Compositor``, ``Scaler``) runs on the Cython
kernels in ``_fast`` when built, else on the numpy reference; ``MULTISTREAM_COMPOSITOR=reference``
forces the reference.
"""

from compositor.frames import Compositor, Scaler, compose, plane_views, scale
from compositor.layout import CORNER_CHOICES, CORNERS, Corner, CornerChoice, Layout, Rect
from compositor.placement import Placement

__all__ = [
    "CORNERS",
    "CORNER_CHOICES",
    "Compositor",
    "Corner",
    "CornerChoice",
    "Layout",
    "Placement",
    "Rect",
    "Scaler",
    "compose",
    "plane_views",
    "scale",
]
