"""Vocabulary of the product: stream kinds, statuses, quality presets, layout choices, view modes.

The one place for these facts: the validators (`server.sessions`, `server.quality`, `server.whip`),
the JSON Schemas and so the OpenAPI document (`server.schemas`), the metrics labels and the web client
(which loads `vocabulary()` as `/static/js/vocabulary.js`, or any client as `GET /api/v1/vocabulary`)
all read them from here. The picture-in-picture corners, limits and defaults are the compositor's own
geometry rules (`compositor.layout`, which may not import `server`) and are re-exported here.
`tests/test_vocabulary.py` checks that no other module or page writes them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict, get_args

from compositor.layout import (
    CORNER_CHOICES,
    CORNERS,
    DEFAULT_CORNER,
    DEFAULT_SIZE_PCT,
    MAX_SIZE_PCT,
    MIN_SIZE_PCT,
)

StreamKind = Literal["screen", "camera"]
STREAM_KINDS: Final[tuple[StreamKind, ...]] = get_args(StreamKind)

SessionStatus = Literal["live", "ended"]
SESSION_STATUSES: Final[tuple[SessionStatus, ...]] = get_args(SessionStatus)
StreamStatus = Literal["pending", "live", "stopped", "failed"]
STREAM_STATUSES: Final[tuple[StreamStatus, ...]] = get_args(StreamStatus)
ViewMode = Literal["separate", "composite"]
VIEW_MODES: Final[tuple[ViewMode, ...]] = get_args(ViewMode)
DEFAULT_VIEW_MODE: Final[ViewMode] = "separate"
# A viewer's quality choice that follows its connection (adaptive delivery); otherwise a rung's name.
QUALITY_AUTO: Final = "auto"

# Picture-in-picture: where the camera goes and how wide it is (percent of the screen width).
PIP_CORNERS: Final = CORNER_CHOICES  # the four corners plus "auto" (least busy corner)
PIP_FIXED_CORNERS: Final = CORNERS  # what a corner resolves to (and what `?corner=` accepts)
PIP_SIZE_MIN: Final = MIN_SIZE_PCT
PIP_SIZE_MAX: Final = MAX_SIZE_PCT


class Pip(TypedDict):
    """A viewer's picture-in-picture choice as stored and served."""

    corner: str
    size_pct: int


def default_pip() -> Pip:
    """A fresh copy of the default layout (callers may change theirs)."""
    return {"corner": DEFAULT_CORNER, "size_pct": DEFAULT_SIZE_PCT}


@dataclass(frozen=True, slots=True)
class Preset:
    """A named resolution with the frame-rate range and content hints allowed for one stream kind."""

    name: str
    width: int
    height: int
    label: str = ""  # how the web client names it, when not just `name`


SCREEN_PRESETS: Final[dict[str, Preset]] = {
    p.name: p
    for p in (
        Preset("720p", 1280, 720),
        Preset("1080p", 1920, 1080),
        Preset("1440p", 2560, 1440),
        Preset("2160p", 3840, 2160, "4K (2160p)"),
    )
}
CAMERA_PRESETS: Final[dict[str, Preset]] = {
    p.name: p
    for p in (
        Preset("360p", 640, 360),
        Preset("480p", 854, 480),
        Preset("720p", 1280, 720),
        Preset("1080p", 1920, 1080),
    )
}


@dataclass(frozen=True, slots=True)
class KindRules:
    """What quality a stream kind accepts, and what it gets when the client says nothing."""

    presets: dict[str, Preset]
    fps_min: int
    fps_max: int
    content_hints: tuple[str, ...]
    default_preset: str
    default_fps: int
    fps_steps: tuple[int, ...]  # the frame rates the studio offers, inside fps_min..fps_max

    @property
    def default_content_hint(self) -> str:
        return self.content_hints[0]


KIND_RULES: Final[dict[str, KindRules]] = {
    # Screens favour resolution (text must stay readable) over frame rate.
    "screen": KindRules(SCREEN_PRESETS, 5, 30, ("detail", "text"), "1080p", 15, (5, 10, 15, 30)),
    # Cameras favour motion over resolution.
    "camera": KindRules(CAMERA_PRESETS, 15, 30, ("motion",), "720p", 30, (15, 24, 30)),
}


# How a server encoder treats a picture, chosen by the stream's content hint. `text` (the screen's
# `detail` and `text` hints): keep resolution, quantise finely, give up frames first. `motion` (the
# camera's hint): keep the frame rate, give up resolution first.
Tuning = Literal["text", "motion"]
TEXT_HINTS: Final[tuple[str, ...]] = KIND_RULES["screen"].content_hints


def tuning_for(content_hint: str) -> Tuning:
    return "text" if content_hint in TEXT_HINTS else "motion"


@dataclass(frozen=True, slots=True)
class StreamQuality:
    """A stream's quality as the media plane uses it: its preset (whose size caps every server
    encode of the stream), its frame rate and its content hint (which picks the encoder tuning).

    Built from the stored `quality` document (`server.quality.validate_quality` wrote it); a stream
    stored before quality existed gets its kind's defaults.
    """

    kind: StreamKind
    preset: Preset
    fps: int
    content_hint: str

    @property
    def tuning(self) -> Tuning:
        return tuning_for(self.content_hint)

    @property
    def max_height(self) -> int:
        return self.preset.height

    @classmethod
    def of(cls, kind: StreamKind, doc: Mapping[str, Any] | None) -> StreamQuality:
        rules = KIND_RULES[kind]
        doc = doc or {}
        preset = rules.presets.get(
            str(doc.get("preset") or ""), rules.presets[rules.default_preset]
        )
        fps = int(doc.get("fps") or rules.default_fps)
        hint = str(doc.get("content_hint") or "")
        return cls(
            kind,
            preset,
            max(rules.fps_min, min(fps, rules.fps_max)),
            hint if hint in rules.content_hints else rules.default_content_hint,
        )


def vocabulary() -> dict[str, Any]:
    """Everything above as JSON: what `GET /api/v1/vocabulary` and the web client's module serve."""
    return {
        "stream_kinds": list(STREAM_KINDS),
        "session_statuses": list(SESSION_STATUSES),
        "stream_statuses": list(STREAM_STATUSES),
        "view_modes": list(VIEW_MODES),
        "default_view_mode": DEFAULT_VIEW_MODE,
        "quality_auto": QUALITY_AUTO,
        "pip": {
            "corners": list(PIP_CORNERS),
            "fixed_corners": list(PIP_FIXED_CORNERS),
            "size_min": PIP_SIZE_MIN,
            "size_max": PIP_SIZE_MAX,
            "default": dict(default_pip()),
        },
        "quality": {
            kind: {
                "presets": {
                    p.name: {"width": p.width, "height": p.height, "label": p.label or p.name}
                    for p in rules.presets.values()
                },
                "fps_min": rules.fps_min,
                "fps_max": rules.fps_max,
                "content_hints": list(rules.content_hints),
                "default_preset": rules.default_preset,
                "default_fps": rules.default_fps,
                "fps_steps": list(rules.fps_steps),
                "default_content_hint": rules.default_content_hint,
            }
            for kind, rules in KIND_RULES.items()
        },
    }
