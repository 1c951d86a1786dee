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


MAX_DEPTH: Final = 32

# One text rule for every human-readable field (titles, names, chat, payer info): no C0 controls
# (tab, and newline in multi-line text, excepted), no DEL or C1 controls, no bidi embeddings,
# overrides or isolates (they disguise text), no lone surrogates (not text; the store cannot encode
# them), and no zero-width characters at either edge (invisible padding that makes look-alikes).
_C0: Final = r"\x00-\x08\x0a-\x1f"
_C1: Final = r"\x7f-\x9f"
_BIDI: Final = r"\u202a-\u202e\u2066-\u2069"
_SURROGATES: Final = r"\ud800-\udfff"
_ZERO_WIDTH: Final = r"\u200b-\u200d\u2060\ufeff"
# What `str.strip()` removes (and is not already forbidden): a stripped field cannot start or end
# with these, which lets the OpenAPI pattern promise exactly what the validator accepts.
_SPACE: Final = r"\t \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# (Surrogates stay out of the pattern below: JSON Schema tools cannot compile a class holding them,
# and `check_values` refuses them in every string before any text rule runs.)
_FORBIDDEN: Final = _C0 + _C1 + _BIDI
_FORBIDDEN_RE: Final = re.compile(f"[{_FORBIDDEN}{_SURROGATES}]")
_FORBIDDEN_MULTILINE_RE: Final = re.compile(
    f"[{_FORBIDDEN.replace(r'x0a', r'x0b', 1)}{_SURROGATES}]"
)
_EDGE_RE: Final = re.compile(f"^[{_ZERO_WIDTH}]|[{_ZERO_WIDTH}]$")
# Lone surrogates and NUL are refused in every string of every body, text field or not.
_NEVER_RE: Final = re.compile(rf"[\x00{_SURROGATES}]")
# The same rule as a JSON Schema pattern (the escapes mean the same in Python and ECMA-262 regex):
# plain text with something visible, optionally padded with the whitespace `str.strip()` removes.
TEXT_PATTERN: Final = (
    f"^[{_SPACE}]*[^{_FORBIDDEN}{_SPACE}{_ZERO_WIDTH}]"
    f"([^{_FORBIDDEN}]*[^{_FORBIDDEN}{_SPACE}{_ZERO_WIDTH}])?[{_SPACE}]*$"
)


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` is not acceptable text, or None: the single rule every text field uses."""
    bad = (_FORBIDDEN_MULTILINE_RE if multiline else _FORBIDDEN_RE).search(value)
    if bad is not None:
        ch = bad.group()
        if "\ud800" <= ch <= "\udfff":
            return "is not valid Unicode text (lone surrogate)"
        if "\u202a" <= ch <= "\u2069":
            return f"must not contain bidirectional control characters (U+{ord(ch):04X})"
        return f"must not contain control characters (U+{ord(ch):04X})"
    if _EDGE_RE.search(value):
        return "must not start or end with a zero-width character"
    return None


def check_text(
    value: str, where: str, *, multiline: bool = False, code: str = "invalid_text"
) -> str:
    problem = text_problem(value, multiline=multiline)
    if problem is not None:
        raise Invalid(f"{where} {problem}", code=code)
    return value


def as_int(value: object) -> int | None:
    """`value` as an integer when JSON means one (`35` or `35.0`, never `true`), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


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


def check_values(value: Any, where: str = "body") -> None:
    """Refuse what no field may hold: lone surrogates or NUL in any string (keys too), non-finite
    numbers (`1e999` parses as infinity), and nesting deeper than `MAX_DEPTH`. The offending field
    is named. Iterative, so a deep document cannot exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Invalid(f"{where} is nested deeper than {MAX_DEPTH} levels", code="invalid_json")
        if isinstance(item, str):
            if _NEVER_RE.search(item):
                raise Invalid(
                    f"{path} is not valid text (NUL or lone surrogate)", code="invalid_text"
                )
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise Invalid(f"{path} must be a finite number", code="invalid_json")
        elif isinstance(item, dict):
            for key, sub in item.items():
                if _NEVER_RE.search(key):
                    raise Invalid(f"a field name in {path} is not valid text", code="invalid_text")
                stack.append((sub, f"{path}.{key[:40]}", depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))


def parse_json(body: bytes | str, *, check: bool = True, where: str = "body") -> Any:
    """Parse JSON strictly: UTF-8 only (no other encoding guessed, no encoded surrogates), no
    NaN/Infinity, duplicate keys or operator-looking keys; with `check`, also `check_values`."""
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid(
                f"{where} is not valid UTF-8 (byte {exc.start})", code="invalid_json"
            ) from None
    else:
        text = body
    try:
        value = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_strict_object)
    except Invalid:
        raise
    except RecursionError:
        raise Invalid("JSON nested too deeply", code="invalid_json") from None
    except ValueError as exc:
        raise Invalid(f"{where} is not valid JSON: {exc}", code="invalid_json") from None
    if check:
        check_values(value, where)
    return value


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
    raw_len = len(value)
    if strip:
        value = value.strip()
    if not value or raw_len > max_len:
        raise Invalid(f"{where}.{key} must be 1 to {max_len} characters")
    return check_text(value, f"{where}.{key}")


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
    # JSON has one number type: 35.0 is the integer 35 (as JSON Schema says).
    value = as_int(value)
    if value is None:
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
