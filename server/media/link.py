"""`ViewerLink`: one viewer connection's view of its network — estimate, pacing, resend budget.

It hooks the connection's video sender and transport (through `aiortc_hooks`, the one place that
touches aiortc internals): receiver reports and REMB feed a `BandwidthEstimator`; everything the
connection sends is paced by a `TokenBucket` at the estimate (video waits, audio and RTCP are only
charged); NACKed packets are resent only within a `RetransmitBudget`. The media plane reads
`target_bps()` and `sent_bps` each control tick to pick the viewer's rung.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender
from aiortc import clock as aiortc_clock
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from server.media import aiortc_hooks
from server.media.estimator import BandwidthEstimator
from server.media.pacer import RetransmitBudget, TokenBucket

VIDEO_CLOCK = 90000
_monotonic = time.monotonic
# The pacer drains at this multiple of the estimate. libwebrtc uses 2.5, but its estimate tracks
# the link within ~100 ms (transport-wide feedback); ours grows up to 1.5x what is sent between
# receiver reports a second apart, so on a 1 Mbit link it read 1.1-1.16 Mb/s. At 1.25x that, a
# full-page change (one ~110 kB frame at 720p) overflowed the link's queue, and the resends and
# key frames that followed froze the picture 2-4 s; at 1.0x it leaves in ~0.9 s with a queue under
# ~130 ms (tests/netlab: 0 stalled seconds in 4 of 4 runs, against 2-3 in 2 of 4 before).
PACING_FACTOR = 1.0


class ViewerLink:
    """Feedback in, pacing out, for one viewer `RTCPeerConnection` (its video sender's view)."""

    def __init__(self, sender: RTCRtpSender, initial_bps: int) -> None:
        now = time.monotonic()
        self.sender = sender
        self.estimator = BandwidthEstimator(initial_bps, now)
        target = self.estimator.target_bps(now)
        self.bucket = TokenBucket(target * PACING_FACTOR, now)
        self.rtx = RetransmitBudget(target, now)
        self.sent_bps = 0.0
        self.nacks = 0
        self.plis = 0
        self.paced_s = 0.0
        self._ssrc, self._rtx_ssrc = aiortc_hooks.sender_ssrcs(sender)
        self._ssrc_bytes = self._ssrc.to_bytes(4, "big")
        self._rtx_ssrc_bytes = self._rtx_ssrc.to_bytes(4, "big")
        self._abs_id = aiortc_hooks.abs_send_time_id(sender)
        self._tick_at = now
        self._tick_bytes = 0
        self.unrecoverable = 0
        self.moot = 0
        self._resync_ts: int | None = None
        self.on_unrecoverable: Callable[[], None] | None = None
        self._undo: Any = None

    def install(self) -> None:
        """Hook the sender and its transport; call once the connection is negotiated."""
        aiortc_hooks.observe_rtcp(self.sender, self.on_rtcp)
        aiortc_hooks.gate_retransmit(self.sender, self.allow_retransmit)
        self.set_paced(True)

    @property
    def paced(self) -> bool:
        return self._undo is not None

    def set_paced(self, on: bool) -> None:
        """Pace this connection's packets (or stop). The pacing hook costs a few µs per packet,
        so the plane turns it off while the estimate is far above what the viewer's rung needs
        (nothing to pace) and on as soon as the link could be the bottleneck."""
        if on and self._undo is None:
            now = time.monotonic()
            self.bucket = TokenBucket(self.estimator.target_bps(now) * PACING_FACTOR, now)
            self._undo = aiortc_hooks.pace_transport(
                self.sender.transport, self.delay_of, self.restamp
            )
        elif not on and self._undo is not None:
            self._undo()
            self._undo = None

    # -- per packet (kept small: this runs for every packet the viewer gets) ------------------

    def delay_of(self, data: bytes) -> float:
        if 192 <= data[1] <= 208:
            return 0.0  # RTCP: never held back
        wait = self.bucket.consume(len(data), _monotonic())
        ssrc = data[8:12]
        if ssrc == self._ssrc_bytes:
            if wait > 0.0:
                self.paced_s += wait
                return wait
            return 0.0
        if ssrc == self._rtx_ssrc_bytes:
            return -1.0  # a resend: charged, not held (it runs on the RTCP path), restamped
        return 0.0  # audio: charged, not held

    def restamp(self, data: bytes) -> bytes:
        if self._abs_id is None:
            return data
        value = (aiortc_clock.current_ntp_time() >> 14) & 0xFFFFFF
        return aiortc_hooks.rewrite_abs_send_time(data, self._abs_id, value)

    def allow_retransmit(self, seq: int, size: int, rtp_timestamp: int) -> bool:
        last = aiortc_hooks.sender_rtp_timestamp(self.sender)
        age_s = ((last - rtp_timestamp) & 0xFFFFFFFF) / VIDEO_CLOCK
        if self._resync_ts is not None and ((self._resync_ts - rtp_timestamp) & 0xFFFFFFFF) < (
            1 << 31
        ):
            # Sent before this viewer was resynchronised at a key frame: nothing will decode it.
            self.moot += 1
            return False
        skipped = self.rtx.skipped_old
        allowed = self.rtx.allow(seq, size, age_s, time.monotonic(), self.estimator.feedback.rtt_s)
        if not allowed and self.rtx.skipped_old > skipped:
            # That packet is gone for good, and with it every frame until the next key frame:
            # stop sending frames the viewer cannot decode and get it a key frame instead.
            # (Over the budget only, it is not gone: the receiver asks again, and the budget has
            # refilled by then -- one packet later instead of a key frame now.)
            self.unrecoverable += 1
            self._resync_ts = last
            if self.on_unrecoverable is not None:
                self.on_unrecoverable()
        return allowed

    # -- feedback ------------------------------------------------------------------------------

    def on_rtcp(self, packet: Any) -> None:
        now = time.monotonic()
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    self.estimator.on_receiver_report(
                        now,
                        report.highest_sequence,
                        report.packets_lost,
                        self.sent_bps,
                        self._rtt_sample(report.lsr, report.dlsr),
                        report.jitter / VIDEO_CLOCK,
                    )
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self._ssrc in ssrcs:
                    self.estimator.on_remb(now, bitrate)
            elif packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.plis += 1
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.nacks += len(packet.lost)
        self._retarget(now)

    def _rtt_sample(self, lsr: int, dlsr: int) -> float | None:
        """A raw round trip from a report echoing our latest sender report (aiortc's own RTT is
        smoothed with a 0.85 weight on the past: seconds late for a queue that builds in 300 ms)."""
        last, sent_at = aiortc_hooks.sender_last_sr(self.sender)
        if last is None or sent_at is None or lsr != last or not dlsr:
            return None
        return time.time() - sent_at - dlsr / 65536

    def _retarget(self, now: float) -> None:
        target = self.estimator.target_bps(now)
        self.bucket.set_rate(target * PACING_FACTOR, now)
        self.rtx.set_rate(target, now)

    def target_bps(self) -> int:
        return self.estimator.target_bps(time.monotonic())

    def raise_to(self, bps: float) -> None:
        """A probe starts: the estimate is lifted to what the probed rung needs."""
        now = time.monotonic()
        self.estimator.loss_based_bps = max(self.estimator.loss_based_bps, float(bps))
        self._retarget(now)

    def lower_to(self, bps: float) -> None:
        """A probe failed: back to the estimate from before it."""
        now = time.monotonic()
        self.estimator.loss_based_bps = min(self.estimator.loss_based_bps, float(bps))
        self._retarget(now)

    def tick(self) -> None:
        """Called by the plane's control loop: refresh the measured send rate."""
        now = time.monotonic()
        elapsed = now - self._tick_at
        if elapsed >= 0.25:
            total = self.bytes_sent()
            rate = max(0, total - self._tick_bytes) * 8 / elapsed
            self.sent_bps = rate if self.sent_bps == 0 else 0.5 * self.sent_bps + 0.5 * rate
            self._tick_at, self._tick_bytes = now, total
            self._retarget(now)

    def bytes_sent(self) -> int:
        """What this connection sent (aiortc's transport counts every datagram, paced or not)."""
        return int(aiortc_hooks.transport_tx_bytes(self.sender.transport))

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        snap = self.estimator.snapshot(now)
        snap.update(
            {
                "sent_bps": int(self.sent_bps),
                "pacing_backlog_ms": round(self.bucket.backlog_s(now) * 1000, 1),
                "nacks": self.nacks,
                "plis": self.plis,
                "resent": self.rtx.resent,
                "resend_skipped_old": self.rtx.skipped_old,
                "resend_skipped_budget": self.rtx.skipped_budget,
                "resend_skipped_recent": self.rtx.skipped_recent,
                "unrecoverable": self.unrecoverable,
                "resend_moot": self.moot,
            }
        )
        return snap

    def close(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None
