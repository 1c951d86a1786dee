"""The pure parts of adaptive delivery: bandwidth estimate, pacing, resend budget, ladder, selector."""

from __future__ import annotations

import pytest

from server.media import estimator as est
from server.media.codecs import EncodeProfile
from server.media.estimator import BandwidthEstimator
from server.media.ladder import HEADROOM, RungSelector, ladder_for
from server.media.pacer import RTX_MAX_AGE_S, RetransmitBudget, TokenBucket

# -- estimator --------------------------------------------------------------------------------


def feed(
    e: BandwidthEstimator, seconds: int, loss: float, sent_bps: float, t0: float = 0.0
) -> float:
    """One report per second, 100 packets each, `loss` of them lost; returns the end time."""
    seq, lost = 1000, 0
    e.on_receiver_report(t0, seq, lost, sent_bps)
    t = t0
    for _ in range(seconds):
        t += 1.0
        seq += 100
        lost += round(100 * loss)
        e.on_receiver_report(t, seq, lost, sent_bps)
    return t


def test_low_loss_grows_about_eight_percent_per_second_but_not_past_what_was_sent():
    e = BandwidthEstimator(1_000_000, 0.0)
    feed(e, 1, 0.0, sent_bps=10_000_000)
    assert e.loss_based_bps == pytest.approx(1_080_000, rel=0.01)
    e = BandwidthEstimator(1_000_000, 0.0)
    feed(e, 30, 0.0, sent_bps=800_000)
    # 1.5x what was actually carried (+100 kb/s): an unexercised estimate is no evidence.
    assert e.loss_based_bps == pytest.approx(800_000 * 1.5 + 100_000, rel=0.01)


def test_moderate_loss_holds_and_heavy_loss_cuts_by_half_the_loss():
    e = BandwidthEstimator(1_000_000, 0.0)
    feed(e, 5, 0.05, sent_bps=900_000)
    assert e.loss_based_bps == 1_000_000
    e = BandwidthEstimator(1_000_000, 0.0)
    feed(e, 1, 0.30, sent_bps=900_000)
    assert e.loss_based_bps == pytest.approx(1_000_000 * (1 - 0.5 * 0.30), rel=0.001)


def test_loss_is_judged_over_a_window_not_per_report():
    """Browsers attach an RR to every NACK: tens of ms apart, a few packets each. One such report
    with 1 of 3 packets lost must not cut the estimate."""
    e = BandwidthEstimator(1_000_000, 0.0)
    e.on_receiver_report(0.0, 100, 0, 900_000)
    e.on_receiver_report(0.05, 103, 1, 900_000)
    assert e.loss_based_bps == 1_000_000 and e.feedback.loss == 0.0
    e.on_receiver_report(1.0, 200, 2, 900_000)  # the window: 2 of 100 lost -> hold
    assert e.feedback.loss == pytest.approx(0.02) and e.loss_based_bps == 1_000_000


def test_remb_caps_steps_up_but_never_pushes_the_target_down():
    """Chromium's REMB starts low and climbs ~8 %/s on a perfect link: alone it must not push a
    clean viewer down, but no step up may exceed it."""
    e = BandwidthEstimator(2_000_000, 0.0)
    e.on_remb(1.0, 700_000)
    assert e.up_target_bps(1.5) == 700_000
    assert e.target_bps(1.5) == 2_000_000 and not e.congested()
    assert e.up_target_bps(1.0 + est.REMB_TTL_S + 0.1) == 2_000_000  # a stale REMB caps nothing
    assert e.snapshot(1.5)["remb_bps"] == 700_000


def test_a_standing_queue_cuts_to_85_percent_of_what_got_through():
    e = BandwidthEstimator(3_000_000, 0.0)
    e.on_receiver_report(0.0, 10, 0, 1_000_000, rtt_s=0.01)
    assert not e.congested()
    for i in range(10):  # RTT 0.3 s against a 10 ms floor, reports every 50 ms
        e.on_receiver_report(0.1 + i * 0.05, 11 + i, 0, 1_000_000, rtt_s=0.3)
    assert e.queued() and e.congested()
    assert e.loss_based_bps == pytest.approx(850_000) and e.delay_cuts == 1
    # aiortc's RTT lags (it is smoothed): a queue still reported 1 s later is not cut again...
    e.on_receiver_report(1.2, 30, 0, 800_000, rtt_s=0.3)
    assert e.delay_cuts == 1
    # ...one that persists for 3 s is.
    e.on_receiver_report(3.6, 60, 0, 800_000, rtt_s=0.3)
    assert e.delay_cuts == 2 and e.loss_based_bps == pytest.approx(680_000)


# -- pacing and resends -----------------------------------------------------------------------


def test_token_bucket_spreads_a_burst_at_its_rate():
    bucket = TokenBucket(1_000_000, 0.0)  # 125 kB/s, 5 kB of credit
    waits = [bucket.consume(1200, 0.0) for _ in range(20)]  # a 24 kB key frame at once
    assert waits[0] == 0.0
    # The last packet may leave once the 24 kB minus the credit have drained at 125 kB/s.
    assert waits[-1] == pytest.approx((24_000 - 5_000) / 125_000, rel=0.01)
    assert waits == sorted(waits)
    assert bucket.consume(1200, 1.0) == 0.0  # a second later the debt is gone


def test_resend_budget_skips_old_repeated_and_over_budget_packets():
    budget = RetransmitBudget(1_000_000, 0.0)  # 15 % -> 18.75 kB/s
    assert budget.allow(1, 1200, 0.1, 0.0, rtt_s=0.05)
    assert not budget.allow(1, 1200, 0.12, 0.02, rtt_s=0.05)  # NACKed again within the RTT
    assert budget.skipped_recent == 1
    assert not budget.allow(2, 1200, RTX_MAX_AGE_S + 0.1, 0.0, rtt_s=0.05)
    assert budget.skipped_old == 1
    allowed = sum(budget.allow(seq, 1200, 0.1, 0.0, rtt_s=0.05) for seq in range(10, 60))
    assert 0 < allowed < 50 and budget.skipped_budget == 50 - allowed
    # The budget refills at 15 % of the rate.
    assert budget.allow(100, 1200, 0.1, 1.0, rtt_s=0.05)


# -- ladder -----------------------------------------------------------------------------------


def test_text_keeps_its_lines_and_lowers_bits_then_frames_before_lines():
    rungs = ladder_for(EncodeProfile("screen", 15, 2_500_000), "text", 1080)
    assert rungs[0].source
    assert [r.height for r in rungs[:-1]] == [None] * (len(rungs) - 1)  # full size until the last
    assert rungs[-1].height == 540
    fps = [r.fps for r in rungs]
    assert fps[0] == fps[1] == fps[2] == 15 and fps[3] == 5
    rates = [r.bitrate_bps for r in rungs]
    assert rates == sorted(rates, reverse=True)


def test_motion_keeps_its_frame_rate_and_lowers_lines_first():
    rungs = ladder_for(EncodeProfile("camera", 30, 1_200_000), "motion", 720)
    assert [r.height for r in rungs[1:3]] == [360, 180]
    assert all(r.fps == 30 for r in rungs[:3])
    rates = [r.bitrate_bps for r in rungs]
    assert rates == sorted(rates, reverse=True)


def test_rung_bitrates_follow_the_stream_profile():
    rich = ladder_for(EncodeProfile("screen", 15, 5_000_000), "detail", 1080)
    lean = ladder_for(EncodeProfile("screen", 15, 2_500_000), "detail", 1080)
    assert [r.bitrate_bps for r in rich] == [2 * r.bitrate_bps for r in lean]


# -- selector ---------------------------------------------------------------------------------

RATES = [1_200_000.0, 700_000.0, 425_000.0, 225_000.0]


def test_selector_steps_down_at_once_to_the_rung_that_fits():
    s = RungSelector(4, 0.0)
    assert s.update(0.5, 900_000, RATES, 0.03, 900_000, 1_500_000) == 1  # 700k <= 0.85 * 900k
    assert s.update(1.0, 400_000, RATES, 0.03, 400_000, 700_000) == 3


def test_selector_climbs_with_hysteresis_when_the_estimate_allows():
    s = RungSelector(4, 0.0, start=2)
    enough = 700_000 / HEADROOM + 1
    assert s.update(1.0, enough, RATES, 0.0, None, 425_000) == 2  # fits, but not for long enough
    assert s.update(4.5, enough, RATES, 0.0, None, 425_000) == 1


def test_selector_probes_up_backs_off_on_congestion_and_doubles_its_wait():
    s = RungSelector(4, 0.0, start=1)
    # Never a leap of more than twice the rate.
    assert (
        RungSelector(4, 0.0, start=1).update(
            6.5, 900_000, [2_500_000.0, *RATES[1:]], 0.0, 1_000_000, 700_000
        )
        == 1
    )
    # The estimate (capped near what is sent) never reaches the source rung: only a probe can.
    assert s.update(3.0, 900_000, RATES, 0.0, 1_000_000, 700_000) == 1
    assert s.update(6.5, 900_000, RATES, 0.0, 1_000_000, 700_000) == 0  # probe
    assert s.probing_from == 1
    # The link answers with loss: back, and twice the wait before the next try.
    assert s.update(7.5, 900_000, RATES, 0.25, 800_000, 1_400_000) == 1
    assert s.probes_failed == 1 and s.probe_wait_s == 12.0
    assert s.update(14.0, 900_000, RATES, 0.0, 1_000_000, 700_000) == 1
    assert s.update(20.0, 900_000, RATES, 0.0, 1_000_000, 700_000) == 0


def test_a_probe_that_survives_stays_and_resets_the_wait():
    s = RungSelector(4, 0.0, start=1)
    assert s.update(6.5, 900_000, RATES, 0.0, 1_000_000, 700_000) == 0
    assert s.update(11.0, 1_900_000, RATES, 0.0, 2_000_000, 1_500_000) == 0
    assert s.probing_from is None and s.probe_wait_s == 6.0
