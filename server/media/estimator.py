"""Per-viewer bandwidth estimate from the feedback browsers send: RTCP receiver reports and REMB.

Google Congestion Control (draft-ietf-rmcat-gcc) is the model, reduced to what an SFU without
transport-wide feedback can observe:

- the **loss-based** controller reads each receiver report's loss fraction: under 2 % it grows the
  estimate ~8 % per second, between 2 % and 10 % it holds, over 10 % it cuts by `1 - 0.5 * loss`;
- the **delay-based** side: a round trip well above the lowest seen (a standing queue) cuts the
  estimate to 85 % of what got through, as GCC's overuse detector does; Chromium's own delay
  estimate (REMB over the abs-send-time header) caps every step *up*;
- an estimate that is never exercised is not evidence, so growth stops at 1.5x what was actually
  sent (plus a little, so a quiet stream can still climb).

Everything is a pure function of the reports and the clock passed in: unit-tested without a network.
"""

from __future__ import annotations

from dataclasses import dataclass

LOSS_LOW = 0.02
LOSS_HIGH = 0.10
INCREASE_PER_S = 0.08
MIN_BPS = 100_000
MAX_BPS = 50_000_000
# Growth cannot run further ahead of what the link has actually carried than this.
SENT_HEADROOM = 1.5
SENT_HEADROOM_BPS = 100_000
# Loss is judged over at least this long and this many packets.
LOSS_WINDOW_S = 1.0
LOSS_WINDOW_PACKETS = 20
# RTT this far above the lowest seen means a queue is standing somewhere on the path.
RTT_QUEUE_S = 0.1
# A queue that persists this long after a cut (aiortc's RTT is smoothed: it lags) cuts again.
DELAY_CUT_GAP_S = 3.0
# A REMB older than this no longer caps anything (the receiver stopped sending them).
REMB_TTL_S = 5.0


@dataclass(slots=True)
class Feedback:
    """The latest receiver-side facts, for the debug endpoint and the rung selector."""

    loss: float = 0.0
    rtt_s: float | None = None
    jitter_s: float = 0.0
    remb_bps: int | None = None
    remb_at: float = 0.0
    reports: int = 0


class BandwidthEstimator:
    """One viewer connection's target bitrate: min(loss-based estimate, fresh REMB)."""

    def __init__(self, initial_bps: int, now: float) -> None:
        self.loss_based_bps = float(max(MIN_BPS, min(initial_bps, MAX_BPS)))
        self.feedback = Feedback()
        self._last_update = now
        self._window: tuple[float, int, int] | None = None
        self._min_rtt_s = float("inf")
        self._last_delay_cut = -DELAY_CUT_GAP_S
        self._was_queued = False
        self.delay_cuts = 0

    def on_receiver_report(
        self,
        now: float,
        highest_seq: int,
        cumulative_lost: int,
        sent_bps: float,
        rtt_s: float | None = None,
        jitter_s: float = 0.0,
    ) -> None:
        """One RTCP report block about our stream: its extended highest sequence number and
        cumulative loss (RFC 3550 §6.4.1); `sent_bps` is what we sent lately."""
        self._on_loss(now, highest_seq, cumulative_lost, sent_bps, rtt_s, jitter_s)
        queued = self.queued()
        episode = queued and not self._was_queued
        self._was_queued = queued
        if queued and sent_bps > 0 and (episode or now - self._last_delay_cut >= DELAY_CUT_GAP_S):
            # GCC's delay-based decrease, with the round trip as the overuse detector (no
            # transport-wide feedback from aiortc): back to 85 % of what actually got through.
            self._last_delay_cut = now
            self.delay_cuts += 1
            self.loss_based_bps = max(float(MIN_BPS), min(self.loss_based_bps, 0.85 * sent_bps))

    def _on_loss(
        self,
        now: float,
        highest_seq: int,
        cumulative_lost: int,
        sent_bps: float,
        rtt_s: float | None = None,
        jitter_s: float = 0.0,
    ) -> None:
        """The loss-based controller.

        Browsers attach a report to every NACK, i.e. many per second: the loss fraction of one
        report covers a handful of packets and swings between 0 and 30 %. The controller therefore
        acts on windows of at least `LOSS_WINDOW_S` and `LOSS_WINDOW_PACKETS`."""
        fb = self.feedback
        fb.jitter_s = jitter_s
        fb.reports += 1
        if rtt_s is not None and rtt_s >= 0:
            fb.rtt_s = rtt_s  # aiortc's sender already smooths it
            self._min_rtt_s = min(self._min_rtt_s, rtt_s)
        if self._window is None:
            self._window = (now, highest_seq, cumulative_lost)
            return
        start, seq0, lost0 = self._window
        expected = highest_seq - seq0
        if expected < 0 or expected > 1 << 20:
            self._window = (now, highest_seq, cumulative_lost)  # a reset stream: start again
            return
        if now - start < LOSS_WINDOW_S or expected < LOSS_WINDOW_PACKETS:
            return
        self._window = (now, highest_seq, cumulative_lost)
        loss = max(0.0, min(1.0, (cumulative_lost - lost0) / expected))
        fb.loss = loss
        elapsed = max(0.0, min(now - self._last_update, 2.0))
        self._last_update = now
        estimate = self.loss_based_bps
        if loss < LOSS_LOW:
            grown = estimate * (1.0 + INCREASE_PER_S) ** elapsed
            ceiling = sent_bps * SENT_HEADROOM + SENT_HEADROOM_BPS
            # Never grow past what was exercised; never shrink merely because little was sent.
            estimate = max(estimate, min(grown, ceiling))
        elif loss > LOSS_HIGH:
            estimate *= 1.0 - 0.5 * loss
        self.loss_based_bps = max(float(MIN_BPS), min(estimate, float(MAX_BPS)))

    def on_remb(self, now: float, bitrate_bps: int) -> None:
        self.feedback.remb_bps = int(bitrate_bps)
        self.feedback.remb_at = now

    def remb(self, now: float) -> int | None:
        fb = self.feedback
        if fb.remb_bps is None or now - fb.remb_at > REMB_TTL_S:
            return None
        return fb.remb_bps

    def queued(self) -> bool:
        """A standing queue: the round trip well above the lowest seen."""
        rtt = self.feedback.rtt_s
        return rtt is not None and rtt > self._min_rtt_s + RTT_QUEUE_S

    def congested(self) -> bool:
        """Evidence that the link is full: heavy loss or a standing queue."""
        return self.feedback.loss > LOSS_HIGH or self.queued()

    def target_bps(self, now: float) -> int:
        """The rate this viewer's link is believed to carry right now (pacing, stepping down).

        Chromium's REMB is not part of it: it starts low and climbs ~8 %/s even on a perfect
        link, and after an overuse it sits at 85 % of whatever little arrived — a clean viewer
        would be pushed down and a recovering one kept down. It caps steps up instead."""
        return int(max(MIN_BPS, self.loss_based_bps))

    def up_target_bps(self, now: float) -> int:
        """The rate a step *up* may count on: every signal must agree, REMB included."""
        target = self.loss_based_bps
        remb = self.remb(now)
        if remb is not None:
            target = min(target, float(remb))
        return int(max(MIN_BPS, target))

    def snapshot(self, now: float) -> dict[str, object]:
        fb = self.feedback
        return {
            "target_bps": self.target_bps(now),
            "up_target_bps": self.up_target_bps(now),
            "congested": self.congested(),
            "delay_cuts": self.delay_cuts,
            "loss_based_bps": int(self.loss_based_bps),
            "remb_bps": self.remb(now),
            "loss": round(fb.loss, 4),
            "rtt_ms": None if fb.rtt_s is None else round(fb.rtt_s * 1000, 1),
            "jitter_ms": round(fb.jitter_s * 1000, 1),
            "reports": fb.reports,
        }
