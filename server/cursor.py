"""Opaque page cursors: the sort key of the last item of a page, for keyset pagination.

A cursor is base64url JSON a client passes back unchanged; it names a position, not an offset, so
items created or removed between pages never shift the pages that follow.
"""

from __future__ import annotations

import base64
import binascii
import json

from server.errors import Invalid

_MAX_CHARS = 512


def encode(*key: str) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, parts: int) -> tuple[str, ...]:
    """The key `encode` was given; anything else is 400 `invalid_cursor`."""
    bad = Invalid("cursor is not one this server returned", code="invalid_cursor")
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CHARS:
        raise bad
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (
        not isinstance(key, list)
        or len(key) != parts
        or not all(isinstance(k, str) and 0 < len(k) <= 100 for k in key)
    ):
        raise bad
    return tuple(key)
