"""Vocabulary of the product: stream kinds, statuses, quality presets, layout choices.

One place for the enumerations so the validators, the store, the OpenAPI document and the web client
agree on every allowed value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

StreamKind = Literal["screen", "camera"]
STREAM_KINDS: Final[tuple[str, ...]] = ("screen", "camera")
# Reserved so stored documents and clients can grow an audio-only stream without a migration.
FUTURE_STREAM_KINDS: Final[tuple[str, ...]] = ("audio",)

SESSION_STATUSES: Final[tuple[str, ...]] = ("live", "ended")
STREAM_STATUSES: Final[tuple[str, ...]] = ("pending", "live", "stopped", "failed")
VIEW_MODES: Final[tuple[str, ...]] = ("separate", "composite")
PIP_CORNERS: Final[tuple[str, ...]] = (
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
    "auto",
)
PIP_SIZE_MIN: Final = 10
PIP_SIZE_MAX: Final = 40


@dataclass(frozen=True, slots=True)
class Preset:
    """A named resolution with the frame-rate range and content hints allowed for one stream kind."""

    name: str
    width: int
    height: int


SCREEN_PRESETS: Final[dict[str, Preset]] = {
    p.name: p
    for p in (
        Preset("720p", 1280, 720),
        Preset("1080p", 1920, 1080),
        Preset("1440p", 2560, 1440),
        Preset("2160p", 3840, 2160),
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


KIND_RULES: Final[dict[str, KindRules]] = {
    # Screens favour resolution (text must stay readable) over frame rate.
    "screen": KindRules(SCREEN_PRESETS, 5, 30, ("detail", "text"), "1080p", 15),
    # Cameras favour motion over resolution.
    "camera": KindRules(CAMERA_PRESETS, 15, 30, ("motion",), "720p", 30),
}
