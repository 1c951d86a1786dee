"""Reading a Chromium viewer the way a person experiences it: frames decoded each second.

`STATS_HOOK` is installed with `Page.addScriptToEvaluateOnNewDocument`, so it runs before the page's
own scripts: it wraps `RTCPeerConnection` to keep every connection the page makes, and once a second
records each inbound video stream's `getStats()` counters (page-side timer, so a busy test process
does not blur the seconds). `freezeCount` is not used: it counts only freezes that have *ended*, and a
picture frozen for good reads 0 (docs/netlab.md). `summarise` turns the samples into per-second frame
rates, stalled seconds, resolution and key frames for a window of the run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

STATS_HOOK = r"""
(() => {
  if (window.__netlab) return;
  const lab = { pcs: [], samples: [], t0: performance.now() };
  window.__netlab = lab;
  const Native = window.RTCPeerConnection;
  if (Native) {
    window.RTCPeerConnection = class extends Native {
      constructor(...args) { super(...args); lab.pcs.push(this); }
    };
  }
  // Which <video> shows a track: the page marks its videos with data-kind.
  const kindOf = (trackId) => {
    for (const v of document.querySelectorAll("video")) {
      const s = v.srcObject;
      if (s && s.getVideoTracks && s.getVideoTracks().some((t) => t.id === trackId)) {
        return v.dataset.kind || "video";
      }
    }
    return "video";
  };
  const FIELDS = ["framesDecoded", "keyFramesDecoded", "framesDropped", "frameWidth", "frameHeight",
    "framesPerSecond", "packetsReceived", "packetsLost", "bytesReceived", "nackCount", "pliCount",
    "firCount", "jitter", "freezeCount", "totalFreezesDuration", "framesReceived"];
  const sample = async () => {
    const t = (performance.now() - lab.t0) / 1000;
    const rows = [];
    for (let i = 0; i < lab.pcs.length; i++) {
      const pc = lab.pcs[i];
      if (pc.signalingState === "closed") continue;
      let report;
      try { report = await pc.getStats(); } catch (e) { continue; }
      let pair = null;
      report.forEach((s) => {
        if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
      });
      report.forEach((s) => {
        if (s.type !== "inbound-rtp" || s.kind !== "video") return;
        const row = { pc: i, ssrc: s.ssrc, kind: kindOf(s.trackIdentifier), codec: null };
        for (const f of FIELDS) row[f] = s[f] === undefined ? null : s[f];
        const codec = s.codecId && report.get(s.codecId);
        if (codec) row.codec = codec.mimeType;
        if (pair) {
          row.availableIncomingBitrate = pair.availableIncomingBitrate ?? null;
          row.rtt = pair.currentRoundTripTime ?? null;
        }
        rows.push(row);
      });
    }
    lab.samples.push({ t, rows, connections: lab.pcs.length });
  };
  setInterval(sample, 1000);
})();
"""

# Read samples taken after page-time `since` (seconds), compactly.
READ_SAMPLES = "JSON.stringify((window.__netlab || {samples: []}).samples.filter((s) => s.t >= %f))"


@dataclass
class Second:
    """One sampling interval of one kind of video: frames decoded and what was on screen."""

    t: float
    frames: int
    fps: float
    width: int
    height: int


@dataclass
class ViewSummary:
    """A viewer's experience of one kind of video over a window of the run."""

    kind: str
    seconds: list[Second] = field(default_factory=list)
    key_frames: int = 0
    packets_lost: int = 0
    nacks: int = 0
    plis: int = 0
    connections: int = 0
    codec: str | None = None
    available_incoming_bps: float | None = None
    rtt_s: float | None = None

    @property
    def median_fps(self) -> float:
        return statistics.median(s.fps for s in self.seconds) if self.seconds else 0.0

    @property
    def stalled_seconds(self) -> int:
        """Seconds in which not a single new frame was decoded (a frozen picture, or none)."""
        return sum(1 for s in self.seconds if s.frames == 0)

    @property
    def resolution(self) -> str:
        """The resolution shown most of the window ('none' when nothing was decoded)."""
        sizes = [f"{s.width}x{s.height}" for s in self.seconds if s.frames and s.width]
        return statistics.mode(sizes) if sizes else "none"

    def brief(self) -> str:
        return (
            f"{self.kind}: median {self.median_fps:.1f} fps, {self.stalled_seconds} stalled of "
            f"{len(self.seconds)} s, {self.resolution}, {self.key_frames} key frames, "
            f"lost {self.packets_lost}, nacks {self.nacks}, plis {self.plis}, "
            f"pcs {self.connections}, avail {self.available_incoming_bps}"
        )


def summarise(
    samples: list[dict[str, Any]], start: float, end: float, kinds: tuple[str, ...]
) -> dict[str, ViewSummary]:
    """Per kind of video in `kinds`: the seconds in [start, end] of page time.

    Counters are cumulative per connection; a kind can span several connections (the page
    reconnects), so frames are summed over them, each differenced on its own. An interval in which
    a kind has no connection at all counts as a stalled second. A video the page has not labelled
    yet counts as the only kind when there is one.
    """
    out = {kind: ViewSummary(kind) for kind in kinds}
    previous: dict[tuple[int, int], dict[str, Any]] = {}
    prev_t: float | None = None
    for sample in samples:
        t = sample["t"]
        per_kind: dict[str, list[tuple[dict[str, Any], dict[str, Any] | None]]] = {}
        for row in sample["rows"]:
            key = (row["pc"], row["ssrc"])
            kind = kinds[0] if row["kind"] == "video" and len(kinds) == 1 else row["kind"]
            per_kind.setdefault(kind, []).append((row, previous.get(key)))
            previous[key] = row
        if prev_t is not None and start - 0.5 <= prev_t and t <= end + 0.5:
            dt = max(t - prev_t, 1e-3)
            for kind, summary in out.items():
                pairs = per_kind.get(kind, [])
                frames = sum(_delta(r, p, "framesDecoded") for r, p in pairs)
                if not pairs:
                    summary.seconds.append(Second(t, 0, 0.0, 0, 0))
                    continue
                latest = max(pairs, key=lambda rp: rp[0].get("framesDecoded") or 0)[0]
                summary.seconds.append(
                    Second(
                        t,
                        frames,
                        frames / dt,
                        latest["frameWidth"] or 0,
                        latest["frameHeight"] or 0,
                    )
                )
                summary.key_frames += sum(_delta(r, p, "keyFramesDecoded") for r, p in pairs)
                summary.packets_lost += sum(_delta(r, p, "packetsLost") for r, p in pairs)
                summary.nacks += sum(_delta(r, p, "nackCount") for r, p in pairs)
                summary.plis += sum(_delta(r, p, "pliCount") for r, p in pairs)
                summary.connections = max(summary.connections, len({r["pc"] for r, _ in pairs}))
                summary.codec = latest.get("codec") or summary.codec
                summary.available_incoming_bps = latest.get("availableIncomingBitrate")
                summary.rtt_s = latest.get("rtt")
        prev_t = t
    return out


def _delta(row: dict[str, Any], prev: dict[str, Any] | None, name: str) -> int:
    now = row.get(name) or 0
    before = (prev or {}).get(name) or 0
    return max(0, int(now - before))
