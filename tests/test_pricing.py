"""Pricing is exact integer money with a half-up bundle discount."""

from __future__ import annotations

import random

import pytest

from server.errors import Invalid
from server.pricing import (
    bundle_discount,
    max_bundle_discount_pct,
    price_list,
    quote,
    validate_pricing,
)

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
    # (A price list a session may not have, see below: the rounding rule alone.)
    half = {"base": 0, "addons": {"screen": 500, "camera": 501}, "bundle_discount_pct": 50}
    assert bundle_discount(half, frozenset({"screen", "camera"})) == 501


@pytest.mark.parametrize(
    ("price", "cheaper_than", "limit"),
    [
        # The case: both streams R$ 13,50, the screen alone R$ 15,00.
        (
            {"base": 500, "addons": {"screen": 1000, "camera": 700}, "bundle_discount_pct": 50},
            "the screen",
            41,
        ),
        (
            {"base": 200, "addons": {"screen": 300, "camera": 400}, "bundle_discount_pct": 50},
            "the camera",
            42,
        ),
        (
            {"base": 0, "addons": {"screen": 500, "camera": 0}, "bundle_discount_pct": 1},
            "the screen",
            0,
        ),
    ],
)
def test_a_bundle_cheaper_than_a_single_stream_is_refused(
    price: dict, cheaper_than: str, limit: int
) -> None:
    with pytest.raises(Invalid) as caught:
        validate_pricing(price)
    err = caught.value
    assert (err.code, err.field) == ("bundle_cheaper", "pricing.bundle_discount_pct")
    assert err.messages is not None
    assert f"less than {cheaper_than} alone" in err.messages["en"]
    assert f"at most {limit}%" in err.messages["en"] and f"{limit}%" in err.messages["pt-BR"]
    # The limit it suggests is accepted, and one more percent is not.
    assert validate_pricing({**price, "bundle_discount_pct": limit})
    assert max_bundle_discount_pct({**price, "bundle_discount_pct": limit}) == limit


def test_every_accepted_price_list_charges_more_for_more_streams() -> None:
    rng = random.Random(14)
    accepted = 0
    for _ in range(3000):
        price = {
            "base": rng.choice([0, 100, 500]),
            "addons": {"screen": rng.randrange(0, 2000), "camera": rng.randrange(0, 2000)},
            "bundle_discount_pct": rng.randrange(0, 101),
        }
        try:
            validate_pricing(price)
        except Invalid:
            assert price["bundle_discount_pct"] > max_bundle_discount_pct(price)
            continue
        accepted += 1
        both = quote(price, ["screen", "camera"])["amount_centavos"]
        assert both >= quote(price, ["screen"])["amount_centavos"]
        assert both >= quote(price, ["camera"])["amount_centavos"]
    assert accepted > 500


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
