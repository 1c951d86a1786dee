"""The session's PIX receiver, validated once at session start so every later order can be built."""

from __future__ import annotations

from typing import Any

from server import pix
from server.errors import Invalid

# The longest values an order adds, so a receiver that passes here can never fail at join time.
_WORST_TXID = "X" * pix.TXID_MAX
_WORST_AMOUNT = 99_999_999_99


def validate_receiver(raw: object) -> dict[str, Any]:
    """`{"key", "merchant_name", "merchant_city"}` checked against the BR Code's limits.

    Name and city are kept as given (trimmed) for display; the limits apply to what goes into the
    code after removing accents, which is what `pix.merchant_name`/`merchant_city` produce.
    """
    if not isinstance(raw, dict):
        raise Invalid("pix must be an object with key, merchant_name and merchant_city")
    unknown = sorted(set(raw) - {"key", "merchant_name", "merchant_city"})
    if unknown:
        raise Invalid(f"pix has unknown fields: {', '.join(k[:40] for k in unknown)}")
    missing = [k for k in ("key", "merchant_name", "merchant_city") if raw.get(k) in (None, "")]
    if missing:
        raise Invalid(f"pix is missing {', '.join(missing)}")
    key = raw["key"].strip() if isinstance(raw["key"], str) else raw["key"]
    kind = pix.key_type(key)
    name = raw["merchant_name"].strip() if isinstance(raw["merchant_name"], str) else None
    city = raw["merchant_city"].strip() if isinstance(raw["merchant_city"], str) else None
    if name is None or city is None:
        raise Invalid("pix.merchant_name and pix.merchant_city must be strings")
    # Build the largest payload an order could need: any limit it breaks is reported now.
    pix.build(
        pix.BrCode(
            key=key,
            merchant_name=name,
            merchant_city=city,
            amount_centavos=_WORST_AMOUNT,
            txid=_WORST_TXID,
            single_use=True,
        )
    )
    return {"key": key, "key_type": kind, "merchant_name": name, "merchant_city": city}
