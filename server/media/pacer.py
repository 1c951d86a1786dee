"""Per-connection pacing and retransmission budget: what a viewer's link is offered, and when.

`TokenBucket` spreads a connection's packets at its estimated rate: a frame's packets (a key frame's
dozens) leave over time instead of in one burst that a small link's queue would drop. The bucket
holds a few milliseconds of credit; a packet that finds it empty waits `delay()` seconds.

`RetransmitBudget` lets NACKed packets be resent from a share of the estimate (default 15 %), never
twice within one round trip, and never once they are too old to be played: on a link that loses a
lot, resending everything is what flooded it.

Both are pure (the clock is passed in) so they are unit-tested without sockets.
"""

from __future__ import annotations

BURST_S = 0.040
MIN_BURST_BYTES = 2_400
RTX_SHARE = 0.15
RTX_BURST_S = 0.500
# A packet sent longer ago (in media time) than this is no use to a real-time receiver: the frames
# after it have been dropped, or a key frame has been asked for.
RTX_MAX_AGE_S = 1.5
HISTORY = 1024  # resends remembered (aiortc itself keeps only 128 packets to resend from)


class TokenBucket:
    """Bytes of credit refilled at `rate_bps / 8` per second, capped at `BURST_S` of rate."""

    __slots__ = ("_at", "_tokens", "rate_bps", "sent_bytes")

    def __init__(self, rate_bps: float, now: float) -> None:
        self.rate_bps = float(rate_bps)
        self._tokens = self._burst()
        self._at = now
        self.sent_bytes = 0

    def _burst(self) -> float:
        return max(MIN_BURST_BYTES, self.rate_bps / 8 * BURST_S)

    def set_rate(self, rate_bps: float, now: float) -> None:
        self._refill(now)
        self.rate_bps = max(1.0, float(rate_bps))

    def _refill(self, now: float) -> None:
        elapsed = now - self._at
        if elapsed > 0:
            self._tokens = min(self._burst(), self._tokens + elapsed * self.rate_bps / 8)
            self._at = now

    def consume(self, size: int, now: float) -> float:
        """Charge `size` bytes; returns how long to wait before sending (0.0: send now).

        The charge is taken at once (credit may go negative), so callers that must not wait
        (audio, RTCP) still count against the rate of the packets that can. Runs per packet:
        the refill is inlined."""
        rate = self.rate_bps
        tokens = self._tokens + (now - self._at) * rate / 8
        cap = rate / 8 * BURST_S
        if tokens > cap:
            tokens = cap if cap > MIN_BURST_BYTES else min(tokens, MIN_BURST_BYTES)
        tokens -= size
        self._tokens = tokens
        self._at = now
        self.sent_bytes += size
        if tokens >= 0:
            return 0.0
        return -tokens * 8 / rate

    def backlog_s(self, now: float) -> float:
        self._refill(now)
        return max(0.0, -self._tokens * 8 / self.rate_bps)


class RetransmitBudget:
    """Which NACKed sequence numbers may be resent now."""

    def __init__(self, rate_bps: float, now: float) -> None:
        self._rate_bps = float(rate_bps)
        self._tokens = self._cap()
        self._at = now
        self._resent_seq = [-1] * HISTORY
        self._resent_at = [-1.0] * HISTORY
        self.resent = 0
        self.skipped_old = 0
        self.skipped_budget = 0
        self.skipped_recent = 0

    def _cap(self) -> float:
        return max(MIN_BURST_BYTES, self._rate_bps * RTX_SHARE / 8 * RTX_BURST_S)

    def set_rate(self, rate_bps: float, now: float) -> None:
        self._refill(now)
        self._rate_bps = max(1.0, float(rate_bps))

    def _refill(self, now: float) -> None:
        elapsed = now - self._at
        if elapsed > 0:
            self._tokens = min(self._cap(), self._tokens + elapsed * self._rate_bps * RTX_SHARE / 8)
            self._at = now

    def allow(self, seq: int, size: int, age_s: float, now: float, rtt_s: float | None) -> bool:
        """Whether to resend `seq` (`size` bytes, first sent `age_s` ago) now; counts the reason
        when not."""
        if age_s > RTX_MAX_AGE_S:
            self.skipped_old += 1
            return False
        i = seq % HISTORY
        last = self._resent_at[i] if self._resent_seq[i] == seq else -1.0
        if last >= 0 and now - last < max(0.1, 2 * (rtt_s or 0.1)):
            # Already resent within a round trip: the NACK crossed our resend.
            self.skipped_recent += 1
            return False
        self._refill(now)
        if self._tokens < size:
            self.skipped_budget += 1
            return False
        self._tokens -= size
        self._resent_seq[i] = seq
        self._resent_at[i] = now
        self.resent += 1
        return True
