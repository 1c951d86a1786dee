"""Pure geometry and state: overlay rectangles, letterboxing, masks and placement hysteresis."""

from __future__ import annotations

import numpy as np
import pytest

from compositor import CORNERS, Layout, Placement
from compositor.layout import fit_rect, overlay_rect
from compositor.masks import overlay_masks

SIZES = [
    (1920, 1080, 1280, 720),
    (1280, 720, 640, 480),
    (641, 361, 1280, 720),
    (320, 240, 480, 640),
]


@pytest.mark.parametrize(("sw", "sh", "cw", "ch"), SIZES)
@pytest.mark.parametrize("size_pct", [10, 25, 40])
@pytest.mark.parametrize("corner", CORNERS)
def test_overlay_rect_is_even_inside_and_keeps_aspect(
    sw: int, sh: int, cw: int, ch: int, size_pct: int, corner: str
) -> None:
    layout = Layout(corner=corner, size_pct=size_pct)  # type: ignore[arg-type]
    r = overlay_rect(sw, sh, cw, ch, layout, corner)  # type: ignore[arg-type]
    assert r.x % 2 == r.y % 2 == r.w % 2 == r.h % 2 == 0
    assert r.x >= 0 and r.y >= 0 and r.right <= sw and r.bottom <= sh
    assert abs(r.w / r.h - cw / ch) < 0.05 or r.h == sh - sh % 2  # clamped tall cameras
    assert r.w <= sw * size_pct // 100
    margin = min(sw, sh) * layout.margin_pct // 100
    if corner.endswith("left"):
        assert r.x <= margin
    else:
        assert sw - r.right <= margin + 1
    if corner.startswith("top"):
        assert r.y <= margin
    else:
        assert sh - r.bottom <= margin + 1


def test_overlay_rect_exact_numbers() -> None:
    r = overlay_rect(1920, 1080, 1280, 720, Layout(size_pct=20), "bottom-right")
    # 20 % of 1920 = 384 wide, 216 high, margin 2 % of 1080 = 21 -> 20 (even).
    assert (r.x, r.y, r.w, r.h) == (1920 - 384 - 20, 1080 - 216 - 20, 384, 216)


def test_overlay_rect_tall_camera_shrinks_to_fit() -> None:
    r = overlay_rect(400, 100, 100, 1000, Layout(size_pct=40), "top-left")
    assert r.h <= 100 and r.w >= 2 and r.bottom <= 100


def test_fit_rect_letterboxes_and_centres() -> None:
    assert fit_rect(1920, 1080, 1280, 720) == fit_rect(1920, 1080, 1920, 1080)
    r = fit_rect(1920, 1080, 640, 480)
    assert (r.w, r.h) == (1440, 1080) and r.x == 240 and r.y == 0
    r = fit_rect(640, 640, 1280, 720)
    assert r.w == 640 and r.h == 360 and r.y == 140


def test_layout_validation_messages() -> None:
    for bad in ({"margin_pct": 11}, {"radius_pct": -1}, {"border_px": 33}, {"size_pct": True}):
        with pytest.raises(ValueError):
            Layout(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="border_yuv"):
        Layout(border_yuv=(1, 2))  # type: ignore[arg-type]
    assert Layout(radius_pct=0).opaque and not Layout(radius_pct=5).opaque


def test_masks_are_round_symmetric_and_spans_match() -> None:
    luma, chroma = overlay_masks(200, 120, 20, 3)
    a, b = luma.alpha, luma.border
    assert a.shape == (120, 200) and chroma.alpha.shape == (60, 100)
    assert a[0, 0] == 0 and a[60, 100] == 255 and a[60, 0] == 255
    assert np.array_equal(a, a[::-1, ::-1]) and np.array_equal(a, a[:, ::-1])
    assert b[60, 0] == 255 and b[60, 100] == 0  # the ring is at the edge, not inside
    assert (a > 0).sum() > (a == 255).sum() * 0.9  # anti-aliased edge, mostly opaque
    for i, (left, right) in enumerate(luma.spans.tolist()):
        inside = (a[i] == 255) & (b[i] == 0)
        assert inside[left:right].all()
        assert not inside[:left].any() and not inside[right:].any()


def test_placement_moves_only_after_patience_and_margin() -> None:
    p = Placement(interval=1, patience=3, margin_pct=25)
    busy = {"top-left": 50, "top-right": 100, "bottom-left": 100, "bottom-right": 100}
    assert p.update(busy) == "top-left"
    quiet_br = {"top-left": 100, "top-right": 100, "bottom-left": 100, "bottom-right": 10}
    assert p.update(quiet_br) == "top-left"
    assert p.update(quiet_br) == "top-left"
    assert p.update(quiet_br) == "bottom-right"
    # A small advantage (below the margin) never moves it, however long it lasts.
    slight = {"top-left": 9, "top-right": 50, "bottom-left": 50, "bottom-right": 10}
    for _ in range(10):
        assert p.update(slight) == "bottom-right"
    # Alternating winners reset the streak: no flicker.
    a = {"top-left": 0, "top-right": 100, "bottom-left": 100, "bottom-right": 100}
    b = {"top-left": 100, "top-right": 0, "bottom-left": 100, "bottom-right": 100}
    for _ in range(5):
        assert p.update(a) == "bottom-right"
        assert p.update(b) == "bottom-right"


def test_placement_interval_and_ties() -> None:
    p = Placement(interval=3)
    assert p.due()  # nothing placed yet: always due
    p.update(dict.fromkeys(CORNERS, 0))
    assert [p.due() for _ in range(6)] == [False, False, True, False, False, True]
    q = Placement()
    assert q.update(dict.fromkeys(CORNERS, 0)) == "bottom-right"
    with pytest.raises(ValueError):
        Placement(interval=0)
