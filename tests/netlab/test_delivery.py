"""Issue 13's acceptance, measured on a real Chromium viewer behind an impaired link.

The publisher sends screen and camera (1280x720, VP8 ~1.2–1.5 Mb/s each, content that encodes to
multi-packet frames). A congested link is 1 Mbit with 3 % random loss toward the viewer. Before the
adaptive delivery work the server sends ~6–8 Mb/s into that link (the publisher's full bitrate plus
unpaced NACK resends) and the picture freezes after the first frame; those cases are marked
`xfail(strict=True)` until it lands, so they turn red the day they start passing unnoticed.
"""

from __future__ import annotations

import pytest

from .lab import Lab
from .scenario import LabRun, Result

pytestmark = pytest.mark.timeout(240)

ADAPTIVE_PENDING = pytest.mark.xfail(
    strict=True, reason="issue 13: adaptive delivery not merged yet"
)
CONGESTED = {"rate_kbit": 1000, "loss_pct": 3}
MODES = {"separate": ("screen",), "composite": ("screen", "camera")}


def _watch(run: LabRun, link: int, mode: str, warmup: float, seconds: float) -> Result:
    session = run.publish(MODES[mode])
    viewer = run.open_viewer(session, link, mode, MODES[mode])
    try:
        return run.watch(viewer, warmup, seconds)
    finally:
        run.close_viewer(viewer)
        run.end(session)


@pytest.mark.parametrize("mode", list(MODES))
def test_clean_link_gets_the_full_picture(lab: Lab, lab_run: LabRun, mode: str) -> None:
    lab.shape(0)
    result = _watch(lab_run, 0, mode, warmup=8, seconds=10)
    (view,) = result.views.values()
    assert view.resolution == "1280x720", result.brief()
    # Every frame the publisher made (30 fps on a quiet machine) reaches the viewer. Compared with
    # the source, not with 30, so a machine too busy to publish 30 fps does not fail the link.
    (source_fps,) = result.source_fps.values()
    assert view.median_fps >= 0.8 * source_fps, result.brief()
    assert view.stalled_seconds <= 1, result.brief()


@ADAPTIVE_PENDING
@pytest.mark.parametrize("mode", list(MODES))
def test_congested_link_plays_smoothly_within_its_rate(
    lab: Lab, lab_run: LabRun, mode: str
) -> None:
    """1 Mbit + 3 % loss: after 10 s, >= 15 fps median, at most one stalled second in 30 s, and
    the server sends that viewer no more than 1.3 Mb/s (it must not flood the link)."""
    lab.shape(0, **CONGESTED)
    result = _watch(lab_run, 0, mode, warmup=10, seconds=30)
    (view,) = result.views.values()
    assert view.median_fps >= 15, result.brief()
    assert view.stalled_seconds <= 1, result.brief()
    assert result.send_mbps <= 1.3, result.brief()


@ADAPTIVE_PENDING
def test_congested_viewer_costs_a_clean_viewer_no_key_frames(lab: Lab, lab_run: LabRun) -> None:
    """Viewer A on a clean link watches the screen. First a second viewer joins over a clean link,
    then (after it left) one over a congested link; A must see no more key frames in the second
    window than in the first: the congested viewer's PLIs must not reach everyone."""
    lab.shape(0)
    lab.shape(1)
    run = lab_run
    session = run.publish(("screen",))
    a = run.open_viewer(session, 0, "separate", ("screen",))
    try:
        windows = []
        for congested in (False, True):
            lab.shape(1, **(CONGESTED if congested else {}))
            start = run.mark() if windows else run.mark_after(a, 5)
            other = run.open_viewer(session, 1, "separate", ("screen",))
            try:
                windows.append(run.result(a, start, run.mark_after(other, 15)))
            finally:
                run.close_viewer(other)
        clean, congested_window = (w.views["screen"] for w in windows)
        detail = f"with a clean second viewer: {windows[0].brief()}\nwith a congested one: {windows[1].brief()}"
        # The baseline itself is a full picture (every published frame arrives).
        assert clean.median_fps >= 0.8 * windows[0].source_fps["screen"], detail
        assert congested_window.key_frames <= clean.key_frames, detail
    finally:
        run.close_viewer(a)
        run.end(session)
