"""Pure pricing: what a viewer pays for the streams it enables, in integer centavos (BRL).

Rules: a base rate whenever at least one stream is enabled, an add-on per enabled stream kind, and a
bundle discount (a percent of the add-ons) when both screen and camera are enabled, rounded half up to
whole centavos. No floats anywhere: money is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from server.domain import STREAM_KINDS
from server.errors import Invalid
from server.validation import as_int

CURRENCY: Final = "BRL"
# R$ 100.000,00: anything above is far more likely a unit mistake (reais sent as centavos) than a price.
MAX_AMOUNT_CENTAVOS: Final = 10_000_000
BUNDLE: Final = frozenset({"screen", "camera"})
LABELS: Final = {"base": "Base access", "screen": "Screen stream", "camera": "Camera stream"}

FREE: Final[dict[str, Any]] = {
    "base": 0,
    "addons": {kind: 0 for kind in STREAM_KINDS},
    "bundle_discount_pct": 0,
}


def _amount(value: object, where: str) -> int:
    # bool is an int subclass in Python; `true` is not a price. `500.0` is the integer 500.
    value = as_int(value)
    if value is None:
        raise Invalid(f"{where} must be an integer number of centavos", code="invalid_amount")
    if not 0 <= value <= MAX_AMOUNT_CENTAVOS:
        raise Invalid(
            f"{where} must be between 0 and {MAX_AMOUNT_CENTAVOS} centavos", code="invalid_amount"
        )
    return value


def validate_pricing(raw: object) -> dict[str, Any]:
    """Normalise a client's pricing object; raise `Invalid` for anything that is not exact money."""
    if raw is None:
        return {"base": 0, "addons": dict(FREE["addons"]), "bundle_discount_pct": 0}
    if not isinstance(raw, dict):
        raise Invalid("pricing must be an object")
    unknown = set(raw) - {"base", "addons", "bundle_discount_pct"}
    if unknown:
        raise Invalid(f"pricing has unknown fields: {', '.join(sorted(unknown))}")
    addons_raw = raw.get("addons", {})
    if not isinstance(addons_raw, dict):
        raise Invalid("pricing.addons must be an object")
    unknown_kinds = set(addons_raw) - set(STREAM_KINDS)
    if unknown_kinds:
        raise Invalid(
            f"pricing.addons has unknown stream kinds: {', '.join(sorted(unknown_kinds))}"
        )
    discount = as_int(raw.get("bundle_discount_pct", 0))
    if discount is None or not 0 <= discount <= 100:
        raise Invalid("pricing.bundle_discount_pct must be an integer from 0 to 100")
    price = {
        "base": _amount(raw.get("base", 0), "pricing.base"),
        "addons": {k: _amount(addons_raw.get(k, 0), f"pricing.addons.{k}") for k in STREAM_KINDS},
        "bundle_discount_pct": discount,
    }
    check_monotonic(price)
    return price


def max_bundle_discount_pct(pricing: Mapping[str, Any]) -> int:
    """The largest bundle discount that keeps both streams at least as dear as either alone:
    the discount may not exceed the cheaper add-on (or adding it would lower the price)."""
    addons = sum(pricing["addons"].get(kind, 0) for kind in BUNDLE)
    cheaper = min(pricing["addons"].get(kind, 0) for kind in BUNDLE)
    if addons == 0:
        return 100
    return next(pct for pct in range(100, -1, -1) if (addons * pct + 50) // 100 <= cheaper)


def check_monotonic(pricing: Mapping[str, Any]) -> None:
    """Refuse a price list where more streams cost less than fewer: a viewer who enabled both
    would pay less than one who enabled only the screen, and a viewer adding a stream would be
    owed money. The message says which set is cheaper and the largest discount that works."""
    both = quote(pricing, BUNDLE)["amount_centavos"]
    for kind in STREAM_KINDS:
        alone = quote(pricing, [kind])["amount_centavos"]
        if both < alone:
            pct = pricing["bundle_discount_pct"]
            limit = max_bundle_discount_pct(pricing)
            label = {"screen": ("the screen", "só a tela"), "camera": ("the camera", "só a câmera")}
            en = (
                f"With a {pct}% bundle discount, screen + camera would cost {brl(both)}, less "
                f"than {label[kind][0]} alone ({brl(alone)}). Use a discount of at most "
                f"{limit}%, or raise the cheaper add-on."
            )
            pt = (
                f"Com {pct}% de desconto no pacote, tela + câmera custariam {brl(both)}, menos "
                f"que {label[kind][1]} ({brl(alone)}). Use no máximo {limit}% de desconto, ou "
                "aumente o adicional mais barato."
            )
            raise Invalid(
                f"pricing.bundle_discount_pct: {en}",
                code="bundle_cheaper",
                field="pricing.bundle_discount_pct",
                messages={"en": en, "pt-BR": pt},
            )


def brl(centavos: int) -> str:
    """`1350` → `R$ 13,50` (Brazilian notation), for messages people read."""
    whole, cents = divmod(abs(centavos), 100)
    sign = "-" if centavos < 0 else ""
    return f"{sign}R$ {whole:,}".replace(",", ".") + f",{cents:02d}"


def bundle_discount(pricing: Mapping[str, Any], enabled: frozenset[str]) -> int:
    """Centavos off when the whole bundle is enabled: percent of the add-ons, rounded half up."""
    if not enabled >= BUNDLE:
        return 0
    addons = sum(pricing["addons"].get(kind, 0) for kind in BUNDLE)
    return (addons * pricing["bundle_discount_pct"] + 50) // 100


def quote(pricing: Mapping[str, Any], enabled: Iterable[str]) -> dict[str, Any]:
    """An itemised quote for one viewer's enabled stream kinds."""
    kinds = frozenset(enabled)
    items: list[dict[str, Any]] = []
    if kinds:
        items.append({"code": "base", "label": LABELS["base"], "amount_centavos": pricing["base"]})
        for kind in STREAM_KINDS:
            if kind in kinds:
                items.append(
                    {
                        "code": f"addon:{kind}",
                        "label": LABELS[kind],
                        "amount_centavos": pricing["addons"].get(kind, 0),
                    }
                )
        discount = bundle_discount(pricing, kinds)
        if discount:
            items.append(
                {
                    "code": "bundle_discount",
                    "label": f"Screen + camera bundle (-{pricing['bundle_discount_pct']}%)",
                    "amount_centavos": -discount,
                }
            )
    return {
        "amount_centavos": sum(item["amount_centavos"] for item in items),
        "currency": CURRENCY,
        "items": items,
    }


def price_list(pricing: Mapping[str, Any]) -> dict[str, Any]:
    """What a session charges, for display before joining (status and the stream list)."""
    return {
        "currency": CURRENCY,
        "base_centavos": pricing["base"],
        "addons_centavos": dict(pricing["addons"]),
        "bundle_discount_pct": pricing["bundle_discount_pct"],
        "from_centavos": min(quote(pricing, [kind])["amount_centavos"] for kind in STREAM_KINDS),
        "bundle_centavos": quote(pricing, BUNDLE)["amount_centavos"],
    }


def is_free(pricing: Mapping[str, Any]) -> bool:
    return pricing["base"] == 0 and not any(pricing["addons"].values())
