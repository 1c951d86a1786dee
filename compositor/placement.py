"""Smart placement: put the camera in the corner where it hides the least text, without flicker.

Scores come from the kernel's sampled edge measure (``corner_scores``). A new corner must beat the
current one by ``margin_pct`` percent on ``patience`` consecutive evaluations before the overlay
moves, and evaluations run only every ``interval`` frames, so scrolling text or a cursor does not
make the camera jump around.
"""

from __future__ import annotations

from compositor.layout import Corner

# Tie-break order: the conventional corner first.
PREFERENCE: tuple[Corner, ...] = ("bottom-right", "bottom-left", "top-right", "top-left")


class Placement:
    """Hysteresis state for one ``auto`` layout (one per Compositor)."""

    def __init__(self, *, interval: int = 15, patience: int = 3, margin_pct: int = 25) -> None:
        if interval < 1 or patience < 1 or not 0 <= margin_pct < 100:
            raise ValueError("interval and patience must be >= 1 and margin_pct in [0, 100)")
        self.interval = interval
        self.patience = patience
        self.margin_pct = margin_pct
        self.corner: Corner | None = None
        self._frames = 0
        self._candidate: Corner | None = None
        self._streak = 0

    def due(self) -> bool:
        """True when this frame should be scored (the first frame, then every ``interval``)."""
        due = self.corner is None or self._frames % self.interval == 0
        self._frames += 1
        return due

    def update(self, scores: dict[Corner, int]) -> Corner:
        """Feed one evaluation; return the corner to use from now on."""
        best = min(PREFERENCE, key=lambda c: (scores[c], PREFERENCE.index(c)))
        if self.corner is None:
            self.corner = best
            return best
        current = scores[self.corner]
        if best != self.corner and scores[best] * 100 < current * (100 - self.margin_pct):
            self._streak = self._streak + 1 if best == self._candidate else 1
            self._candidate = best
            if self._streak >= self.patience:
                self.corner, self._candidate, self._streak = best, None, 0
        else:
            self._candidate, self._streak = None, 0
        return self.corner

    def reset(self) -> None:
        self.corner, self._candidate, self._streak, self._frames = None, None, 0, 0
