"""The composite output budget: which composite encoders run, per session and per instance.

Every distinct composite output (layout × codec × rung) costs a compositor pass and an encoder
(~10–15 % of a core at 1080p15 with the text tuning), so viewers who each pick their own layout
would otherwise cost one encoder each. The planner keeps the number of running composite encoders
under a budget (`Settings.composite_budget`, default 4 per core, and a per-session share):

- **fewer distinct layouts**: sizes snap to `SIZE_STEP_PCT` steps, and `auto` resolves to the
  concrete corner the screen's content suggests (`resolve_corner`), so "auto" and that corner share;
- **exact when there is room**: a wanted output that runs, or fits the budget, is what the viewer
  gets;
- **nearest when over budget**: otherwise the viewer gets the nearest *running* output of the same
  session, enabled streams, codec and rung — the nearest corner first (what the camera covers
  matters most), then the nearest size. Its state says so (`Grant.substitute`), and the watch page
  shows "closest available layout".
- **a floor**: when nothing running matches (the first output of that session, streams, codec and
  rung), it starts anyway — a viewer always gets a picture — and the overrun is counted. So the
  number of composite encoders is at most the budget, or the number of distinct (session, streams,
  codec, rung) in use if that is larger; it never grows with the number of viewers.

Pure bookkeeping (no media, no asyncio): unit-tested directly, driven by the media plane.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import av

import compositor
from compositor.layout import CORNERS, Corner, Layout
from compositor.placement import PREFERENCE, Placement
from server.domain import PIP_SIZE_MAX, PIP_SIZE_MIN
from server.media.composite import LayoutKey

SIZE_STEP_PCT = 5
# How long one `auto` resolution holds for a session (viewers choosing auto share it meanwhile).
AUTO_HOLD_S = 30.0


def snap_size(size_pct: int) -> int:
    """The nearest `SIZE_STEP_PCT` step inside the PiP limits (22 -> 20, 23 -> 25)."""
    snapped = SIZE_STEP_PCT * int(size_pct / SIZE_STEP_PCT + 0.5)
    return max(PIP_SIZE_MIN, min(PIP_SIZE_MAX, snapped))


def corner_distance(a: str, b: str) -> int:
    """0 same corner, 1 a neighbour (same side), 2 the opposite corner."""
    return int(("right" in a) != ("right" in b)) + int(("bottom" in a) != ("bottom" in b))


def layout_distance(a: LayoutKey, b: LayoutKey) -> tuple[int, int]:
    """How far layout `b` is from the wanted `a`: corner first, then size."""
    return corner_distance(a.corner, b.corner), abs(a.size_pct - b.size_pct)


def best_corner(screen: av.VideoFrame | None, size_pct: int) -> Corner:
    """The corner where a camera inset of `size_pct` hides the least of the screen's detail (the
    compositor's own `auto` scoring, on one frame); the conventional corner without a screen."""
    if screen is None:
        return PREFERENCE[0]
    camera = av.VideoFrame(64, 36, "yuv420p")  # only its 16:9 shape matters for the inset
    placement = Placement(interval=1, patience=1)
    compositor.Compositor(
        Layout(corner="auto", size_pct=size_pct), buffers=1, placement=placement
    ).compose(screen, camera)
    return placement.corner or PREFERENCE[0]


@dataclass(frozen=True, slots=True)
class Output:
    """One composite encoder: a layout, a codec, a rung of the composite's ladder."""

    layout: LayoutKey
    codec: str
    rung: str

    def compatible(self, other: Output) -> bool:
        """Whether `other` may stand in for this: the same session, streams, codec and rung
        (a viewer never gets a stream it did not enable, nor a heavier rung than chosen)."""
        return (
            other.layout.session_id == self.layout.session_id
            and other.layout.kinds == self.layout.kinds
            and other.codec == self.codec
            and other.rung == self.rung
        )


@dataclass(frozen=True, slots=True)
class Grant:
    """What a viewer gets for the output it wanted."""

    output: Output
    substitute: bool  # not the layout asked for: the nearest running one (over budget)
    start: bool  # the output is not running yet: the plane starts it
    over_budget: bool = False  # started although over budget (nothing compatible ran)


@dataclass
class OutputPlanner:
    """The running composite outputs and the budget they live under."""

    instance_budget: int
    session_budget: int
    clock: Callable[[], float] = time.monotonic
    running: dict[Hashable, Output] = field(default_factory=dict)
    over_budget_starts: int = 0
    substitutions: int = 0
    _auto: dict[str, tuple[Corner, float]] = field(default_factory=dict)

    def layout(
        self,
        session_id: str,
        corner: str,
        size_pct: int,
        kinds: tuple[str, ...],
        screen: Callable[[], av.VideoFrame | None],
    ) -> LayoutKey:
        """The concrete layout for a choice: size snapped, `auto` resolved (once per session for
        `AUTO_HOLD_S`, from the screen's latest frame, so every auto viewer shares it)."""
        size = snap_size(size_pct)
        if corner not in CORNERS:
            held = self._auto.get(session_id)
            now = self.clock()
            if held is None or now - held[1] > AUTO_HOLD_S:
                held = (best_corner(screen() if "screen" in kinds else None, size), now)
                self._auto[session_id] = held
            corner = held[0]
        return LayoutKey(session_id, corner, size, kinds)

    def plan(self, want: Output) -> Grant:
        """Exact when it runs or fits; else the nearest compatible running output; else start."""
        outputs = set(self.running.values())
        if want in outputs:
            return Grant(want, substitute=False, start=False)
        if self._fits(want):
            return Grant(want, substitute=False, start=True)
        candidates = [o for o in outputs if want.compatible(o)]
        if candidates:
            nearest = min(
                candidates,
                key=lambda o: (*layout_distance(want.layout, o.layout), o.layout.name),
            )
            self.substitutions += 1
            return Grant(nearest, substitute=True, start=False)
        self.over_budget_starts += 1
        return Grant(want, substitute=False, start=True, over_budget=True)

    def track(self, key: Hashable, output: Output) -> None:
        """An encoder for `output` runs under `key` (the plane's encoder key)."""
        self.running[key] = output

    def release(self, key: Hashable) -> None:
        self.running.pop(key, None)

    def forget_session(self, session_id: str) -> None:
        self._auto.pop(session_id, None)

    def counts(self, session_id: str | None = None) -> int:
        return sum(
            1
            for o in set(self.running.values())
            if session_id is None or o.layout.session_id == session_id
        )

    def _fits(self, want: Output) -> bool:
        return (
            self.counts() < self.instance_budget
            and self.counts(want.layout.session_id) < self.session_budget
        )
