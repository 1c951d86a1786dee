"""Pricing is exact integer money with a half-up bundle discount."""

from __future__ import annotations

import pytest

from server.errors import Invalid
from server.pricing import bundle_discount, price_list, quote, validate_pricing

PRICING = validate_pricing(
    {"base": 500, "addons": {"screen": 1000, "camera": 700}, "bundle_discount_pct": 15}
)


def test_quote_itemises_only_enabled_streams() -> None:
    q = quote(PRICING, ["screen"])
    assert q == {
        "amount_centavos": 1500,
        "currency": "BRL",
        "items": [
            {"code": "base", "label": "Base access", "amount_centavos": 500},
            {"code": "addon:screen", "label": "Screen stream", "amount_centavos": 1000},
        ],
    }


def test_bundle_discount_applies_to_addons_rounded_half_up() -> None:
    # 15 % of 1700 = 255 exactly; 500 + 1700 - 255 = 1945.
    q = quote(PRICING, ["camera", "screen"])
    assert q["amount_centavos"] == 1945
    assert q["items"][-1] == {
        "code": "bundle_discount",
        "label": "Screen + camera bundle (-15%)",
        "amount_centavos": -255,
    }
    # 33 % of 1001 = 330.33 → 330; 50 % of 1001 = 500.5 → 501 (half up).
    odd = validate_pricing(
        {"base": 0, "addons": {"screen": 500, "camera": 501}, "bundle_discount_pct": 33}
    )
    assert bundle_discount(odd, frozenset({"screen", "camera"})) == 330
    half = validate_pricing(
        {"base": 0, "addons": {"screen": 500, "camera": 501}, "bundle_discount_pct": 50}
    )
    assert bundle_discount(half, frozenset({"screen", "camera"})) == 501


def test_nothing_enabled_costs_nothing() -> None:
    assert quote(PRICING, []) == {"amount_centavos": 0, "currency": "BRL", "items": []}


def test_price_list() -> None:
    pl = price_list(PRICING)
    assert pl["from_centavos"] == 1200 and pl["bundle_centavos"] == 1945
    assert pl["currency"] == "BRL"


def test_missing_pricing_is_free() -> None:
    assert quote(validate_pricing(None), ["screen", "camera"])["amount_centavos"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        {"base": -1},
        {"base": 1.5},
        {"base": "100"},
        {"base": True},
        {"base": 10**12},
        {"addons": {"screen": -5}},
        {"addons": {"audio": 5}},
        {"addons": []},
        {"bundle_discount_pct": 101},
        {"bundle_discount_pct": 7.5},
        {"unknown": 1},
        [],
        "free",
    ],
)
def test_rejects_non_money(raw: object) -> None:
    with pytest.raises(Invalid):
        validate_pricing(raw)
