"""Opaque, unguessable identifiers with a readable prefix per kind of thing."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    # 96 random bits: unguessable, and within the `[A-Za-z0-9_-]{1,64}` alphabet checked at the edge.
    return f"{prefix}_{secrets.token_urlsafe(12)}"
