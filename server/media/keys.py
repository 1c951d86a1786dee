"""The keys of the media plane's registries: whose frames, at what size, for which rung and codec.

Frozen dataclasses rather than names built as strings and parsed back: finding every encoder of a
stream, or the scaled feed an encoder reads, is a comparison of fields, and a stream id or layout
that happens to contain `@` or `#` cannot be mistaken for another. `str()` gives the readable name
the logs and task names have always used (`stream:<id>@360p#<rung>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.domain import STREAM_KINDS, default_pip
from server.media.composite import LayoutKey


@dataclass(frozen=True, slots=True)
class SourceKey:
    """Frames from one stream's publisher, or from one composite layout's compositor."""

    stream_id: str | None = None
    layout: LayoutKey | None = None

    @classmethod
    def of_stream(cls, stream_id: str) -> SourceKey:
        return cls(stream_id=stream_id)

    @classmethod
    def of_layout(cls, layout: LayoutKey) -> SourceKey:
        return cls(layout=layout)

    def __str__(self) -> str:
        if self.layout is not None:
            return f"composite:{self.layout.name}"
        return f"stream:{self.stream_id}"


@dataclass(frozen=True, slots=True)
class FeedKey:
    """A source's frames scaled to `height` (a `ScaledFeed`); None is the source's own size."""

    source: SourceKey
    height: int | None = None

    def __str__(self) -> str:
        return f"{self.source}@{'full' if self.height is None else f'{self.height}p'}"


@dataclass(frozen=True, slots=True)
class Rendition:
    """What one encoder makes of a source: at a size (None: as it comes) and for a ladder rung
    (None: outside any ladder — the source's own profile, or an explicitly asked size)."""

    source: SourceKey
    height: int | None = None
    rung: str | None = None

    @property
    def feed(self) -> FeedKey:
        return FeedKey(self.source, self.height)

    def __str__(self) -> str:
        if self.height is None and self.rung is None:
            return str(self.source)
        return str(self.feed) + (f"#{self.rung}" if self.rung is not None else "")


@dataclass(frozen=True, slots=True)
class EncoderKey:
    """One shared encoder: a rendition in one codec."""

    rendition: Rendition
    codec: str

    def __str__(self) -> str:
        return f"{self.rendition} codec={self.codec}"


def layout_of(prefs: Mapping[str, Any]) -> LayoutKey:
    """The composite a viewer's preferences ask for; picture-in-picture fields it lacks take the
    domain's defaults (`server.domain.default_pip`)."""
    pip = {**default_pip(), **(prefs.get("pip") or {})}
    kinds = tuple(k for k in STREAM_KINDS if k in prefs["enabled_streams"])
    return LayoutKey(prefs["session_id"], str(pip["corner"]), int(pip["size_pct"]), kinds)
