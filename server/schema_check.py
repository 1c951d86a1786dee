"""A validator for the JSON Schema subset `server.schemas` uses (types, enums, bounds, patterns,
required and unknown properties, items, `allOf`/`anyOf`/`not`/`if`-`then`, `$ref`).

Small on purpose: the server's request schemas are its own, and a failure must name the field and
may carry the API's error code (`x-error-code`, or `x-error` for a rule spanning fields).
Python's `re` reads the patterns; `integer` accepts `35.0`, as JSON Schema does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from server.errors import Invalid
from server.validation import TEXT_PATTERN, as_int, text_problem

REF_PREFIX: Final = "#/components/schemas/"
Components = Mapping[str, Mapping[str, Any]]

_TYPES: Final = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: as_int(v) is not None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _ok(value: Any, schema: Mapping[str, Any], where: str, components: Components) -> bool:
    try:
        check(value, schema, where, components)
    except Invalid:
        return False
    return True


def field_of(where: str) -> str | None:
    """The request field a location names (`body.pix.key` -> `pix.key`); None for the body."""
    if where == "body":
        return None
    return where.removeprefix("body.")


def _fail(schema: Mapping[str, Any], where: str, message: str) -> Invalid:
    """A subschema may name its own error: `x-error` (code, message, and optionally the field and
    the message per language) for a rule that spans fields, e.g. a priced session needing a
    receiver; `x-error-code` for the code alone. Either way the error names the field."""
    custom = schema.get("x-error")
    if custom:
        return Invalid(
            custom["message"],
            code=custom["code"],
            field=custom.get("field", field_of(where)),
            messages=custom.get("messages"),
        )
    return Invalid(message, code=schema.get("x-error-code"), field=field_of(where))


def check(value: Any, schema: Mapping[str, Any], where: str, components: Components) -> None:
    """Raise `Invalid` (naming the field at `where`) unless `value` conforms to `schema`;
    `$ref`s point into `components`."""
    if "$ref" in schema:
        check(value, components[schema["$ref"].removeprefix(REF_PREFIX)], where, components)
        return
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in names):
            raise _fail(schema, where, f"{where} must be {' or '.join(_article(t) for t in names)}")
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        raise _fail(schema, where, f"{where} must be one of: {', '.join(map(str, schema['enum']))}")
    if "const" in schema and not _same(value, schema["const"]):
        raise _fail(schema, where, f"{where} must be {schema['const']!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise _fail(schema, where, f"{where} must not be empty")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise _fail(schema, where, f"{where} must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            if schema["pattern"] == TEXT_PATTERN:
                stripped = value.strip()
                problem = text_problem(stripped) or (text_problem(value) if stripped else None)
                if problem is not None:
                    raise Invalid(f"{where} {problem}", code="invalid_text", field=field_of(where))
                raise _fail(schema, where, f"{where} must not be blank")
            raise _fail(
                schema, where, f"{where} is not in the expected form (see the OpenAPI pattern)"
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise _fail(schema, where, f"{where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise _fail(schema, where, f"{where} must be at most {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise _fail(schema, where, f"{where} must be more than {schema['exclusiveMinimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise _fail(schema, where, f"{where} must have at least {schema['minItems']} item(s)")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise _fail(schema, where, f"{where} must have at most {schema['maxItems']} items")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            raise _fail(schema, where, f"{where} must not repeat an item")
        for i, item in enumerate(value if "items" in schema else ()):
            check(item, schema["items"], f"{where}[{i}]", components)
        if "contains" in schema and not any(
            _ok(v, schema["contains"], where, components) for v in value
        ):
            raise _fail(schema, where, f"{where} lacks a required item")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                raise _fail(schema, f"{where}.{key}", f"{where}.{key} is required")
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            unknown = sorted(set(value) - set(props))
            if unknown:
                listed = ", ".join(k[:40] for k in unknown)
                raise _fail(schema, where, f"{where} has unknown fields: {listed}")
        for key, sub in props.items():
            if key in value:
                check(value[key], sub, f"{where}.{key}", components)
    for sub in schema.get("allOf", ()):
        check(value, sub, where, components)
    if "anyOf" in schema and not any(_ok(value, sub, where, components) for sub in schema["anyOf"]):
        check(value, schema["anyOf"][0], where, components)  # raise the first alternative's reason
        raise _fail(schema, where, f"{where} is not in the expected form")
    if "not" in schema and _ok(value, schema["not"], where, components):
        raise _fail(schema, where, f"{where} is not allowed here")
    if "if" in schema and "then" in schema and _ok(value, schema["if"], where, components):
        try:
            check(value, schema["then"], where, components)
        except Invalid as exc:
            custom = _fail(schema, where, exc.message)
            custom.field = custom.field if schema.get("x-error") else exc.field
            raise custom from None


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    return bool(value == expected)


def _article(type_name: str) -> str:
    return {"integer": "an integer", "array": "a list", "object": "an object"}.get(
        type_name, f"a {type_name}"
    )
