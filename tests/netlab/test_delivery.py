"""Issue 13's acceptance, measured on a real Chromium viewer behind an impaired link.

The publisher sends screen and camera (1280x720, VP8 ~1.2–1.5 Mb/s each, content that encodes to
multi-packet frames). A congested link is 1 Mbit with 3 % random loss toward the viewer. Before the
adaptive delivery work the server sent ~6–8 Mb/s into that link (the publisher's full bitrate plus
unpaced NACK resends) and the picture froze after the first frame (0 fps, every second stalled); a
clean viewer saw 9 key frames instead of 3 while a congested one watched.

The publisher keeps a steady bitrate (`scenario.steady_bitrate`): aiortc's encoder would otherwise
restart — a key frame for every viewer — each time the server's REMB moved by 10 %.
"""

from __future__ import annotations

import pytest

from .lab import Lab
from .scenario import LabRun, Result

pytestmark = pytest.mark.timeout(240)

# A measurement over a real link with a real browser, not a computation: 30 s of one scrolling-text
# screen include a full-picture change (the page wraps every 36 s), and on a 2-core machine a burst
# of other work can cost the publisher or Chromium a second. On 2026-11-29 the isolation test missed
# only in whole-suite runs at load 8-14. (The separate case's misses -- 2-3 stalled seconds at
# the page change -- ended on 2026-11-30 with pacing at the estimate and frame-dropping CBR rungs,
# `server/media/link.py`, `codecs.py`.) Each such test may measure once more (pytest reports the rerun as
# `R` and in its summary); a second miss fails the run. The thresholds themselves are not loosened.
MEASURED_TWICE = pytest.mark.flaky(reruns=1)

CONGESTED = {"rate_kbit": 1000, "loss_pct": 3}
MODES = {"separate": ("screen",), "composite": ("screen", "camera")}


def _watch(run: LabRun, link: int, mode: str, warmup: float, seconds: float) -> Result:
    session = run.publish(MODES[mode])
    viewer = run.open_viewer(session, link, mode, MODES[mode])
    try:
        result = run.watch(viewer, warmup, seconds)
        # The server's side of it (rung, estimate, resends, key-frame requests) for the messages.
        result.server = run.debug_viewers(session)
        return result
    finally:
        run.close_viewer(viewer)
        run.end(session)


@pytest.mark.parametrize("mode", list(MODES))
def test_clean_link_gets_the_full_picture(lab: Lab, lab_run: LabRun, mode: str) -> None:
    lab.shape(0)
    result = _watch(lab_run, 0, mode, warmup=8, seconds=10)
    (view,) = result.views.values()
    assert view.resolution == "1280x720", result.brief()
    # The frames the publisher made (30 fps on a quiet machine) reach the viewer. Compared with
    # the source, not with 30, so a machine too busy to publish 30 fps does not fail the link.
    (source_fps,) = result.source_fps.values()
    assert view.mean_fps >= 0.85 * source_fps, result.brief()
    assert view.stalled_seconds <= 1, result.brief()


# The page samples getStats with `setInterval(1000)`, whose intervals run a little long: 15 frames
# in a 1.013 s interval read 14.8 fps. A 15 fps rung is "15 fps" within this much.
SAMPLING_SLACK_FPS = 0.25


@MEASURED_TWICE
@pytest.mark.parametrize("mode", list(MODES))
def test_congested_link_is_not_flooded_and_keeps_moving(
    lab: Lab, lab_run: LabRun, mode: str
) -> None:
    """Issue 13's numbers at 1 Mbit + 3 % loss: after a 10 s warm-up, a median of at least
    15 fps, at most one stalled second in 30 s, and the server sends that viewer no more than
    1.3 Mb/s (paced to its estimate, resends from a budget). Before adaptive delivery: 0 fps,
    every second stalled, ~6.4 Mb/s sent; before the GCC-like estimate: 5 fps at 0.15 Mb/s."""
    lab.shape(0, **CONGESTED)
    result = _watch(lab_run, 0, mode, warmup=10, seconds=30)
    (view,) = result.views.values()
    assert result.send_mbps <= 1.3, result.brief()
    # 15 fps from a 30 fps publisher (the rungs take every other frame). A machine too busy to
    # publish 30 fps (a CI neighbour) gives the rungs fewer frames to take: that is CPU, not the
    # link, so the floor follows the publisher like the clean-link test's does.
    (source_fps,) = result.source_fps.values()
    assert view.median_fps >= min(15, source_fps / 2) - SAMPLING_SLACK_FPS, result.brief()
    # The window holds the page's full-picture change (one ~110 kB frame on the 720p rung): it
    # costs 1-2 frames a second for ~2 s (the rung's encoder skips frames behind it), no more.
    assert view.stalled_seconds <= 1, f"{result.brief()}\nserver: {result.server}"


def _keyframe_requests(asked: list[list[dict[str, object]]]) -> list[list[object]]:
    """Per window, each viewer's rung and its source's key-frame accounting (debug view)."""
    return [[(v.get("rung"), v.get("keyframes")) for v in viewers] for viewers in asked]


@MEASURED_TWICE
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
        asked: list[list[dict[str, object]]] = []
        for congested in (False, True):
            lab.shape(1, **(CONGESTED if congested else {}))
            start = run.mark() if windows else run.mark_after(a, 5)
            other = run.open_viewer(session, 1, "separate", ("screen",))
            try:
                windows.append(run.result(a, start, run.mark_after(other, 15)))
                # Who asked the shared source for key frames, and why (in the failure text).
                asked.append(run.debug_viewers(session))
            finally:
                run.close_viewer(other)
        clean, congested_window = (w.views["screen"] for w in windows)
        detail = (
            f"with a clean second viewer: {windows[0].brief()}\n"
            f"with a congested one: {windows[1].brief()}\n"
            f"key-frame requests after each window: {_keyframe_requests(asked)}"
        )
        # The baseline itself is a full picture (every published frame arrives).
        assert clean.mean_fps >= 0.85 * windows[0].source_fps["screen"], detail
        # No more at all (before adaptive delivery: 9 against 3; after its first cut: 11
        # against 8). The congested viewer joins like the clean one (one join key frame if the
        # ring has none, in both windows); the decoder its encoded rungs need is already running
        # then (kept warm from its join key frame); when it loses its picture it moves to a rung
        # of its own instead of asking the publisher, whose key frames every viewer receives.
        assert congested_window.key_frames <= clean.key_frames, detail
    finally:
        run.close_viewer(a)
        run.end(session)
