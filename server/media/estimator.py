"""Per-viewer bandwidth estimate from the feedback browsers send: RTCP receiver reports and REMB.

Google Congestion Control (draft-ietf-rmcat-gcc; libwebrtc's goog_cc) is the model, reduced to what
an SFU without transport-wide feedback can observe. One AIMD estimate, moved by two detectors:

- **delay** (GCC's overuse detector, on the round trip instead of per-packet arrival times): every
  receiver report that echoes our latest sender report is a round-trip sample (RFC 3550 §6.4.1:
  now - LSR - DLSR). The queueing delay is a sample minus the lowest round trip of the last
  `BASE_WINDOW_S`. Queueing over `QUEUE_HIGH_S` on two samples in a row is *overuse*: the estimate
  drops to `BETA` (85 %) of what got through, as GCC's AIMD does, at most once per round trip plus
  `CUT_GAP_S`, and again only if the queue has grown since (a draining queue is not cut twice). Queueing between `QUEUE_LOW_S` and `QUEUE_HIGH_S` *holds* (the queue may be
  draining). Noise — a few ms of jitter, a lone late report — moves nothing.
- **loss** (GCC's loss-based controller): judged over windows of at least `LOSS_WINDOW_S` and
  `LOSS_WINDOW_PACKETS`, because Chromium attaches a report to every NACK and one report's fraction
  is noise. Over `LOSS_HIGH` (10 %) cuts by `1 - 0.5 * loss`. Below it the link is *not* judged
  full: random loss of a few percent (a wireless hop) says nothing about capacity, and GCC's
  classic 2–10 % "hold" would freeze the estimate wherever an early overshoot left it. Resends
  (a budget, `pacer.py`) cover the random loss.
- **increase** when neither detector objects: ~8 %/s multiplicatively, slowing to ~2.5 %/s within
  10 % of the capacity last measured at an overuse (GCC's "near max" additive phase), never past
  1.5x what was actually sent (an estimate that is never exercised is not evidence; upward probing
  — `ladder.RungSelector` — lifts it explicitly).

Chromium's REMB (its receive-side, abs-send-time estimate) never sets the target: it starts low,
climbs ~8 %/s, and is itself capped at 1.5x what arrives, so a sender that paces below it keeps it
low (measured: 0.03–0.4 Mb/s on a 1 Mbit link while the queue drained). It only *confirms* a delay
cut: a round trip measured by this server includes its own event loop's lag (a busy server made
clean viewers "see" queues), while REMB comes from per-packet arrival times at the viewer — a cut
needs REMB below what is sent (on overuse Chromium sets it to 85 % of what arrived).

Everything is a pure function of the reports and the clock passed in: unit-tested without a network.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

LOSS_LOW = 0.02
LOSS_HIGH = 0.10
# Loss this heavy is a link far smaller than the send rate, not random loss.
LOSS_SEVERE = 0.30
INCREASE_PER_S = 0.08
NEAR_CAPACITY_INCREASE_PER_S = 0.025
NEAR_CAPACITY = 0.10
MIN_BPS = 100_000
MAX_BPS = 50_000_000
# Growth cannot run further ahead of what the link has actually carried than this.
SENT_HEADROOM = 1.5
SENT_HEADROOM_BPS = 100_000
# Loss is judged over at least this long and this many packets.
LOSS_WINDOW_S = 1.0
LOSS_WINDOW_PACKETS = 20
# Delay: queueing (round trip above its recent floor) that counts as overuse / as a reason to hold.
QUEUE_HIGH_S = 0.060
QUEUE_LOW_S = 0.025
BASE_WINDOW_S = 30.0
BETA = 0.85
# Cuts are at least a round trip plus this apart: the first cut needs time to show.
CUT_GAP_S = 0.5
# After a cut the estimate holds this long before growing again (the queue drains meanwhile).
HOLD_AFTER_CUT_S = 1.0
# A REMB older than this counts no more (the receiver stopped sending them).
REMB_TTL_S = 5.0
# A delay cut needs a fresh REMB under this share of what is sent (or none at all).
REMB_CONFIRM = 1.0


@dataclass(slots=True)
class Feedback:
    """The latest receiver-side facts, for the debug endpoint and the rung selector."""

    loss: float = 0.0
    rtt_s: float | None = None
    queue_s: float = 0.0
    jitter_s: float = 0.0
    remb_bps: int | None = None
    remb_at: float = 0.0
    reports: int = 0


class BandwidthEstimator:
    """One viewer connection's target bitrate (AIMD on delay and loss, see the module)."""

    def __init__(self, initial_bps: int, now: float) -> None:
        self.loss_based_bps = float(max(MIN_BPS, min(initial_bps, MAX_BPS)))
        self.feedback = Feedback()
        self._last_update = now
        self._window: tuple[float, int, int] | None = None
        # (time, rtt) with increasing rtt: the front is the floor of the last BASE_WINDOW_S.
        self._floor: deque[tuple[float, float]] = deque()
        self._over_samples = 0
        self._last_cut = -CUT_GAP_S - 1.0
        self._queue_at_cut: float | None = None
        self.capacity_bps: float | None = None
        self.delay_cuts = 0
        self.loss_cuts = 0
        self.state = "normal"  # "normal" | "hold" | "overuse" (the delay detector)
        # A loss window under `LOSS_HIGH` has been seen: the link has shown what it carries.
        self._settled = False

    # -- delay ----------------------------------------------------------------------------------

    def on_rtt_sample(self, now: float, rtt_s: float, sent_bps: float) -> None:
        """One raw round trip (a report echoing our last sender report)."""
        if rtt_s < 0:
            return
        fb = self.feedback
        fb.rtt_s = rtt_s
        floor = self._floor
        while floor and floor[-1][1] >= rtt_s:
            floor.pop()
        floor.append((now, rtt_s))
        while floor[0][0] < now - BASE_WINDOW_S:
            floor.popleft()
        queue = rtt_s - floor[0][1]
        fb.queue_s = queue
        if queue > QUEUE_HIGH_S:
            self._over_samples += 1
            self.state = "overuse" if self._over_samples >= 2 else "hold"
        else:
            self._over_samples = 0
            self.state = "hold" if queue > QUEUE_LOW_S else "normal"
        if queue < QUEUE_LOW_S:
            self._queue_at_cut = None
        gap = CUT_GAP_S + rtt_s
        remb = self.remb(now)
        if (
            self.state == "overuse"
            and sent_bps > 0
            and now - self._last_cut >= gap
            # The receiver's own delay detector (REMB: per-packet arrival times, which our event
            # loop's lag cannot inflate) must agree that less arrives than is sent: a round trip
            # lengthened by this server's busy loop is not a queue on the viewer's link.
            and (remb is None or remb < REMB_CONFIRM * sent_bps)
            # GCC acts on a *growing* queue: one still draining after a cut is not cut again
            # (cuts compounding on a draining queue would sink the estimate far below the link).
            and (self._queue_at_cut is None or queue > self._queue_at_cut + QUEUE_HIGH_S / 2)
        ):
            # Back to 85 % of what got through: what we sent less what was lost on the way, or
            # what the receiver says arrived (REMB: 85 % of it), whichever is more.
            through = max(sent_bps * (1.0 - fb.loss), (remb or 0) / BETA)
            self._cut(now, BETA * through, through)
            self._queue_at_cut = queue
            self.delay_cuts += 1

    def _cut(self, now: float, to_bps: float, capacity_bps: float) -> None:
        self._last_cut = now
        self.capacity_bps = capacity_bps
        self.loss_based_bps = max(float(MIN_BPS), min(self.loss_based_bps, to_bps))

    # -- loss (and growth) ----------------------------------------------------------------------

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
        cumulative loss (RFC 3550 §6.4.1); `sent_bps` is what we sent lately. `rtt_s`, when
        given, is a raw round-trip sample (see `on_rtt_sample`)."""
        fb = self.feedback
        fb.jitter_s = jitter_s
        fb.reports += 1
        if rtt_s is not None:
            self.on_rtt_sample(now, rtt_s, sent_bps)
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
        if loss > LOSS_HIGH:
            # GCC's loss-based cut. (Not "down to what got through": a burst's window of 40 %
            # loss against a lagging send rate sank the estimate to a quarter of the link.)
            self.loss_cuts += 1
            through = sent_bps * (1.0 - loss) if sent_bps > 0 else self.loss_based_bps
            to = self.loss_based_bps * (1.0 - 0.5 * loss)
            remb = self.remb(now)
            if loss > LOSS_SEVERE and (remb is not None or not self._settled):
                # Most of what is sent is lost (a new viewer of a 2 Mb/s original behind a
                # 1 Mbit link: 50-70 %): the link carries a fraction of the send rate, and what
                # arrives says which, three halvings sooner. Without a REMB (Chromium sent its
                # first one 8 s in, once) only before any window has shown the link coping: later,
                # a burst's window against a lagging send rate would read far under the link.
                to = min(to, max(float(remb or 0), through))
            self._cut(now, to, through)
            return
        self._settled = True
        if self.state != "normal" or now - self._last_cut < HOLD_AFTER_CUT_S:
            return
        estimate = self.loss_based_bps
        rate = INCREASE_PER_S
        if (
            self.capacity_bps is not None
            and abs(estimate - self.capacity_bps) <= NEAR_CAPACITY * self.capacity_bps
        ):
            rate = NEAR_CAPACITY_INCREASE_PER_S
        grown = estimate * (1.0 + rate) ** elapsed
        ceiling = sent_bps * SENT_HEADROOM + SENT_HEADROOM_BPS
        # Never grow past what was exercised; never shrink merely because little was sent.
        estimate = max(estimate, min(grown, ceiling))
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
        """A queue is growing or standing on the path (the delay detector is not "normal")."""
        return self.state == "overuse"

    def congested(self) -> bool:
        """Evidence that the link is full: heavy loss or a standing queue."""
        return self.feedback.loss > LOSS_HIGH or self.state == "overuse"

    def target_bps(self, now: float) -> int:
        """The rate this viewer's link is believed to carry right now (pacing, stepping down)."""
        return int(max(MIN_BPS, self.loss_based_bps))

    def up_target_bps(self, now: float) -> int:
        """The rate a step *up* may count on (the estimate: see the module on REMB)."""
        return self.target_bps(now)

    def snapshot(self, now: float) -> dict[str, object]:
        fb = self.feedback
        return {
            "target_bps": self.target_bps(now),
            "up_target_bps": self.up_target_bps(now),
            "congested": self.congested(),
            "delay_state": self.state,
            "delay_cuts": self.delay_cuts,
            "loss_cuts": self.loss_cuts,
            "capacity_bps": None if self.capacity_bps is None else int(self.capacity_bps),
            "loss_based_bps": int(self.loss_based_bps),
            "remb_bps": self.remb(now),
            "loss": round(fb.loss, 4),
            "rtt_ms": None if fb.rtt_s is None else round(fb.rtt_s * 1000, 1),
            "queue_ms": round(fb.queue_s * 1000, 1),
            "jitter_ms": round(fb.jitter_s * 1000, 1),
            "reports": fb.reports,
        }
