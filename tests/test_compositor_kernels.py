"""Kernel semantics, run against both implementations, and bit-exact agreement between them.

Tolerance: none. Both kernels are pure integer arithmetic on the same tap tables, so ``_fast`` must
equal ``_reference`` exactly; the only approximation (8/14-bit fixed-point weights versus an exact
box filter) is bounded separately by a PSNR floor.
"""

from __future__ import annotations

import importlib
import zlib
from types import ModuleType

import av
import numpy as np
import numpy.typing as npt
import pytest

from compositor.coefficients import make_taps, plane_taps
from compositor.frames import plane_views
from compositor.masks import overlay_masks

U8 = npt.NDArray[np.uint8]


@pytest.fixture(params=["reference", "fast"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(f"compositor._{request.param}")


@pytest.fixture
def ref() -> ModuleType:
    return importlib.import_module("compositor._reference")


@pytest.fixture
def fast() -> ModuleType:
    return importlib.import_module("compositor._fast")


def padded(rng: np.random.Generator, h: int, w: int, pad: int = 13, low: int = 0) -> U8:
    """A (h, w) view into wider rows, like PyAV's padded line sizes."""
    base = rng.integers(low, 256, (h, w + pad), dtype=np.uint8)
    return base[:, :w]


def run(
    kernels: ModuleType | tuple[ModuleType, str],
    out: U8,
    background: U8 | None,
    fill: int,
    camera: U8,
    rect: tuple[int, int, int, int],
    masked: tuple[int, int] | None = None,
    colour: int = 235,
) -> U8:
    rx, ry, w, h = rect
    taps = plane_taps(camera.shape[1], camera.shape[0], w, h)
    alpha = border = spans = None
    if masked is not None:
        luma, _ = overlay_masks(w, h, *masked)
        alpha, border, spans = luma.alpha, luma.border, luma.spans
    result = out.copy()
    module, extra = (
        (kernels, {}) if isinstance(kernels, ModuleType) else (kernels[0], {"simd": kernels[1]})
    )
    module.pip_plane(
        result,
        background,
        fill,
        camera,
        rx,
        ry,
        taps.vertical.offsets,
        taps.vertical.weights,
        taps.horizontal.offsets,
        taps.horizontal.weights,
        alpha,
        border,
        spans,
        colour,
        **extra,
    )
    return result


# (out h, out w), camera (h, w), rect (x, y, w, h)
CASES = [
    pytest.param((1080, 1920), (720, 1280), (1504, 836, 384, 216), id="1080p-20pct"),
    pytest.param((1080, 1920), (720, 1280), (0, 0, 768, 432), id="1080p-40pct-top-left-touching"),
    pytest.param((97, 131), (61, 77), (0, 0, 131, 97), id="odd-full-frame-up"),
    pytest.param((97, 131), (61, 77), (131 - 20, 97 - 14, 20, 14), id="odd-bottom-right-touching"),
    pytest.param((1, 1), (1, 1), (0, 0, 1, 1), id="one-pixel"),
    pytest.param((1, 9), (1, 1), (0, 0, 9, 1), id="one-pixel-upscaled-row"),
    pytest.param((7, 1), (5, 1), (0, 2, 1, 5), id="one-column"),
    pytest.param((40, 40), (3, 200), (3, 5, 17, 29), id="wide-to-tall"),
    pytest.param((60, 80), (60, 80), (0, 0, 80, 60), id="identity"),
    pytest.param((300, 500), (1080, 1920), (100, 60, 384, 216), id="ratio-5-eight-tap-simd"),
    pytest.param((130, 210), (720, 1280), (10, 18, 200, 112), id="ratio-6.4-eight-tap-simd"),
    pytest.param((90, 100), (37, 83), (2, 4, 50, 20), id="ratio-1.7-right-edge-overread"),
    pytest.param((50, 64), (480, 640), (2, 2, 60, 46), id="strong-downscale"),
]


@pytest.mark.parametrize(("out_shape", "cam_shape", "rect"), CASES)
@pytest.mark.parametrize("masked", [None, (12, 0), (25, 3)], ids=["opaque", "rounded", "border"])
@pytest.mark.parametrize("mode", ["background", "fill", "keep"])
def test_fast_equals_reference(
    ref: ModuleType,
    fast: ModuleType,
    out_shape: tuple[int, int],
    cam_shape: tuple[int, int],
    rect: tuple[int, int, int, int],
    masked: tuple[int, int] | None,
    mode: str,
) -> None:
    rng = np.random.default_rng(
        zlib.crc32(repr((out_shape, cam_shape, rect, masked, mode)).encode())
    )
    out = padded(rng, *out_shape)
    camera = padded(rng, *cam_shape, pad=5)
    background = padded(rng, *out_shape, pad=64) if mode == "background" else None
    fill = 16 if mode == "fill" else -1
    expected = run(ref, out, background, fill, camera, rect, masked)
    for simd in ("auto", "baseline"):  # AVX2 (when the CPU has it) and the portable path
        got = run((fast, simd), out, background, fill, camera, rect, masked)
        assert np.array_equal(got, expected), simd


@pytest.mark.parametrize("value", [0, 255])
def test_extremes_survive_scaling_and_blending(impl: ModuleType, value: int) -> None:
    camera = np.full((720, 1280), value, dtype=np.uint8)
    screen = np.full((360, 640), 255 - value, dtype=np.uint8)
    out = np.zeros_like(screen)
    result = run(impl, out, screen, -1, camera, (100, 50, 200, 112), masked=(20, 0))
    inner = result[50 + 30 : 50 + 80, 100 + 30 : 100 + 170]
    assert (inner == value).all()
    assert result[0, 0] == 255 - value and result[50, 100] == 255 - value  # transparent corner


def test_non_contiguous_inputs(ref: ModuleType, fast: ModuleType) -> None:
    rng = np.random.default_rng(5)
    camera = rng.integers(0, 256, (200, 300), dtype=np.uint8)[::2, ::3]  # column stride 3
    background = np.asfortranarray(rng.integers(0, 256, (90, 120), dtype=np.uint8))
    out = np.zeros((90, 120), dtype=np.uint8)
    for kernels in (ref, fast):
        got = run(kernels, out, background, -1, camera, (10, 20, 50, 40), masked=(30, 2))
        contiguous = run(
            kernels,
            out,
            np.ascontiguousarray(background),
            -1,
            np.ascontiguousarray(camera),
            (10, 20, 50, 40),
            masked=(30, 2),
        )
        assert np.array_equal(got, contiguous)


def test_in_place_background_is_kept(impl: ModuleType) -> None:
    rng = np.random.default_rng(8)
    out = padded(rng, 64, 96)
    before = out.copy()
    camera = padded(rng, 30, 40)
    taps = plane_taps(40, 30, 20, 16)
    impl.pip_plane(
        out,
        out,
        -1,
        camera,
        4,
        6,
        taps.vertical.offsets,
        taps.vertical.weights,
        taps.horizontal.offsets,
        taps.horizontal.weights,
        None,
        None,
        None,
        0,
    )
    outside = np.ones(out.shape, dtype=bool)
    outside[6:22, 4:24] = False
    assert np.array_equal(out[outside], before[outside])


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_integer_downscale_is_the_block_mean(impl: ModuleType, factor: int) -> None:
    rng = np.random.default_rng(factor)
    camera = rng.integers(0, 256, (16 * factor, 24 * factor), dtype=np.uint8)
    out = np.zeros((16, 24), dtype=np.uint8)
    result = run(impl, out, None, -1, camera, (0, 0, 24, 16))
    blocks = camera.reshape(16, factor, 24, factor).astype(np.float64).mean(axis=(1, 3))
    assert np.array_equal(result, np.floor(blocks + 0.5).astype(np.uint8))


def exact_box(src: U8, h: int, w: int) -> npt.NDArray[np.float64]:
    """Float area downscale from first principles (overlap matrices)."""

    def matrix(n: int, m: int) -> npt.NDArray[np.float64]:
        a = np.zeros((m, n))
        for j in range(m):
            lo, hi = j * n / m, (j + 1) * n / m
            for x in range(int(np.floor(lo)), min(n, int(np.ceil(hi)))):
                a[j, x] = max(0.0, min(hi, x + 1) - max(lo, x)) * m / n
        return a

    return matrix(src.shape[0], h) @ src.astype(np.float64) @ matrix(src.shape[1], w).T


@pytest.mark.parametrize(("src", "dst"), [((720, 1280), (216, 384)), ((1080, 1920), (720, 1280))])
def test_area_quality_against_exact_box(
    impl: ModuleType, src: tuple[int, int], dst: tuple[int, int]
) -> None:
    rng = np.random.default_rng(1)
    camera = rng.integers(0, 256, src, dtype=np.uint8)
    result = run(impl, np.zeros(dst, dtype=np.uint8), None, -1, camera, (0, 0, dst[1], dst[0]))
    mse = np.mean((result.astype(np.float64) - exact_box(camera, *dst)) ** 2)
    psnr = 10 * np.log10(255**2 / mse)
    assert psnr > 50, psnr
    assert np.abs(result.astype(np.float64) - exact_box(camera, *dst)).max() <= 1.0


def test_flat_stays_flat_through_any_size(impl: ModuleType) -> None:
    for src, dst in [((3, 5), (17, 11)), ((17, 11), (3, 5)), ((1, 1), (4, 4)), ((9, 2), (1, 1))]:
        camera = np.full(src, 173, dtype=np.uint8)
        result = run(impl, np.zeros(dst, dtype=np.uint8), None, -1, camera, (0, 0, dst[1], dst[0]))
        assert (result == 173).all()


def test_taps_sum_to_one_and_stay_inside() -> None:
    for n, m in [(1, 1), (1, 7), (7, 1), (1280, 384), (2, 3), (5, 4), (641, 1920), (1921, 2)]:
        for bits in (8, 14):
            taps = make_taps(n, m, bits)
            assert (taps.weights.sum(axis=1) == 1 << bits).all()
            assert (taps.weights >= 0).all()
            assert taps.offsets.min() >= 0 and taps.offsets.max() + taps.taps <= n


def good_args(h: int = 10, w: int = 12) -> dict[str, object]:
    taps = plane_taps(20, 16, w, h)
    return {
        "out": np.zeros((40, 40), dtype=np.uint8),
        "background": None,
        "fill": -1,
        "camera": np.zeros((16, 20), dtype=np.uint8),
        "rx": 0,
        "ry": 0,
        "v_offsets": taps.vertical.offsets,
        "v_weights": taps.vertical.weights,
        "h_offsets": taps.horizontal.offsets,
        "h_weights": taps.horizontal.weights,
        "alpha": None,
        "border": None,
        "spans": None,
        "colour": 0,
    }


BAD = [
    pytest.param({"rx": 29}, "outside plane", id="rect-right"),
    pytest.param({"ry": -2}, "outside plane", id="rect-negative"),
    pytest.param({"out": np.zeros((40, 40), dtype=np.int16)}, "uint8", id="out-dtype"),
    pytest.param({"out": np.zeros((40, 40, 3), dtype=np.uint8)}, "2-D", id="out-3d"),
    pytest.param({"out": np.zeros((40, 80), dtype=np.uint8)[:, ::2]}, "contiguous", id="out-step"),
    pytest.param({"camera": np.zeros((0, 20), dtype=np.uint8)}, "empty", id="camera-empty"),
    pytest.param({"camera": np.zeros((4, 20), dtype=np.uint8)}, "outside", id="taps-past-camera"),
    pytest.param({"background": np.zeros((40, 41), dtype=np.uint8)}, "shape", id="bg-shape"),
    pytest.param({"v_offsets": np.full(10, 15, dtype=np.int32)}, "outside", id="offsets"),
    pytest.param({"h_weights": np.ones((12, 2), dtype=np.int32)}, "sum", id="weights-sum"),
    pytest.param({"v_weights": np.ones((10, 2), dtype=np.int64)}, "int32", id="weights-dtype"),
    pytest.param({"fill": 300}, "fill", id="fill"),
    pytest.param({"alpha": np.zeros((10, 12), dtype=np.uint8)}, "border", id="alpha-alone"),
    pytest.param(
        {
            "alpha": np.zeros((10, 12), dtype=np.uint8),
            "border": np.zeros((10, 12), dtype=np.uint8),
            "spans": np.tile(np.array([[5, 13]], dtype=np.int32), (10, 1)),
        },
        "spans",
        id="spans-past-width",
    ),
    pytest.param(
        {
            "alpha": np.zeros((9, 12), dtype=np.uint8),
            "border": np.zeros((10, 12), dtype=np.uint8),
            "spans": np.zeros((10, 2), dtype=np.int32),
        },
        "masks",
        id="mask-shape",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_fast_rejects_bad_arguments_before_touching_memory(
    fast: ModuleType, change: dict[str, object], message: str
) -> None:
    args = good_args()
    args.update(change)
    out = args["out"]
    with pytest.raises(ValueError, match=message):
        fast.pip_plane(*args.values())
    if isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 2:
        assert not out.any()


def test_read_only_out_is_rejected(fast: ModuleType) -> None:
    args = good_args()
    out = np.zeros((40, 40), dtype=np.uint8)
    out.flags.writeable = False
    args["out"] = out
    with pytest.raises(ValueError, match="writable"):
        fast.pip_plane(*args.values())


def test_corner_scores_agree_and_rank_detail(ref: ModuleType, fast: ModuleType) -> None:
    rng = np.random.default_rng(3)
    plane = np.full((121, 203), 40, dtype=np.uint8)
    plane[:60, :100] = rng.integers(0, 256, (60, 100), dtype=np.uint8)  # "text" top-left
    view = np.pad(plane, ((0, 0), (0, 9)))[:, :203]
    rects = np.array(
        [[0, 0, 100, 60], [103, 0, 100, 60], [0, 61, 100, 60], [103, 61, 100, 60], [5, 5, 1, 1]],
        dtype=np.int32,
    )
    for step in (1, 3, 4):
        a = ref.corner_scores(view, rects, step)
        b = fast.corner_scores(view, rects, step)
        assert np.array_equal(a, b)
        assert a[0] > 0 and a[1] == a[2] == a[3] == 0 and a[4] == 0
    with pytest.raises(ValueError, match="outside plane"):
        fast.corner_scores(view, np.array([[150, 0, 60, 10]], dtype=np.int32), 4)
    with pytest.raises(ValueError, match="step"):
        fast.corner_scores(view, rects, 0)


def _plan_planes(
    out_shapes: list[tuple[int, int]],
    cam_shapes: list[tuple[int, int]],
    rects: list[tuple[int, int, int, int]],
    masked: tuple[int, int] | None,
) -> list[tuple[object, ...]]:
    planes: list[tuple[object, ...]] = []
    for out_shape, cam_shape, (rx, ry, w, h) in zip(out_shapes, cam_shapes, rects, strict=True):
        taps = plane_taps(cam_shape[1], cam_shape[0], w, h)
        alpha = border = spans = None
        if masked is not None:
            mask, _ = overlay_masks(w, h, *masked)
            alpha, border, spans = mask.alpha, mask.border, mask.spans
        planes.append(
            (
                out_shape,
                cam_shape,
                rx,
                ry,
                taps.vertical.offsets,
                taps.vertical.weights,
                taps.horizontal.offsets,
                taps.horizontal.weights,
                alpha,
                border,
                spans,
                200,
            )
        )
    return planes


@pytest.mark.parametrize("masked", [None, (12, 2)], ids=["opaque", "masked"])
@pytest.mark.parametrize("mode", ["background", "fill", "keep"])
@pytest.mark.parametrize("simd", ["auto", "baseline"])
@pytest.mark.parametrize("unpadded", [True, False], ids=["unpadded", "padded"])
def test_plan_equals_reference_per_plane(
    ref: ModuleType,
    impl: ModuleType,
    masked: tuple[int, int] | None,
    mode: str,
    simd: str,
    unpadded: bool,
) -> None:
    """One ``PipPlan`` over three planes, reused for two different frames, equals pip_plane.

    Both modules offer the plan (the frames API uses nothing else), so both are held to it.
    """
    rng = np.random.default_rng(zlib.crc32(repr((masked, mode, simd, unpadded)).encode()))
    out_shapes = [(108, 192), (54, 96), (54, 96)]
    cam_shapes = [(72, 128), (36, 64), (36, 64)]
    rects = [(150, 80, 38, 22), (75, 40, 19, 11), (75, 40, 19, 11)]
    planes = _plan_planes(out_shapes, cam_shapes, rects, masked)
    plan = impl.PipPlan(planes, simd=simd)
    pad = 0 if unpadded else 7
    for _ in range(2):
        outs = [padded(rng, *s, pad=pad) for s in out_shapes]
        cams = [padded(rng, *s, pad=pad) for s in cam_shapes]
        bgs = [padded(rng, *s, pad=pad) for s in out_shapes] if mode == "background" else None
        fills = [16, 128, 128] if mode == "fill" else None
        expected = [o.copy() for o in outs]
        for i in range(3):
            ref.pip_plane(
                expected[i],
                None if bgs is None else bgs[i],
                -1 if fills is None else fills[i],
                cams[i],
                *planes[i][2:],
            )
        plan.run(outs, bgs, fills, cams)
        for i in range(3):
            assert np.array_equal(outs[i], expected[i]), i


def test_plan_rejects_arrays_that_do_not_match_it(impl: ModuleType) -> None:
    planes = _plan_planes([(108, 192)], [(72, 128)], [(150, 80, 38, 22)], None)
    plan = impl.PipPlan(planes)
    out = np.zeros((108, 192), np.uint8)
    cam = np.zeros((72, 128), np.uint8)
    with pytest.raises(ValueError, match="plan expects"):
        plan.run([np.zeros((108, 191), np.uint8)], None, None, [cam])
    with pytest.raises(ValueError, match="plan expects"):
        plan.run([out], None, None, [np.zeros((71, 128), np.uint8)])
    with pytest.raises(ValueError, match="plan expects"):
        plan.run([out], [np.zeros((107, 192), np.uint8)], None, [cam])
    with pytest.raises(ValueError, match="1 planes"):
        plan.run([out, out], None, None, [cam, cam])
    with pytest.raises(ValueError, match="fill"):
        plan.run([out], None, [256], [cam])
    with pytest.raises(ValueError, match="writable"):
        out.flags.writeable = False
        plan.run([out], None, None, [cam])
    with pytest.raises(ValueError, match="outside plane"):
        impl.PipPlan(_plan_planes([(108, 192)], [(72, 128)], [(160, 80, 38, 22)], None))
    with pytest.raises(ValueError, match="reads outside"):
        impl.PipPlan([((108, 192), (60, 128), *planes[0][2:])])
    with pytest.raises(ValueError, match="simd"):
        impl.PipPlan(planes, simd="avx512")


def test_plan_run_frames_checks_every_frame(impl: ModuleType) -> None:
    sizes = [((108, 192), (72, 128)), ((54, 96), (36, 64)), ((54, 96), (36, 64))]
    rects = [(150, 80, 38, 22), (75, 40, 19, 11), (75, 40, 19, 11)]
    planes = _plan_planes([o for o, _ in sizes], [c for _, c in sizes], rects, (12, 2))
    plan = impl.PipPlan(planes)
    out, screen = av.VideoFrame(192, 108, "yuv420p"), av.VideoFrame(192, 108, "yuv420p")
    camera = av.VideoFrame(128, 72, "yuv420p")
    rng = np.random.default_rng(7)
    for frame in (out, screen, camera):
        for plane in plane_views(frame):
            plane[...] = rng.integers(0, 256, plane.shape, dtype=np.uint8)
    expected = [p.copy() for p in plane_views(out)]
    plan.run(expected, plane_views(screen), None, plane_views(camera))
    plan.run_frames(out, screen, None, camera)
    for got, want in zip(plane_views(out), expected, strict=True):
        assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="plan expects 128x72"):
        plan.run_frames(out, screen, None, av.VideoFrame(130, 72, "yuv420p"))
    with pytest.raises(ValueError, match="plan expects 192x108"):
        plan.run_frames(av.VideoFrame(192, 110, "yuv420p"), screen, None, camera)
    with pytest.raises(ValueError, match="yuv420p"):
        plan.run_frames(out, av.VideoFrame(192, 108, "rgb24"), None, camera)
