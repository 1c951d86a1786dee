"""Compositor benchmark: ours vs the numpy reference vs the libraries a user would pick instead.

Groups per case (1080p screen + 720p camera PiP at 20 % and 40 %, opaque and rounded-alpha; plain
scaling 720p -> 384x216 and 1080p -> 1280x720 / 640x360), each parametrised over:

- ``ours``: ``compositor.Compositor`` / ``Scaler`` on the Cython kernels;
- ``reference``: the same API on the numpy reference;
- ``swscale-area``: libswscale AREA through one reused PyAV ``VideoReformatter``, plus numpy
  assignment into the reused output frame (and a numpy blend of the masked edge pixels);
- ``ffmpeg-graph``: an FFmpeg filter graph ``scale=flags=area`` + ``overlay`` (+ ``alphamerge``)
  through PyAV, one thread;
- ``opencv-area`` / ``opencv-linear``: ``cv2.resize`` straight into the output view, one thread;
- ``copy-floor``: copying one output frame, the cost of touching the output at all.

All run single-threaded on one reused output buffer where the API allows it (PyAV's
``reformat`` and the filter graph allocate their output frames; that is the API a user gets). Each result records in
``extra_info`` whether its output equals the reference bit for bit and its PSNR over the overlay
against an exact floating-point box filter (blended with the same mask), so speed is never quoted
without quality. Run ``python -m bench.compositor_table`` for the summary table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import av.filter
import numpy as np
import numpy.typing as npt
import pytest

from compositor import Compositor, Layout, Scaler, plane_views
from compositor.frames import BLACK
from compositor.layout import overlay_rect
from compositor.masks import overlay_masks

try:
    import cv2
except ImportError:  # the optional bench extra
    cv2 = None

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
SCREEN = (1920, 1080)
CAMERA = (1280, 720)
IMPLS = [
    "ours",
    "reference",
    "swscale-area",
    "ffmpeg-graph",
    "opencv-area",
    "opencv-linear",
    "copy-floor",
]


@dataclass(frozen=True)
class Case:
    name: str
    source: tuple[int, int]
    # composite: overlay size_pct and alpha; scale: target size
    size_pct: int = 0
    alpha: bool = False
    target: tuple[int, int] = (0, 0)

    @property
    def composite(self) -> bool:
        return self.size_pct > 0

    @property
    def layout(self) -> Layout:
        return Layout(
            corner="bottom-right", size_pct=self.size_pct, radius_pct=12 if self.alpha else 0
        )


COMPOSITES = [
    Case("pip-20pct-opaque", CAMERA, size_pct=20),
    Case("pip-20pct-alpha", CAMERA, size_pct=20, alpha=True),
    Case("pip-40pct-opaque", CAMERA, size_pct=40),
    Case("pip-40pct-alpha", CAMERA, size_pct=40, alpha=True),
]
SCALES = [
    Case("scale-1280x720-to-384x216", (1280, 720), target=(384, 216)),
    Case("scale-1920x1080-to-1280x720", (1920, 1080), target=(1280, 720)),
    Case("scale-1920x1080-to-640x360", (1920, 1080), target=(640, 360)),
]


def synthetic(width: int, height: int, seed: int) -> av.VideoFrame:
    """Camera-like content: smooth gradients plus fine texture (so aliasing shows in PSNR)."""
    rng = np.random.default_rng(seed)
    frame = av.VideoFrame(width, height, "yuv420p")
    for i, plane in enumerate(plane_views(frame)):
        h, w = plane.shape
        yy, xx = np.mgrid[0:h, 0:w]
        smooth = 128 + 60 * np.sin(xx / (17 + 5 * i)) * np.cos(yy / (23 + 3 * i))
        texture = rng.normal(0, 30, (h, w))
        stripes = 40 * ((xx // 3 + yy // 2) % 2)
        plane[...] = np.clip(smooth + texture + stripes, 0, 255).astype(np.uint8)
    frame.pts = 1
    frame.time_base = Fraction(1, 30)
    return frame


def box_matrix(n: int, m: int) -> F64:
    """Exact area-resampling matrix (m x n); bilinear never occurs in these downscale cases."""
    a = np.zeros((m, n))
    for j in range(m):
        lo, hi = j * n / m, (j + 1) * n / m
        for x in range(int(np.floor(lo)), min(n, int(np.ceil(hi)))):
            a[j, x] = max(0.0, min(hi, x + 1) - max(lo, x)) * m / n
    return a


def exact_box(src: U8, w: int, h: int) -> F64:
    return box_matrix(src.shape[0], h) @ src.astype(np.float64) @ box_matrix(src.shape[1], w).T


def psnr(a: F64, b: F64) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@dataclass
class Inputs:
    case: Case
    screen: av.VideoFrame | None
    camera: av.VideoFrame
    out: av.VideoFrame  # a reusable output frame of the right size


def make_inputs(case: Case) -> Inputs:
    camera = synthetic(*case.source, seed=2)
    if case.composite:
        return Inputs(case, synthetic(*SCREEN, seed=1), camera, av.VideoFrame(*SCREEN, "yuv420p"))
    return Inputs(case, None, camera, av.VideoFrame(*case.target, "yuv420p"))


def overlay_geometry(case: Case) -> tuple[list[tuple[int, int, int, int]], list[U8] | None]:
    """Per-plane (x, y, w, h) of the overlay and per-plane alpha masks (None when opaque)."""
    rect = overlay_rect(*SCREEN, *CAMERA, case.layout, "bottom-right")
    c = rect.halved()
    rects = [(rect.x, rect.y, rect.w, rect.h), (c.x, c.y, c.w, c.h), (c.x, c.y, c.w, c.h)]
    if not case.alpha:
        return rects, None
    luma, chroma = overlay_masks(rect.w, rect.h, case.layout.radius_pct, 0)
    return rects, [luma.alpha, chroma.alpha, chroma.alpha]


def ideal(inputs: Inputs) -> list[F64]:
    """Float truth per plane: the overlay region (composite) or the whole frame (scale)."""
    cam = plane_views(inputs.camera)
    if not inputs.case.composite:
        tw, th = inputs.case.target
        sizes = [(tw, th), ((tw + 1) // 2, (th + 1) // 2), ((tw + 1) // 2, (th + 1) // 2)]
        return [exact_box(p, w, h) for p, (w, h) in zip(cam, sizes, strict=True)]
    assert inputs.screen is not None
    rects, masks = overlay_geometry(inputs.case)
    scr = plane_views(inputs.screen)
    truth = []
    for i, (x, y, w, h) in enumerate(rects):
        scaled = exact_box(cam[i], w, h)
        if masks is not None:
            a = masks[i].astype(np.float64) / 255
            scaled = scr[i][y : y + h, x : x + w] * (1 - a) + scaled * a
        truth.append(scaled)
    return truth


def quality(inputs: Inputs, result: av.VideoFrame, reference: list[U8]) -> dict[str, object]:
    planes = plane_views(result)
    truth = ideal(inputs)
    if inputs.case.composite:
        rects, _ = overlay_geometry(inputs.case)
        got = [p[y : y + h, x : x + w] for p, (x, y, w, h) in zip(planes, rects, strict=True)]
    else:
        got = list(planes)
    flat_got = np.concatenate([g.astype(np.float64).ravel() for g in got])
    flat_truth = np.concatenate([t.ravel() for t in truth])
    return {
        "matches_reference": all(
            np.array_equal(p, r) for p, r in zip(planes, reference, strict=True)
        ),
        "psnr_vs_box_db": round(psnr(flat_got, flat_truth), 2),
    }


# ---- implementations: each returns a zero-argument callable producing the output frame ----


def ours(inputs: Inputs, kernels: str) -> Callable[[], av.VideoFrame]:
    # One output buffer, like copy-floor and the swscale/OpenCV paths (the default ring of two
    # exists for consumers that still hold the previous frame; it costs ~5 % in cache misses).
    if inputs.case.composite:
        comp = Compositor(inputs.case.layout, kernels=kernels, buffers=1)
        return lambda: comp.compose(inputs.screen, inputs.camera)
    scaler = Scaler(*inputs.case.target, kernels=kernels, buffers=1)
    return lambda: scaler.scale(inputs.camera)


class _Assign:
    """Shared tail of the library paths: copy the screen, assign the scaled camera, blend edges."""

    def __init__(self, inputs: Inputs) -> None:
        self.out = inputs.out
        self.out_planes = plane_views(inputs.out)
        self.screen_planes = plane_views(inputs.screen) if inputs.screen is not None else None
        self.rects, masks = overlay_geometry(inputs.case) if inputs.case.composite else ([], None)
        self.edges: list[tuple[tuple[U8, U8], U8]] = []
        if masks is not None:
            for mask in masks:
                idx = np.nonzero(mask < 255)
                self.edges.append((idx, mask[idx].astype(np.uint16)))

    def background(self) -> None:
        assert self.screen_planes is not None
        for dst, src in zip(self.out_planes, self.screen_planes, strict=True):
            np.copyto(dst, src)

    def region(self, i: int) -> U8:
        x, y, w, h = self.rects[i]
        return self.out_planes[i][y : y + h, x : x + w]

    def blend_edges(self) -> None:
        """Numpy blend of only the non-opaque mask pixels (the rounded corners)."""
        assert self.screen_planes is not None
        for i, (idx, a) in enumerate(self.edges):
            x, y, w, h = self.rects[i]
            under = self.screen_planes[i][y : y + h, x : x + w][idx].astype(np.uint16)
            region = self.region(i)
            over = region[idx].astype(np.uint16)
            region[idx] = ((under * (255 - a) + over * a + 127) // 255).astype(np.uint8)


def swscale(inputs: Inputs) -> Callable[[], av.VideoFrame]:
    tail = _Assign(inputs)
    reformatter = av.video.reformatter.VideoReformatter()
    if not inputs.case.composite:
        tw, th = inputs.case.target
        # PyAV's reformat allocates its output frame; that is the API a user gets.
        return lambda: reformatter.reformat(inputs.camera, tw, th, "yuv420p", interpolation="AREA")
    _, _, w, h = tail.rects[0]

    def run() -> av.VideoFrame:
        small = reformatter.reformat(inputs.camera, w, h, "yuv420p", interpolation="AREA")
        tail.background()
        for i, plane in enumerate(plane_views(small)):
            tail.region(i)[...] = plane
        tail.blend_edges()
        return tail.out

    return run


def ffmpeg_graph(inputs: Inputs) -> Callable[[], av.VideoFrame]:
    graph = av.filter.Graph()
    graph.threads = 1
    cam_src = graph.add_buffer(template=inputs.camera)
    sink = graph.add("buffersink")
    if not inputs.case.composite:
        tw, th = inputs.case.target
        scale = graph.add("scale", f"{tw}:{th}:flags=area")
        cam_src.link_to(scale)
        scale.link_to(sink)
        graph.configure()
        pts = [0]

        def run_scale() -> av.VideoFrame:
            assert graph.configured  # the closure keeps the graph alive; its nodes do not
            pts[0] += 1
            inputs.camera.pts = pts[0]
            cam_src.push(inputs.camera)
            return sink.pull()

        return run_scale
    assert inputs.screen is not None
    rects, masks = overlay_geometry(inputs.case)
    x, y, w, h = rects[0]
    screen_src = graph.add_buffer(template=inputs.screen)
    scale = graph.add("scale", f"{w}:{h}:flags=area")
    overlay = graph.add("overlay", f"x={x}:y={y}:format=yuv420")
    cam_src.link_to(scale)
    screen_src.link_to(overlay, 0, 0)
    mask_src = None
    mask_frame = None
    if masks is not None:
        mask_frame = av.VideoFrame(w, h, "gray")
        plane_mask = np.frombuffer(memoryview(mask_frame.planes[0]), dtype=np.uint8)
        plane_mask.reshape(h, mask_frame.planes[0].line_size)[:, :w] = masks[0]
        mask_frame.time_base = inputs.camera.time_base
        mask_src = graph.add_buffer(template=mask_frame)
        to_yuva = graph.add("format", "yuva420p")
        merge = graph.add("alphamerge")
        scale.link_to(to_yuva)
        to_yuva.link_to(merge, 0, 0)
        mask_src.link_to(merge, 0, 1)
        merge.link_to(overlay, 0, 1)
    else:
        scale.link_to(overlay, 0, 1)
    overlay.link_to(sink)
    graph.configure()
    pts = [0]

    def run() -> av.VideoFrame:
        assert graph.configured  # the closure keeps the graph alive; its nodes do not
        pts[0] += 1
        inputs.screen.pts = inputs.camera.pts = pts[0]
        screen_src.push(inputs.screen)
        cam_src.push(inputs.camera)
        if mask_src is not None and mask_frame is not None:
            mask_frame.pts = pts[0]
            mask_src.push(mask_frame)
        return sink.pull()

    return run


def opencv(inputs: Inputs, interpolation: int) -> Callable[[], av.VideoFrame]:
    assert cv2 is not None
    cv2.setNumThreads(1)
    tail = _Assign(inputs)
    cam = plane_views(inputs.camera)
    if not inputs.case.composite:
        out = tail.out_planes

        def run_scale() -> av.VideoFrame:
            for src, dst in zip(cam, out, strict=True):
                cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=interpolation)
            return tail.out

        return run_scale

    def run() -> av.VideoFrame:
        tail.background()
        for i, src in enumerate(cam):
            region = tail.region(i)
            cv2.resize(
                src, (region.shape[1], region.shape[0]), dst=region, interpolation=interpolation
            )
        tail.blend_edges()
        return tail.out

    return run


def copy_floor(inputs: Inputs) -> Callable[[], av.VideoFrame]:
    """Copy one output-sized frame: no kernel can avoid writing its output."""
    out_planes = plane_views(inputs.out)
    if inputs.screen is not None:
        sources = plane_views(inputs.screen)
    else:
        filler = av.VideoFrame(inputs.out.width, inputs.out.height, "yuv420p")
        sources = plane_views(filler)
        for plane, value in zip(sources, BLACK, strict=True):
            plane.fill(value)

    def run() -> av.VideoFrame:
        for dst, src in zip(out_planes, sources, strict=True):
            np.copyto(dst, src)
        return inputs.out

    return run


def build(impl: str, inputs: Inputs) -> Callable[[], av.VideoFrame]:
    if impl == "ours":
        return ours(inputs, "fast")
    if impl == "reference":
        return ours(inputs, "reference")
    if impl == "swscale-area":
        return swscale(inputs)
    if impl == "ffmpeg-graph":
        return ffmpeg_graph(inputs)
    if impl.startswith("opencv"):
        if cv2 is None:
            pytest.skip("opencv-python-headless not installed (bench extra)")
        return opencv(inputs, cv2.INTER_AREA if impl == "opencv-area" else cv2.INTER_LINEAR)
    if impl == "copy-floor":
        return copy_floor(inputs)
    raise AssertionError(impl)


def reference_output(inputs: Inputs) -> list[U8]:
    return [p.copy() for p in plane_views(ours(inputs, "reference")())]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", COMPOSITES + SCALES, ids=lambda c: c.name)
def test_compositor(benchmark, case: Case, impl: str) -> None:  # type: ignore[no-untyped-def]
    inputs = make_inputs(case)
    run = build(impl, inputs)
    result = run()
    benchmark.group = case.name
    benchmark.extra_info["impl"] = impl
    if impl != "copy-floor":
        benchmark.extra_info.update(quality(inputs, result, reference_output(inputs)))
    benchmark(run)
