"""Per-stream quality requests, validated against the presets of each stream kind."""

from __future__ import annotations

from server.documents import Quality
from server.domain import KIND_RULES
from server.errors import Invalid
from server.validation import get_enum, get_int, only_fields


def validate_quality(kind: str, raw: object) -> Quality:
    """Normalise `{"preset", "fps", "content_hint"}` for one stream kind, filling defaults."""
    rules = KIND_RULES[kind]
    where = f"quality.{kind}"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be an object")
    only_fields(raw, ("preset", "fps", "content_hint"), where)
    preset_name = get_enum(
        raw, "preset", tuple(rules.presets), where=where, default=rules.default_preset
    )
    fps = get_int(raw, "fps", rules.fps_min, rules.fps_max, where=where, default=rules.default_fps)
    hint = get_enum(
        raw, "content_hint", rules.content_hints, where=where, default=rules.default_content_hint
    )
    preset = rules.presets[preset_name]
    return {
        "preset": preset.name,
        "width": preset.width,
        "height": preset.height,
        "fps": fps,
        "content_hint": hint,
    }
