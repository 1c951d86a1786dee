"""Banco Central "API Pix" payment callbacks: HMAC authentication of the raw body, strict parsing.

Providers POST `{"pix": [{"endToEndId", "txid", "valor", "horario", "infoPagador"}]}`. The signature
is checked over the exact bytes received, before any JSON parsing, so nothing unauthenticated is ever
interpreted. Pure functions: the service decides what a callback does to an order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Final

from server import pix
from server.errors import Invalid, Unauthorized
from server.validation import check_text, check_values, parse_json

SCHEME: Final = "sha256="
MAX_ITEMS: Final = 100
# Also the OpenAPI schema's patterns (`server.schemas`), anchored there.
TXID_PATTERN: Final = r"[A-Za-z0-9]{1,35}"
E2E_PATTERN: Final = r"[A-Za-z0-9]{1,64}"
VALOR_PATTERN: Final = r"(0|[1-9][0-9]{0,9})\.[0-9]{2}"
_TXID_RE: Final = re.compile(TXID_PATTERN)
_E2E_RE: Final = re.compile(E2E_PATTERN)
_VALOR_RE: Final = re.compile(VALOR_PATTERN)


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


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """One callback item that could not be read; the batch's other items still apply."""

    index: int
    reason: str
    txid: str | None
    raw: str  # the item as ASCII-escaped JSON (storable even when it holds lone surrogates)


def parse_callbacks(body: bytes) -> list[PixCallback | RejectedItem]:
    """Parse an (already authenticated) callback body item by item.

    A malformed envelope (not `{"pix": [...]}`, too many items) is `Invalid` as a whole; a malformed
    item becomes a `RejectedItem` in its place, so one bad item (a lone surrogate in
    `infoPagador`, a missing `valor`) can never keep the others from being credited.
    """
    doc = parse_json(body, check=False)
    if not isinstance(doc, dict):
        raise Invalid("body must be a JSON object", code="invalid_callback")
    # The envelope around the items follows the strict rules as a whole; the items one by one.
    check_values({key: value for key, value in doc.items() if key != "pix"})
    items = doc.get("pix")
    if not isinstance(items, list) or not items:
        raise Invalid(
            'body must be {"pix": [ ... ]} with at least one item', code="invalid_callback"
        )
    if len(items) > MAX_ITEMS:
        raise Invalid(f"at most {MAX_ITEMS} items per callback", code="invalid_callback")
    out: list[PixCallback | RejectedItem] = []
    for i, item in enumerate(items):
        try:
            out.append(_parse_item(item, i))
        except Invalid as exc:
            txid = item.get("txid") if isinstance(item, dict) else None
            safe_txid = txid if isinstance(txid, str) and _TXID_RE.fullmatch(txid) else None
            raw = json.dumps(item, ensure_ascii=True, sort_keys=True)[:2000]
            out.append(RejectedItem(i, exc.message, safe_txid, raw))
    return out


def _parse_item(item: object, i: int) -> PixCallback:
    if not isinstance(item, dict):
        raise Invalid(f"pix[{i}] must be an object", code="invalid_callback")
    check_values(item, f"pix[{i}]")
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
    if horario:
        check_text(horario, f"pix[{i}].horario", code="invalid_callback")
    if info:
        check_text(info, f"pix[{i}].infoPagador", multiline=True, code="invalid_callback")
    return PixCallback(
        end_to_end_id=e2e,
        txid=txid,
        amount_centavos=pix.parse_amount(valor),
        horario=horario[:64] if horario else None,
        info_pagador=info[:140] if info else None,
    )
