"""Strict parsing of client JSON and typed field readers that raise `Invalid` with a clear message.

Everything a client sends passes through here before it reaches a service or the store: NaN and
Infinity, duplicate keys, operator-looking keys (`$ne`, `a.b`) and wrong types are refused up front.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any, Final

from server.errors import Invalid, NotFound

ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MISSING: Final = object()


def _no_constants(name: str) -> Any:
    raise Invalid(f"{name} is not valid JSON here", code="invalid_json")


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key.startswith("$") or "." in key or "\x00" in key:
            raise Invalid(f"field name {key[:40]!r} is not allowed", code="forbidden_key")
        if key in out:
            raise Invalid(f"duplicate field {key[:40]!r}", code="invalid_json")
        out[key] = value
    return out


def parse_json(body: bytes | str) -> Any:
    """Parse JSON refusing NaN/Infinity, duplicate keys and operator-looking keys."""
    try:
        return json.loads(body, parse_constant=_no_constants, object_pairs_hook=_strict_object)
    except Invalid:
        raise
    except RecursionError:
        raise Invalid("JSON nested too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"body is not valid JSON: {exc}", code="invalid_json") from None


def parse_object(body: bytes | str, *, allow_empty: bool = False) -> dict[str, Any]:
    """Parse a JSON object body; an empty body is `{}` only when `allow_empty`."""
    if allow_empty and not body.strip():
        return {}
    value = parse_json(body)
    if not isinstance(value, dict):
        raise Invalid("body must be a JSON object", code="invalid_json")
    return value


def only_fields(obj: Mapping[str, Any], allowed: Collection[str], where: str = "body") -> None:
    """Refuse unknown fields: a typo should fail loudly, not be ignored."""
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise Invalid(f"{where} has unknown fields: {', '.join(k[:40] for k in unknown)}")


class _Default:
    """Raised internally when a field is absent and its default applies."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _present(obj: Mapping[str, Any], key: str, where: str, default: Any) -> Any:
    """The field's value; `_Default(default)` when absent or null; `Invalid` when also required."""
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise Invalid(f"{where}.{key} is required")
        return _Default(default)
    return value


def get_object(obj: Mapping[str, Any], key: str, where: str = "body") -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Invalid(f"{where}.{key} must be an object")
    return value


def get_str(
    obj: Mapping[str, Any],
    key: str,
    *,
    where: str = "body",
    max_len: int = 200,
    default: Any = _MISSING,
    strip: bool = True,
) -> Any:
    value = _present(obj, key, where, default)
    if isinstance(value, _Default):
        return value.value
    if not isinstance(value, str):
        raise Invalid(f"{where}.{key} must be a string")
    if strip:
        value = value.strip()
    if not value or len(value) > max_len:
        raise Invalid(f"{where}.{key} must be 1 to {max_len} characters")
    if any(ord(ch) < 32 and ch not in "\t" for ch in value):
        raise Invalid(f"{where}.{key} must not contain control characters")
    return value


def get_int(
    obj: Mapping[str, Any],
    key: str,
    lo: int,
    hi: int,
    *,
    where: str = "body",
    default: Any = _MISSING,
) -> Any:
    value = _present(obj, key, where, default)
    if isinstance(value, _Default):
        return value.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{where}.{key} must be an integer")
    if not lo <= value <= hi:
        raise Invalid(f"{where}.{key} must be between {lo} and {hi}")
    return value


def get_enum(
    obj: Mapping[str, Any],
    key: str,
    choices: Collection[str],
    *,
    where: str = "body",
    default: Any = _MISSING,
) -> Any:
    value = _present(obj, key, where, default)
    if isinstance(value, _Default):
        return value.value
    if not isinstance(value, str) or value not in choices:
        raise Invalid(f"{where}.{key} must be one of: {', '.join(choices)}")
    return value


def get_kinds(
    obj: Mapping[str, Any],
    key: str,
    choices: Collection[str],
    *,
    where: str = "body",
    allow_empty: bool = True,
) -> list[str] | None:
    """A list of distinct stream kinds drawn from `choices`, kept in canonical order."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise Invalid(f"{where}.{key} must be a list")
    if not allow_empty and not value:
        raise Invalid(f"{where}.{key} must not be empty")
    for item in value:
        if not isinstance(item, str) or item not in choices:
            raise Invalid(f"{where}.{key} items must be among: {', '.join(choices)}")
    if len(set(value)) != len(value):
        raise Invalid(f"{where}.{key} must not repeat a stream")
    return [kind for kind in choices if kind in value]


def check_id(value: str, what: str = "id") -> str:
    """Ids are opaque, but only from a safe alphabet; anything else cannot exist (404)."""
    if not ID_RE.fullmatch(value):
        raise NotFound(f"{what} not found")
    return value
