"""The frames API: compose and scale yuv420p ``av.VideoFrame``s through the kernels, zero-copy.

Planes are read and written in place through numpy views of PyAV's padded buffers. A
``Compositor`` (one per distinct layout) and a ``Scaler`` (one per output size) keep their tap
tables, masks and output frames between calls, so the steady state allocates nothing. Output
frames are handed out from a small ring: a returned frame stays valid until ``buffers`` further
calls, which is enough for an encoder that finishes one frame before asking for the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from compositor.backend import load_kernels
from compositor.coefficients import PlaneTaps, plane_taps
from compositor.kernel_api import U8, Kernels, PipPlanLike, PlaneSpec
from compositor.layout import CORNERS, Corner, Layout, Rect, fit_rect, overlay_rect
from compositor.masks import OverlayMask, overlay_masks
from compositor.placement import PREFERENCE, Placement
from compositor.planes import Planes, plane_views

__all__ = ["BLACK", "Compositor", "Scaler", "compose", "plane_views", "scale"]

BLACK = (16, 128, 128)
SCORE_STEP = 4


def _as_yuv420p(frame: av.VideoFrame) -> av.VideoFrame:
    """Decoders here emit yuv420p; anything else takes PyAV's (slower) conversion once."""
    return frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")


def _new_frame(width: int, height: int) -> tuple[av.VideoFrame, Planes]:
    frame = av.VideoFrame(width, height, "yuv420p")
    planes = plane_views(frame)
    for plane, value in zip(planes, BLACK, strict=True):
        plane.fill(value)  # faults the pages in now, not on the first hot frame
    return frame, planes


def _copy_timing(out: av.VideoFrame, source: av.VideoFrame) -> None:
    out.pts = source.pts
    if source.time_base is not None:
        out.time_base = source.time_base


class _FrameRing:
    """Round-robin of preallocated output frames of one size."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"buffers must be at least 1, got {count}")
        self._count = count
        self._size: tuple[int, int] | None = None
        self._frames: list[tuple[av.VideoFrame, Planes]] = []
        self._next = 0

    def take(self, width: int, height: int) -> tuple[av.VideoFrame, Planes]:
        if self._size != (width, height):
            self._size = (width, height)
            self._frames = [_new_frame(width, height) for _ in range(self._count)]
            self._next = 0
        item = self._frames[self._next]
        self._next = (self._next + 1) % self._count
        return item


def _chroma_size(width: int, height: int) -> tuple[int, int]:
    return (width + 1) // 2, (height + 1) // 2


@dataclass(frozen=True, slots=True)
class _Resample:
    """Draw one source frame into ``rect`` of the canvas, with an optional overlay mask.

    ``plan`` holds, for all three planes, every kernel argument that does not change between
    frames, validated (and, in ``_fast``, turned into SIMD tables) once: a frame then costs one
    call. Both kernel modules offer the same ``PipPlan``. ``copy`` marks the one case that needs
    no kernel at all (source, rect and canvas the same size, no mask): a plain plane copy.
    """

    rect: Rect
    luma: PlaneTaps
    chroma: PlaneTaps
    masks: tuple[OverlayMask, OverlayMask] | None
    copy: bool
    plan: PipPlanLike

    @staticmethod
    def build(
        kernels: Kernels,
        canvas: tuple[int, int],
        source: tuple[int, int],
        rect: Rect,
        layout: Layout | None,
    ) -> _Resample:
        masks = None
        if layout is not None and not layout.opaque:
            masks = overlay_masks(rect.w, rect.h, layout.radius_pct, layout.border_px)
        copy = masks is None and source == canvas == (rect.w, rect.h)
        colour = layout.border_yuv if layout is not None else BLACK
        luma = plane_taps(source[0], source[1], rect.w, rect.h)
        crect = rect.halved()
        chroma = plane_taps(*_chroma_size(*source), crect.w, crect.h)
        plan = kernels.PipPlan(_plane_specs(canvas, source, rect, luma, chroma, masks, colour))
        return _Resample(rect, luma, chroma, masks, copy, plan)

    def run(
        self,
        out: Planes,
        source: Planes,
        background: Planes | None,
        fill: tuple[int, int, int] | None,
    ) -> None:
        if self.copy and background is None:
            for dst, src in zip(out, source, strict=True):
                np.copyto(dst, src)
            return
        self.plan.run(out, background, fill, source)

    def run_frames(
        self,
        out: av.VideoFrame,
        source: av.VideoFrame,
        background: av.VideoFrame | None,
        fill: tuple[int, int, int] | None,
    ) -> None:
        """``run`` on whole frames: the compiled plan reads their planes without numpy views."""
        if self.copy and background is None:
            self.run(plane_views(out), plane_views(source), None, fill)
            return
        self.plan.run_frames(out, background, fill, source)


def _plane_specs(
    canvas: tuple[int, int],
    source: tuple[int, int],
    rect: Rect,
    luma: PlaneTaps,
    chroma: PlaneTaps,
    masks: tuple[OverlayMask, OverlayMask] | None,
    colour: tuple[int, int, int],
) -> list[PlaneSpec]:
    """The ``PipPlan`` arguments for Y, U and V: sizes as (height, width), rect, taps, mask."""
    canvas_c, source_c, crect = _chroma_size(*canvas), _chroma_size(*source), rect.halved()
    specs: list[PlaneSpec] = []
    for i in range(3):
        (cw, ch), (sw, sh), r, taps = (
            (canvas, source, rect, luma) if i == 0 else (canvas_c, source_c, crect, chroma)
        )
        mask = None if masks is None else masks[0 if i == 0 else 1]
        specs.append(
            (
                (ch, cw),
                (sh, sw),
                r.x,
                r.y,
                taps.vertical.offsets,
                taps.vertical.weights,
                taps.horizontal.offsets,
                taps.horizontal.weights,
                None if mask is None else mask.alpha,
                None if mask is None else mask.border,
                None if mask is None else mask.spans,
                colour[i],
            )
        )
    return specs


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything precomputed for one (canvas, screen size, camera size, corner) combination."""

    canvas: tuple[int, int]
    screen: _Resample | None
    camera: _Resample | None
    candidates: dict[Corner, Rect]


def _make_plan(
    kernels: Kernels,
    canvas: tuple[int, int],
    screen: tuple[int, int] | None,
    camera: tuple[int, int] | None,
    layout: Layout,
    corner: Corner,
) -> _Plan:
    width, height = canvas
    screen_step = camera_step = None
    candidates: dict[Corner, Rect] = {}
    if screen is not None:
        screen_step = _Resample.build(
            kernels, canvas, screen, fit_rect(width, height, *screen), None
        )
        if camera is not None:
            candidates = {c: overlay_rect(width, height, *camera, layout, c) for c in CORNERS}
            camera_step = _Resample.build(kernels, canvas, camera, candidates[corner], layout)
    elif camera is not None:
        camera_step = _Resample.build(
            kernels, canvas, camera, fit_rect(width, height, *camera), None
        )
    return _Plan(canvas, screen_step, camera_step, candidates)


def _frame_size(frame: av.VideoFrame | None) -> tuple[int, int] | None:
    return None if frame is None else (frame.width, frame.height)


class Compositor:
    """Composes screen + camera PiP for one layout, reusing buffers, tap tables and masks.

    Not thread-safe: use one per worker. ``layout`` may be reassigned at any time; the next
    ``compose`` rebuilds what depends on it.
    """

    def __init__(
        self,
        layout: Layout | None = None,
        *,
        size: tuple[int, int] | None = None,
        buffers: int = 2,
        kernels: str | None = None,
        placement: Placement | None = None,
    ) -> None:
        self._layout = layout if layout is not None else Layout()
        self._size = size
        self._ring = _FrameRing(buffers)
        self._kernels = load_kernels(kernels)
        self._placement = placement if placement is not None else Placement()
        self._plan: _Plan | None = None
        self._plan_key: tuple[object, ...] | None = None

    @property
    def implementation(self) -> str:
        return str(self._kernels.NAME)

    @property
    def layout(self) -> Layout:
        return self._layout

    @layout.setter
    def layout(self, layout: Layout) -> None:
        if not isinstance(layout, Layout):
            raise ValueError(f"layout must be a compositor.Layout, got {type(layout).__name__}")
        if layout != self._layout:
            self._layout = layout
            self._plan = self._plan_key = None
            self._placement.reset()

    def set_layout(self, layout: Layout) -> None:
        self.layout = layout

    @property
    def corner(self) -> Corner | None:
        """The corner the camera went to on the last composite (resolves ``auto``)."""
        if self._layout.corner != "auto":
            return self._layout.corner
        return self._placement.corner

    def compose(
        self,
        screen: av.VideoFrame | None,
        camera: av.VideoFrame | None,
        out: av.VideoFrame | None = None,
    ) -> av.VideoFrame:
        """Screen with the camera overlaid (either may be ``None``) as a yuv420p frame.

        The canvas is ``out``'s size if given, else the Compositor's ``size``, else the screen's,
        else the camera's; a source of another size is letterboxed into it. ``pts`` and
        ``time_base`` come from the screen when present (it drives the output), else the camera.
        """
        if screen is None and camera is None:
            raise ValueError("compose needs a screen frame, a camera frame or both")
        screen = None if screen is None else _as_yuv420p(screen)
        camera = None if camera is None else _as_yuv420p(camera)
        driver = screen if screen is not None else camera
        assert driver is not None
        if out is not None:
            canvas = (out.width, out.height)
        else:
            canvas = self._size or (driver.width, driver.height)
            out, _ = self._ring.take(*canvas)
        plan = self._current_plan(canvas, _frame_size(screen), _frame_size(camera))
        # Fused: the camera pass copies the screen around the overlay in the same sweep.
        fused = plan.screen is not None and plan.camera is not None and plan.screen.copy
        if plan.screen is not None and screen is not None and not fused:
            plan.screen.run_frames(out, screen, None, BLACK)
        if plan.camera is not None and camera is not None:
            if plan.candidates and self._layout.corner == "auto":
                scored = plane_views(screen if fused and screen is not None else out)[0]
                plan = self._place(plan, scored, canvas, _frame_size(screen), _frame_size(camera))
            assert plan.camera is not None
            if fused:
                plan.camera.run_frames(out, camera, screen, None)
            elif plan.screen is None:
                plan.camera.run_frames(out, camera, None, BLACK)
            else:
                plan.camera.run_frames(out, camera, None, None)
        _copy_timing(out, driver)
        return out

    def _current_plan(
        self,
        canvas: tuple[int, int],
        screen: tuple[int, int] | None,
        camera: tuple[int, int] | None,
    ) -> _Plan:
        corner = self._resolved_corner()
        key = (canvas, screen, camera, corner)
        if self._plan is None or self._plan_key != key:
            self._plan = _make_plan(self._kernels, canvas, screen, camera, self._layout, corner)
            self._plan_key = key
        return self._plan

    def _resolved_corner(self) -> Corner:
        if self._layout.corner != "auto":
            return self._layout.corner
        return self._placement.corner or PREFERENCE[0]  # no score yet: the conventional corner

    def _place(
        self,
        plan: _Plan,
        luma: U8,
        canvas: tuple[int, int],
        screen: tuple[int, int] | None,
        camera: tuple[int, int] | None,
    ) -> _Plan:
        if not self._placement.due():
            return plan
        rects = np.array(
            [[r.x, r.y, r.w, r.h] for r in (plan.candidates[c] for c in CORNERS)], dtype=np.int32
        )
        scores = self._kernels.corner_scores(luma, rects, SCORE_STEP)
        self._placement.update({c: int(s) for c, s in zip(CORNERS, scores, strict=True)})
        return self._current_plan(canvas, screen, camera)


class Scaler:
    """Scales frames to one output size (area down, bilinear up), reusing taps and out frames."""

    def __init__(
        self, width: int, height: int, *, buffers: int = 2, kernels: str | None = None
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"output size must be positive, got {width}x{height}")
        self.width, self.height = width, height
        self._ring = _FrameRing(buffers)
        self._kernels = load_kernels(kernels)
        self._steps: dict[tuple[int, int], _Resample] = {}

    @property
    def implementation(self) -> str:
        return str(self._kernels.NAME)

    def scale(self, frame: av.VideoFrame, out: av.VideoFrame | None = None) -> av.VideoFrame:
        """``frame`` resized to exactly width x height (no letterbox), timing copied."""
        frame = _as_yuv420p(frame)
        if out is not None:
            if (out.width, out.height) != (self.width, self.height):
                raise ValueError(
                    f"out is {out.width}x{out.height}, expected {self.width}x{self.height}"
                )
            if out.format.name != "yuv420p":
                raise ValueError(f"expected a yuv420p out frame, got {out.format.name}")
        else:
            out, _ = self._ring.take(self.width, self.height)
        source = (frame.width, frame.height)
        step = self._steps.get(source)
        if step is None:
            if len(self._steps) >= 8:
                self._steps.clear()
            canvas = (self.width, self.height)
            step = _Resample.build(
                self._kernels, canvas, source, Rect(0, 0, self.width, self.height), None
            )
            self._steps[source] = step
        step.run_frames(out, frame, None, None)
        _copy_timing(out, frame)
        return out


def compose(
    screen: av.VideoFrame | None,
    camera: av.VideoFrame | None,
    layout: Layout | None = None,
    out: av.VideoFrame | None = None,
) -> av.VideoFrame:
    """One-off composite; for a stream of frames keep a ``Compositor`` (it caches everything)."""
    placement = Placement(interval=1, patience=1)
    return Compositor(layout, buffers=1, placement=placement).compose(screen, camera, out)


def scale(
    frame: av.VideoFrame, width: int, height: int, out: av.VideoFrame | None = None
) -> av.VideoFrame:
    """One-off resize; for a stream of frames keep a ``Scaler``."""
    return Scaler(width, height, buffers=1).scale(frame, out)
