"""Where the camera goes on the screen: pure integer geometry, no pixels.

Every coordinate and size that lands on a yuv420p frame is even, so the half-size chroma planes get
exactly the same rectangle divided by two and luma/chroma never drift apart by a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
CornerChoice = Literal["top-left", "top-right", "bottom-left", "bottom-right", "auto"]

CORNERS: tuple[Corner, ...] = get_args(Corner)
CORNER_CHOICES: tuple[CornerChoice, ...] = get_args(CornerChoice)
# The picture-in-picture limits and defaults are defined here, where the geometry enforces them;
# `server.domain` re-exports them into the product vocabulary (the compositor may not import server).
MIN_SIZE_PCT: Final = 10
MAX_SIZE_PCT: Final = 40
DEFAULT_CORNER: Final[CornerChoice] = "bottom-right"
DEFAULT_SIZE_PCT: Final = 25


@dataclass(frozen=True, slots=True)
class Rect:
    """An axis-aligned rectangle in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    def halved(self) -> Rect:
        """The same rectangle on a 4:2:0 chroma plane (exact when all fields are even)."""
        return Rect(self.x // 2, self.y // 2, (self.w + 1) // 2, (self.h + 1) // 2)


@dataclass(frozen=True, slots=True)
class Layout:
    """How one viewer wants the composite: camera corner and width as a share of the screen.

    ``size_pct`` is the overlay width in percent of the screen width (10–40). ``margin_pct`` is the
    gap to the frame edges in percent of the screen's shorter side. ``radius_pct`` rounds the overlay
    corners (percent of the overlay's shorter side, 0 = square, opaque) and ``border_px`` draws a
    ring of ``border_yuv`` colour inside the overlay edge.
    """

    corner: CornerChoice = DEFAULT_CORNER
    size_pct: int = DEFAULT_SIZE_PCT
    margin_pct: int = 2
    radius_pct: int = 12
    border_px: int = 0
    border_yuv: tuple[int, int, int] = (235, 128, 128)

    def __post_init__(self) -> None:
        if self.corner not in CORNER_CHOICES:
            raise ValueError(
                f"corner must be one of {', '.join(CORNER_CHOICES)}, got {self.corner!r}"
            )
        _check_int("size_pct", self.size_pct, MIN_SIZE_PCT, MAX_SIZE_PCT)
        _check_int("margin_pct", self.margin_pct, 0, 10)
        _check_int("radius_pct", self.radius_pct, 0, 50)
        _check_int("border_px", self.border_px, 0, 32)
        if len(self.border_yuv) != 3:
            raise ValueError("border_yuv must be a (Y, U, V) triple")
        for value in self.border_yuv:
            _check_int("border_yuv", value, 0, 255)

    @property
    def opaque(self) -> bool:
        """True when the overlay is a plain rectangle (no alpha mask needed)."""
        return self.radius_pct == 0 and self.border_px == 0


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def _even_floor(value: int) -> int:
    return value - (value & 1)


def overlay_rect(
    screen_w: int, screen_h: int, camera_w: int, camera_h: int, layout: Layout, corner: Corner
) -> Rect:
    """Rectangle of the camera overlay on a ``screen_w`` x ``screen_h`` canvas.

    Width is ``size_pct`` of the screen width, height keeps the camera aspect ratio; both are even
    and at least 2, the rectangle sits ``margin`` pixels from the chosen corner and is clamped
    inside the frame (a tall camera on a short screen shrinks to fit, keeping its aspect).
    """
    for name, value in (("screen_w", screen_w), ("screen_h", screen_h)):
        if value < 2:
            raise ValueError(f"{name} must be at least 2 for an overlay, got {value}")
    if camera_w < 1 or camera_h < 1:
        raise ValueError(f"camera size must be positive, got {camera_w}x{camera_h}")
    max_w, max_h = _even_floor(screen_w), _even_floor(screen_h)
    margin = _even_floor(min(screen_w, screen_h) * layout.margin_pct // 100)
    w = max(2, _even_floor(screen_w * layout.size_pct // 100))
    h = max(2, _even_floor((w * camera_h + camera_w // 2) // camera_w))
    if h > max_h:
        h = max_h
        w = max(2, min(max_w, _even_floor((h * camera_w + camera_h // 2) // camera_h)))
    margin_x = min(margin, _even_floor((max_w - w) // 2))
    margin_y = min(margin, _even_floor((max_h - h) // 2))
    left = corner.endswith("left")
    top = corner.startswith("top")
    x = margin_x if left else _even_floor(screen_w - w - margin_x)
    y = margin_y if top else _even_floor(screen_h - h - margin_y)
    return Rect(max(0, x), max(0, y), w, h)


def fit_rect(canvas_w: int, canvas_h: int, src_w: int, src_h: int) -> Rect:
    """Largest even rectangle with the source aspect ratio centred in the canvas (letterbox)."""
    if canvas_w < 1 or canvas_h < 1 or src_w < 1 or src_h < 1:
        raise ValueError(
            f"sizes must be positive: canvas {canvas_w}x{canvas_h}, src {src_w}x{src_h}"
        )
    if canvas_w * src_h == canvas_h * src_w:
        return Rect(0, 0, canvas_w, canvas_h)
    if canvas_w * src_h < canvas_h * src_w:
        w = canvas_w
        h = (canvas_w * src_h + src_w // 2) // src_w
    else:
        h = canvas_h
        w = (canvas_h * src_w + src_h // 2) // src_h
    w = max(min(canvas_w, 2), min(_even_floor(w), canvas_w))
    h = max(min(canvas_h, 2), min(_even_floor(h), canvas_h))
    x = _even_floor((canvas_w - w) // 2)
    y = _even_floor((canvas_h - h) // 2)
    return Rect(x, y, w, h)
