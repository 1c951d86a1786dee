"""Per-viewer bandwidth estimate from the feedback browsers send: RTCP receiver reports and REMB.

Google Congestion Control (draft-ietf-rmcat-gcc) is the model, reduced to what an SFU without
transport-wide feedback can observe:

- the **loss-based** controller reads each receiver report's loss fraction: under 2 % it grows the
  estimate ~8 % per second, between 2 % and 10 % it holds, over 10 % it cuts by `1 - 0.5 * loss`;
- the **delay-based** side is the receiver's own: Chromium runs GCC's delay detector over the
  abs-send-time header aiortc stamps and reports its result as REMB; it caps the estimate;
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
        cumulative loss (RFC 3550 §6.4.1); `sent_bps` is what we sent lately.

        Browsers attach a report to every NACK, i.e. many per second: the loss fraction of one
        report covers a handful of packets and swings between 0 and 30 %. The controller therefore
        acts on windows of at least `LOSS_WINDOW_S` and `LOSS_WINDOW_PACKETS`."""
        fb = self.feedback
        fb.jitter_s = jitter_s
        fb.reports += 1
        if rtt_s is not None and rtt_s >= 0:
            fb.rtt_s = rtt_s if fb.rtt_s is None else 0.8 * fb.rtt_s + 0.2 * rtt_s
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

    def congested(self) -> bool:
        """Evidence that the link is full: heavy loss, or a standing queue (RTT well above the
        lowest seen). Chromium's REMB starts low and climbs ~8 %/s even on a perfect link, so a
        REMB below what we send means congestion only with such evidence."""
        fb = self.feedback
        queued = fb.rtt_s is not None and fb.rtt_s > self._min_rtt_s + RTT_QUEUE_S
        return fb.loss > LOSS_HIGH or queued

    def target_bps(self, now: float) -> int:
        """The rate this viewer's link is believed to carry right now (pacing, stepping down)."""
        target = self.loss_based_bps
        remb = self.remb(now)
        if remb is not None and self.congested():
            target = min(target, float(remb))
        return int(max(MIN_BPS, target))

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
            "loss_based_bps": int(self.loss_based_bps),
            "remb_bps": self.remb(now),
            "loss": round(fb.loss, 4),
            "rtt_ms": None if fb.rtt_s is None else round(fb.rtt_s * 1000, 1),
            "jitter_ms": round(fb.jitter_s * 1000, 1),
            "reports": fb.reports,
        }
