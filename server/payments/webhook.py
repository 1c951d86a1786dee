"""Banco Central "API Pix" payment callbacks: HMAC authentication of the raw body, strict parsing.

Providers POST `{"pix": [{"endToEndId", "txid", "valor", "horario", "infoPagador"}]}`. The signature
is checked over the exact bytes received, before any JSON parsing, so nothing unauthenticated is ever
interpreted. Pure functions: the service decides what a callback does to an order.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from server import pix
from server.errors import Invalid, Unauthorized
from server.validation import parse_object

SCHEME: Final = "sha256="
MAX_ITEMS: Final = 100
_TXID_RE: Final = re.compile(r"[A-Za-z0-9]{1,35}")
_E2E_RE: Final = re.compile(r"[A-Za-z0-9]{1,64}")
_VALOR_RE: Final = re.compile(r"(0|[1-9][0-9]{0,9})\.[0-9]{2}")


def sign(secret: str, body: bytes) -> str:
    """The header value a provider sends for `body`: `sha256=<lower-case hex>`."""
    return SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """Raise `Unauthorized` unless `header` is the HMAC-SHA256 of `body`; constant-time compare."""
    if not header:
        raise Unauthorized("missing X-Pix-Signature header", code="missing_signature")
    if not header.startswith(SCHEME):
        raise Unauthorized("X-Pix-Signature must be 'sha256=<hex>'", code="bad_signature")
    expected = sign(secret, body)
    if not hmac.compare_digest(expected.encode(), header.strip().lower().encode()):
        raise Unauthorized("X-Pix-Signature does not match the body", code="bad_signature")


@dataclass(frozen=True, slots=True)
class PixCallback:
    """One confirmed payment as the provider reports it."""

    end_to_end_id: str
    txid: str
    amount_centavos: int
    horario: str | None
    info_pagador: str | None


def _str(item: dict[str, object], key: str, index: int, *, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise Invalid(f"pix[{index}].{key} must be a string", code="invalid_callback")
    return value


def parse_callbacks(body: bytes) -> list[PixCallback]:
    """Parse an (already authenticated) callback body; Invalid for any malformed item."""
    doc = parse_object(body)
    items = doc.get("pix")
    if not isinstance(items, list) or not items:
        raise Invalid(
            'body must be {"pix": [ ... ]} with at least one item', code="invalid_callback"
        )
    if len(items) > MAX_ITEMS:
        raise Invalid(f"at most {MAX_ITEMS} items per callback", code="invalid_callback")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Invalid(f"pix[{i}] must be an object", code="invalid_callback")
        e2e = _str(item, "endToEndId", i) or ""
        txid = _str(item, "txid", i) or ""
        valor = _str(item, "valor", i) or ""
        if not _E2E_RE.fullmatch(e2e):
            raise Invalid(
                f"pix[{i}].endToEndId must be 1-64 letters or digits", code="invalid_callback"
            )
        if not _TXID_RE.fullmatch(txid):
            raise Invalid(f"pix[{i}].txid must be 1-35 letters or digits", code="invalid_callback")
        if not _VALOR_RE.fullmatch(valor):
            raise Invalid(
                f'pix[{i}].valor must be a decimal string like "17.20"', code="invalid_callback"
            )
        horario = _str(item, "horario", i, required=False)
        info = _str(item, "infoPagador", i, required=False)
        out.append(
            PixCallback(
                end_to_end_id=e2e,
                txid=txid,
                amount_centavos=pix.parse_amount(valor),
                horario=horario[:64] if horario else None,
                info_pagador=info[:140] if info else None,
            )
        )
    return out
