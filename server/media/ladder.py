"""Quality ladders and per-viewer rung selection.

A source (a stream, a composite layout) is offered as a few **rungs**: the original (the publisher's
own packets, or the full-quality shared encoder) and server-encoded rungs below it. A rung runs
only while some viewer is on it, and every viewer on it shares its one encoder.

Rungs are **content-aware**. Text and detail (screens, composites) keep their resolution — blurred
text is unreadable — at up to 15 frames a second; below that rung's rate they keep 15 frames at
half the lines (scrolling text must stay smooth enough to follow, and a full-size key frame no
longer fits the link), then drop to a third of the frames at full size, and only then lose both. Motion (cameras) keeps its frame rate and gives up resolution first. Bitrates derive from
the stream's quality profile (`codecs.profile_for`), so a stream configured richer gets richer rungs.

`RungSelector` picks one viewer's rung from its bandwidth estimate: down at once when the rung no
longer fits, up when the next rung fits with headroom for a while, and otherwise by **probing** — try
the next rung up after a quiet spell; if the link answers with loss or a falling REMB, come back and
wait twice as long before the next try. Pure and clock-injected, so it is unit-tested directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.media.codecs import EncodeProfile

MIN_RUNG_BPS = 100_000
# Hysteresis: a rung is climbed to when its rate is at most `HEADROOM` of the estimate (audio, RTX
# and headers need room), and left only when its rate exceeds `DOWN_AT` of it.
HEADROOM = 0.85
DOWN_AT = 1.0
UP_HOLD_S = 3.0
# A climb undone within this long (the rung did not fit after all) doubles the hold before the
# next climb, up to `UP_HOLD_MAX_S`: every switch costs the viewer a key frame of the new rung.
FLAP_S = 20.0
UP_HOLD_MAX_S = 60.0
PROBE_WAIT_S = 6.0
PROBE_WAIT_MAX_S = 60.0
PROBE_CHECK_S = 4.0
PROBE_MAX_STEP = 2.0
# Congestion evidence during a probe.
PROBE_LOSS = 0.10
REMB_OVERUSE = 0.9


@dataclass(frozen=True, slots=True)
class Rung:
    """One output of a source. `height` None: the source's own size; `source` True: the original."""

    name: str
    height: int | None
    fps: int
    bitrate_bps: int
    source: bool = False

    def profile(self, content: str) -> EncodeProfile:
        return EncodeProfile(content, self.fps, self.bitrate_bps, constrained=not self.source)


def _bps(share: float, base: int) -> int:
    return max(MIN_RUNG_BPS, int(base * share))


def ladder_for(profile: EncodeProfile, hint: str, height: int) -> tuple[Rung, ...]:
    """The rungs of a source, best first. `hint`: the stream's content hint ("text", "detail",
    "motion"); `height`: the source's nominal height (its quality preset)."""
    b, f = profile.bitrate_bps, profile.fps
    top = Rung("source", None, f, b, source=True)
    half = _standard_height(height // 2)
    if hint == "motion":
        third = _standard_height(height // 3)
        rungs = [
            top,
            Rung(f"{half}p{f}", half, f, _bps(0.35, b)),
            Rung(f"{third}p{f}", third, f, _bps(0.15, b)),
            Rung(f"{third}p{max(5, f // 2)}", third, max(5, f // 2), _bps(0.08, b)),
        ]
    else:
        steady = min(f, 15)
        slow = max(5, steady // 3)
        rungs = [
            top,
            # Same lines, at most 15 frames and fewer bits per frame: text stays where it was.
            Rung(f"full{steady}", None, steady, _bps(0.24, b)),
            # The floor of smooth scrolling: 15 frames at half the lines. Below a certain rate
            # the full-size picture cannot even carry its key frames (scrolling 720p text at the
            # coarsest VP8 quantiser: ~75 kB each, 0.6 s of a 1 Mbit link; 20-30 kB at 540p),
            # and every switch or recovery needs one.
            Rung(f"{half}p{steady}", half, steady, _bps(0.15, b)),
            # Slower still: the full lines back at a third of the frames (text readable, not
            # smooth), and only then fewer lines as well.
            Rung(f"full{slow}", None, slow, _bps(0.08, b)),
            Rung(f"{half}p{slow}", half, slow, _bps(0.05, b)),
        ]
    unique: list[Rung] = []
    for rung in rungs:
        if rung.name not in {r.name for r in unique}:
            unique.append(rung)
    return tuple(unique)


def _standard_height(h: int) -> int:
    for standard in (1080, 720, 540, 360, 270, 180):
        if standard <= h:
            return standard
    return 180


class RungSelector:
    """One viewer's position on a ladder (index 0 = best)."""

    def __init__(self, count: int, now: float, start: int = 0) -> None:
        self.count = count
        self.index = start
        self.changed_at = now
        self.probe_wait_s = PROBE_WAIT_S
        self.probing_from: int | None = None
        self.fits_since: float | None = None
        self.probes = 0
        self.probes_failed = 0
        self.up_hold_s = UP_HOLD_S
        self._climbed_at: float | None = None

    def update(
        self,
        now: float,
        target_bps: float,
        rates: list[float],
        loss: float,
        remb_bps: int | None,
        sent_bps: float,
        up_target_bps: float | None = None,
        congested: bool | None = None,
    ) -> int:
        """The rung this viewer should be on now; `rates[i]` is rung i's current bitrate.
        `target_bps` decides stepping down, `up_target_bps` (default the same) stepping up."""
        usable = (target_bps if up_target_bps is None else up_target_bps) * HEADROOM
        i = self.index
        remb_overuse = remb_bps is not None and sent_bps > 0 and remb_bps < REMB_OVERUSE * sent_bps
        if congested is None:
            # Without the estimator's judgement, a REMB below what is sent counts as overuse.
            congested = loss > PROBE_LOSS or remb_overuse
        if self.probing_from is not None:
            if congested:
                # The link said no: back to where the probe started (or lower), wait longer.
                self.probes_failed += 1
                self.probe_wait_s = min(PROBE_WAIT_MAX_S, self.probe_wait_s * 2)
                back = max(self.probing_from, self._fitting(rates, usable, self.probing_from))
                self.probing_from = None
                return self._go(back, now)
            if now - self.changed_at >= PROBE_CHECK_S:
                self.probing_from = None
                self.probe_wait_s = PROBE_WAIT_S
            return i
        if rates[i] > target_bps * DOWN_AT and i < self.count - 1:
            if self._climbed_at is not None and now - self._climbed_at < FLAP_S:
                self.up_hold_s = min(UP_HOLD_MAX_S, self.up_hold_s * 2)
            self._climbed_at = None
            return self._go(self._fitting(rates, usable, i), now)
        if self._climbed_at is not None and now - self._climbed_at >= FLAP_S:
            self._climbed_at = None
            self.up_hold_s = UP_HOLD_S  # the last climb held: climbing is cheap again
        if i == 0:
            return i
        if rates[i - 1] <= usable:
            self.fits_since = self.fits_since if self.fits_since is not None else now
            hold = self.up_hold_s
            if now - self.fits_since >= hold and now - self.changed_at >= hold:
                self._climbed_at = now
                return self._go(self._fitting(rates, usable, 0), now)
            return i
        self.fits_since = None
        quiet = loss <= PROBE_LOSS and not congested
        # A probe tries at most twice the rate: a bigger leap that fails floods the link for
        # seconds; such a rung is reached once the receiver's own estimate (REMB) allows it.
        small = rates[i - 1] <= PROBE_MAX_STEP * rates[i]
        if quiet and small and now - self.changed_at >= self.probe_wait_s:
            self.probes += 1
            self.probing_from = i
            return self._go(i - 1, now)
        return i

    def _fitting(self, rates: list[float], usable: float, start: int) -> int:
        for j in range(start, self.count):
            if rates[j] <= usable:
                return j
        return self.count - 1

    def _go(self, index: int, now: float) -> int:
        if index != self.index:
            self.index = index
            self.changed_at = now
            self.fits_since = None
        return index
