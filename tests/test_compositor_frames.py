"""The frames API as other code uses it: Layout, compose, scale, Compositor, Scaler."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

import compositor
from compositor import Compositor, Layout, Scaler, plane_views
from tests.compositor_helpers import make_frame, planes_of

IMPLEMENTATIONS = ["reference", "fast"]


@pytest.fixture(params=IMPLEMENTATIONS)
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MULTISTREAM_COMPOSITOR", request.param)
    try:
        Compositor()
    except ImportError:
        pytest.fail("compositor._fast is not built")
    return str(request.param)


def test_layout_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="corner"):
        Layout(corner="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size_pct"):
        Layout(size_pct=5)
    with pytest.raises(ValueError, match="size_pct"):
        Layout(size_pct=41)
    assert Layout(corner="auto", size_pct=40).size_pct == 40


def test_compose_keeps_screen_outside_overlay_and_copies_timing(kernels: str) -> None:
    screen = make_frame(1280, 720, seed=1, pts=3000)
    camera = make_frame(640, 360, flat=200)
    out = compositor.compose(screen, camera, Layout(corner="top-left", size_pct=20, radius_pct=0))
    assert (out.width, out.height, out.format.name) == (1280, 720, "yuv420p")
    assert out.pts == 3000 and out.time_base == Fraction(1, 90000)
    y = plane_views(out)[0]
    src = plane_views(screen)[0]
    # 20 % of 1280 = 256 wide, 144 high, margin 2 % of 720 = 14 (even).
    assert (y[14 : 14 + 144, 14 : 14 + 256] == 200).all()
    mask = np.ones(y.shape, dtype=bool)
    mask[14 : 14 + 144, 14 : 14 + 256] = False
    assert (y[mask] == src[mask]).all()


def test_compose_handles_missing_inputs(kernels: str) -> None:
    screen = make_frame(320, 240, seed=2, pts=7)
    camera = make_frame(160, 120, seed=3, pts=9)
    only_screen = compositor.compose(screen, None, Layout())
    assert all(
        (a == b).all() for a, b in zip(planes_of(only_screen), planes_of(screen), strict=True)
    )
    only_camera = compositor.compose(None, camera, Layout())
    assert (only_camera.width, only_camera.height, only_camera.pts) == (160, 120, 9)
    assert all(
        (a == b).all() for a, b in zip(planes_of(only_camera), planes_of(camera), strict=True)
    )
    with pytest.raises(ValueError, match="screen frame, a camera frame"):
        compositor.compose(None, None, Layout())


def test_scale_and_scaler_reuse_out(kernels: str) -> None:
    frame = make_frame(1280, 720, flat=77, pts=5)
    small = compositor.scale(frame, 384, 216)
    assert (small.width, small.height, small.pts) == (384, 216, 5)
    assert all((p == 77).all() for p in plane_views(small))
    scaler = Scaler(640, 360, buffers=1)
    first = scaler.scale(frame)
    second = scaler.scale(make_frame(1280, 720, flat=9))
    assert first is second and (plane_views(second)[0] == 9).all()
    out = av.VideoFrame(640, 360, "yuv420p")
    assert scaler.scale(frame, out) is out
    with pytest.raises(ValueError, match="expected 640x360"):
        scaler.scale(frame, av.VideoFrame(320, 180, "yuv420p"))


def test_compositor_reuses_buffers_and_follows_layout_changes(kernels: str) -> None:
    comp = Compositor(Layout(corner="bottom-right", size_pct=20), buffers=2)
    screen = make_frame(640, 360, flat=10)
    camera = make_frame(320, 180, flat=250)
    a = comp.compose(screen, camera)
    b = comp.compose(screen, camera)
    assert a is not b and comp.compose(screen, camera) is a
    assert plane_views(a)[0][-20, -20] == 250  # bottom-right corner covered (rounded, inset)
    comp.layout = Layout(corner="top-left", size_pct=20)
    c = comp.compose(screen, camera)
    y = plane_views(c)[0]
    assert y[-20, -20] == 10 and y[20, 20] == 250
    with pytest.raises(ValueError, match="Layout"):
        comp.layout = "top-left"  # type: ignore[assignment]


def test_odd_sizes_letterbox_and_out_frame(kernels: str) -> None:
    screen = make_frame(641, 361, seed=4, pts=1)
    camera = make_frame(333, 187, seed=5)
    out = av.VideoFrame(500, 300, "yuv420p")
    result = compositor.compose(screen, camera, Layout(corner="top-right", size_pct=30), out=out)
    assert result is out and (out.width, out.height) == (500, 300)
    y = plane_views(out)[0]
    # 641x361 letterboxed into 500x300: black bars above and below, picture in the middle.
    assert (y[0] == 16).all() and (y[-1] == 16).all()
    assert y[150].std() > 10


def test_non_yuv420p_input_is_converted(kernels: str) -> None:
    rgb = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 200, dtype=np.uint8), format="rgb24")
    out = compositor.scale(rgb, 80, 60)
    assert out.format.name == "yuv420p" and abs(int(plane_views(out)[0][30, 40]) - 188) <= 3


def test_auto_layout_avoids_text(kernels: str) -> None:
    screen = make_frame(640, 360, flat=220)
    y = plane_views(screen)[0]
    rng = np.random.default_rng(1)
    y[:, :] = rng.integers(0, 256, y.shape, dtype=np.uint8)
    y[200:, :260] = 220  # the only calm corner: bottom-left
    comp = Compositor(Layout(corner="auto", size_pct=25))
    comp.compose(screen, make_frame(320, 180, flat=40))
    assert comp.corner == "bottom-left"
    out = plane_views(comp.compose(screen, make_frame(320, 180, flat=40)))[0]
    assert out[300, 60] == 40 and (out[:150, :] == y[:150, :]).all()


def test_fast_and_reference_frames_agree() -> None:
    screen = make_frame(1280, 720, seed=11, pts=2)
    camera = make_frame(640, 480, seed=12)
    layout = Layout(corner="bottom-left", size_pct=33, radius_pct=20, border_px=3)
    outs = [Compositor(layout, kernels=k).compose(screen, camera) for k in IMPLEMENTATIONS]
    for a, b in zip(planes_of(outs[0]), planes_of(outs[1]), strict=True):
        assert np.array_equal(a, b)
