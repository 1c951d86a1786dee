"""PIX orders, the payment webhook and per-stream entitlements, over the real app on SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.testing

from multistream.app import make_app
from server import pix
from server.auth import Claims
from server.clock import utc_now
from server.errors import PaymentRequired
from server.lifespan import open_services
from server.payments import sign
from server.payments.service import entitled_from
from server.settings import Secret
from tests.api_helpers import (
    FREE_BODY,
    PREFIX,
    START_BODY,
    assert_error,
    make_broadcaster,
    snapshot,
)
from tests.conftest import Client

# The whole module runs on SQLite and on MongoDB (the wire server started by conftest).
pytestmark = pytest.mark.store_backends

WEBHOOK = "/api/v1/payments/pix/webhook"
SECRET = "webhook-secret"  # what tests/conftest.py configures
PRICING = START_BODY["pricing"]  # base 500, screen 1000, camera 700, bundle -15 % of add-ons


def signed(body: Any, secret: str = SECRET) -> dict[str, Any]:
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return {
        "raw": raw,
        "headers": {"X-Pix-Signature": sign(secret, raw), "Content-Type": "application/json"},
    }


def callback(txid: str, valor: str, e2e: str = "E12345678202611241200abcdefghijk") -> dict:
    return {
        "pix": [
            {
                "endToEndId": e2e,
                "txid": txid,
                "valor": valor,
                "horario": "2026-11-24T12:00:00.000Z",
                "infoPagador": "obrigado",
            }
        ]
    }


async def start(api: Client, body: dict | None = None) -> str:
    r = await api.post(f"{PREFIX}/session/start", body or START_BODY, token=api.broadcaster_token)
    assert r.status == 201, r.body
    return r.json["session"]["id"]


async def join(api: Client, sid: str, token: str | None = None) -> dict:
    r = await api.post(f"{PREFIX}/session/{sid}/join", token=token)
    assert r.status == 200, r.body
    return r.json


async def set_enabled(api: Client, sid: str, token: str, kinds: list[str]) -> dict:
    r = await api.put(
        f"{PREFIX}/session/{sid}/preferences", {"enabled_streams": kinds}, token=token
    )
    assert r.status == 200, r.body
    return r.json


async def pay(api: Client, txid: str, valor: str, e2e: str = "E1") -> dict:
    r = await api.post(WEBHOOK, **signed(callback(txid, valor, e2e)))
    assert r.status == 200, r.body
    return r.json["results"][0]


def viewer(session_id: str, viewer_id: str) -> Claims:
    return Claims("viewer", session_id, viewer_id, 2**40)


# -- the rule, pure ------------------------------------------------------------------------------


def test_entitlement_rule() -> None:
    price = {"base": 500, "addons": {"screen": 1000, "camera": 700}, "bundle_discount_pct": 15}
    assert entitled_from(price, []) == set()
    screen = {"streams": ["screen"], "amount_centavos": 1500}
    assert entitled_from(price, [screen]) == {"screen"}
    diff = {"streams": ["screen", "camera"], "amount_centavos": 445}
    assert entitled_from(price, [screen, diff]) == {"screen", "camera"}
    # A free add-on needs no order once the base is paid.
    half_free = {"base": 500, "addons": {"screen": 1000, "camera": 0}, "bundle_discount_pct": 0}
    assert entitled_from(half_free, [screen]) == {"screen", "camera"}
    assert entitled_from(half_free, []) == set()


# -- orders --------------------------------------------------------------------------------------


async def test_join_on_priced_session_answers_a_payable_order(api) -> None:
    sid = await start(api)
    joined = await join(api, sid)
    payment = joined["payment"]
    assert payment["status"] == "pending"
    assert payment["amount_centavos"] == joined["quote"]["amount_centavos"] == 1945
    assert payment["streams"] == ["screen", "camera"]
    assert payment["qr_url"] == f"/api/v1/payments/orders/{payment['order_id']}/qr.svg"
    code = pix.parse(payment["pix_copia_e_cola"])
    assert code == pix.BrCode(
        key="dev@example.com",
        merchant_name="Ana Dev",
        merchant_city="SAO PAULO",
        amount_centavos=1945,
        txid=payment["txid"],
        single_use=True,
    )
    assert "540519.45" in payment["pix_copia_e_cola"]

    r = await api.get(payment["qr_url"])
    assert r.status == 200 and r.headers["Content-Type"] == "image/svg+xml"
    assert ET.fromstring(r.body).tag.endswith("svg")

    r = await api.get(
        f"/api/v1/payments/orders/{payment['order_id']}", token=joined["viewer_token"]
    )
    assert r.status == 200 and r.json["order"]["status"] == "pending"


async def test_free_session_needs_no_order(api, server) -> None:
    sid = await start(api, FREE_BODY)
    joined = await join(api, sid)
    assert "payment" not in joined
    session = await server.services.sessions.get_session(sid)
    payments = server.services.payments
    assert await payments.entitled_kinds(session, joined["viewer_id"]) == {"screen", "camera"}
    await payments.require_entitled(session, joined["viewer_id"], ["screen", "camera"])
    assert await server.services.store.count("orders") == 0


async def test_repeated_join_reuses_the_pending_order(api, server) -> None:
    sid = await start(api)
    first = await join(api, sid)
    again = await join(api, sid, token=first["viewer_token"])
    assert again["viewer_id"] == first["viewer_id"]
    assert again["payment"]["order_id"] == first["payment"]["order_id"]
    assert await server.services.store.count("orders") == 1


async def test_enabling_another_stream_quotes_only_the_difference(api, server) -> None:
    sid = await start(api)
    joined = await join(api, sid)
    token, vid = joined["viewer_token"], joined["viewer_id"]
    assert joined["balance"] == {"paid_centavos": 0, "due_centavos": 1945}
    only_screen = await set_enabled(api, sid, token, ["screen"])
    assert only_screen["payment"]["amount_centavos"] == 1500  # base + screen
    assert only_screen["balance"] == {"paid_centavos": 0, "due_centavos": 1500}
    assert only_screen["payment"]["streams"] == ["screen"]
    assert (await pay(api, only_screen["payment"]["txid"], "15.00"))["outcome"] == "paid"

    # Paid for what is enabled: nothing owed, no payment object.
    paid_up = await set_enabled(api, sid, token, ["screen"])
    assert "payment" not in paid_up
    assert paid_up["balance"] == {"paid_centavos": 1500, "due_centavos": 0}

    both = await set_enabled(api, sid, token, ["screen", "camera"])
    # price({screen, camera}) - already paid = 1945 - 1500, the bundle discount on the whole set.
    assert both["quote"]["amount_centavos"] == 1945
    assert both["payment"]["amount_centavos"] == 445
    # The price table's lines: the total, what is already paid, what is due now.
    assert both["balance"] == {"paid_centavos": 1500, "due_centavos": 445}
    assert both["payment"]["streams"] == ["screen", "camera"]
    session = await server.services.sessions.get_session(sid)
    assert await server.services.payments.entitled_kinds(session, vid) == {"screen"}
    assert (await pay(api, both["payment"]["txid"], "4.45", "E2"))["outcome"] == "paid"
    assert await server.services.payments.entitled_kinds(session, vid) == {"screen", "camera"}
    assert "payment" not in await set_enabled(api, sid, token, ["camera"])
    assert "payment" not in await set_enabled(api, sid, token, ["screen", "camera"])


# -- webhook -------------------------------------------------------------------------------------


async def test_webhook_marks_paid_and_replay_is_harmless(api, server) -> None:
    sid = await start(api)
    joined = await join(api, sid)
    payment = joined["payment"]
    first = await pay(api, payment["txid"], "19.45", "E777")
    assert first == {
        "index": 0,
        "txid": payment["txid"],
        "end_to_end_id": "E777",
        "order_id": payment["order_id"],
        "outcome": "paid",
    }
    order = await server.services.store.get("orders", payment["order_id"])
    assert order["status"] == "paid" and order["end_to_end_id"] == "E777"
    assert order["info_pagador"] == "obrigado"
    before = await snapshot(server.services.store)

    again = await pay(api, payment["txid"], "19.45", "E777")
    assert again["outcome"] == "replayed"
    second_payment = await pay(api, payment["txid"], "19.45", "E888")
    assert second_payment["outcome"] == "already_paid"
    assert await snapshot(server.services.store) == before

    r = await api.get(
        f"/api/v1/payments/orders/{payment['order_id']}", token=joined["viewer_token"]
    )
    assert r.status == 200 and r.json["order"]["status"] == "paid"
    assert r.json["order"]["paid_at"] == order["paid_at"]
    # Paid: a new join owes nothing.
    assert "payment" not in await join(api, sid, token=joined["viewer_token"])


async def test_webhook_items_are_processed_independently(api, server) -> None:
    sid = await start(api)
    a, b = await join(api, sid), await join(api, sid)
    body = {
        "pix": [
            callback(a["payment"]["txid"], "19.45", "EA")["pix"][0],
            callback("NoSuchTxid123", "1.00", "EB")["pix"][0],
            callback(b["payment"]["txid"], "19.40", "EC")["pix"][0],
        ]
    }
    r = await api.post(WEBHOOK, **signed(body))
    assert r.status == 200
    assert [x["outcome"] for x in r.json["results"]] == ["paid", "unknown_txid", "mismatch"]


async def test_unknown_txid_changes_nothing(api, server) -> None:
    sid = await start(api)
    await join(api, sid)
    before = await snapshot(server.services.store)
    result = await pay(api, "UnknownTxid000000000000000", "19.45")
    assert result == {
        "index": 0,
        "txid": "UnknownTxid000000000000000",
        "end_to_end_id": "E1",
        "outcome": "unknown_txid",
    }
    assert await snapshot(server.services.store) == before


async def test_valor_mismatch_is_recorded_and_not_honoured(api, server) -> None:
    sid = await start(api)
    joined = await join(api, sid)
    payment, vid = joined["payment"], joined["viewer_id"]
    assert (await pay(api, payment["txid"], "19.44", "EBAD"))["outcome"] == "mismatch"
    order = await server.services.store.get("orders", payment["order_id"])
    assert order["status"] == "mismatch"
    assert order["mismatch"]["received_centavos"] == 1944
    assert order["mismatch"]["end_to_end_id"] == "EBAD"
    assert order["paid_at"] is None
    # The viewer's poll says what arrived, so the page can say what to do next.
    r = await api.get(
        f"/api/v1/payments/orders/{payment['order_id']}", token=joined["viewer_token"]
    )
    assert r.json["order"]["status"] == "mismatch"
    assert r.json["order"]["received_centavos"] == 1944
    session = await server.services.sessions.get_session(sid)
    assert await server.services.payments.entitled_kinds(session, vid) == set()
    # Overpaying is a mismatch too.
    assert (await pay(api, payment["txid"], "100.00", "EBIG"))["outcome"] == "mismatch"
    # The exact amount still settles the order.
    assert (await pay(api, payment["txid"], "19.45", "EGOOD"))["outcome"] == "paid"
    assert await server.services.payments.entitled_kinds(session, vid) == {"screen", "camera"}


async def test_expired_order_is_not_honoured_and_a_new_one_is_made(api, server) -> None:
    sid = await start(api)
    joined = await join(api, sid)
    payment, vid = joined["payment"], joined["viewer_id"]
    ttl = server.services.settings.order_ttl_s
    payments = server.services.payments
    payments.clock = lambda: utc_now() + timedelta(seconds=ttl + 1)

    r = await api.get(
        f"/api/v1/payments/orders/{payment['order_id']}", token=joined["viewer_token"]
    )
    assert r.json["order"]["status"] == "expired"
    assert (await pay(api, payment["txid"], "19.45", "ELATE"))["outcome"] == "expired"
    order = await server.services.store.get("orders", payment["order_id"])
    assert order["status"] == "expired" and order["paid_at"] is None
    assert order["late_payment"]["end_to_end_id"] == "ELATE"
    r = await api.get(
        f"/api/v1/payments/orders/{payment['order_id']}", token=joined["viewer_token"]
    )
    assert r.json["order"]["received_centavos"] == 1945
    session = await server.services.sessions.get_session(sid)
    assert await payments.entitled_kinds(session, vid) == set()

    rejoined = await join(api, sid, token=joined["viewer_token"])
    assert rejoined["payment"]["order_id"] != payment["order_id"]
    assert rejoined["payment"]["status"] == "pending"
    assert rejoined["payment"]["txid"] != payment["txid"]


async def test_order_expires_exactly_at_ttl(services) -> None:
    owner, _ = await make_broadcaster(services)
    started = await services.sessions.start_session(dict(START_BODY), owner=owner)
    session = await services.sessions.get_session(started["session"]["id"])
    now = utc_now()
    services.payments.clock = lambda: now
    payment = await services.payments.order_for(session, "vwr_a", ["screen"])
    order = await services.payments.get_order(payment["order_id"])
    assert order["status"] == "pending"
    services.payments.clock = lambda: now + timedelta(seconds=services.settings.order_ttl_s - 1)
    assert (await services.payments.get_order(payment["order_id"]))["status"] == "pending"
    services.payments.clock = lambda: now + timedelta(seconds=services.settings.order_ttl_s)
    assert (await services.payments.get_order(payment["order_id"]))["status"] == "expired"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_signature"),
        ({"X-Pix-Signature": "sha256=" + "0" * 64}, "bad_signature"),
        ({"X-Pix-Signature": "md5=abc"}, "bad_signature"),
        ({"X-Pix-Signature": "sha256="}, "bad_signature"),
        ("wrong-secret", "bad_signature"),
        ("tampered", "bad_signature"),
    ],
)
async def test_webhook_signature_refused(api, server, headers: Any, code: str) -> None:
    sid = await start(api)
    payment = (await join(api, sid))["payment"]
    raw = json.dumps(callback(payment["txid"], "19.45")).encode()
    if headers == "wrong-secret":
        headers = {"X-Pix-Signature": sign("not-the-secret", raw)}
    elif headers == "tampered":
        headers = {"X-Pix-Signature": sign(SECRET, raw)}
        raw = raw.replace(b"19.45", b"19.46")
    before = await snapshot(server.services.store)
    r = await api.post(WEBHOOK, raw=raw, headers={"Content-Type": "application/json", **headers})
    assert_error(r, 401, code)
    assert await snapshot(server.services.store) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b'{"pix": []}', "invalid_callback"),
        (b'{"pix": {"txid": "x"}}', "invalid_callback"),
        (b'{"pix": [{"endToEndId": "E1", "txid": {"$ne": 1}, "valor": "1.00"}]}', "forbidden_key"),
        (
            b'{"pix": [{"endToEndId": "E1", "txid": "abc", "valor": "1.00"}], "x": "\\ud800"}',
            "invalid_text",
        ),
        (b'{"pix": [{"endToEndId": "E1", "txid": "abc", "valor": NaN}]}', "invalid_json"),
    ],
)
async def test_webhook_malformed_body_refused(api, server, body: bytes, code: str) -> None:
    sid = await start(api)
    await join(api, sid)
    before = await snapshot(server.services.store)
    r = await api.post(WEBHOOK, **signed(body))
    assert_error(r, 400, code)
    assert await snapshot(server.services.store) == before


@pytest.mark.parametrize(
    "item",
    [
        {"endToEndId": "E1", "txid": "abc", "valor": 19.45},
        {"endToEndId": "E1", "txid": "abc", "valor": "19.4"},
        {"endToEndId": "E1", "txid": "abc", "valor": "1e3"},
        {"endToEndId": "E1", "txid": "a-b", "valor": "1.00"},
        {"endToEndId": "E1", "valor": "1.00"},
        {"endToEndId": "E1", "txid": "abc", "valor": "1.00", "infoPagador": "oi \ud800"},
        {"endToEndId": "E1", "txid": "abc", "valor": "1.00", "infoPagador": "a\u202eb"},
        {"endToEndId": "E1", "txid": "abc", "valor": "1.00", "horario": "x\u0000"},
        "not an object",
    ],
)
async def test_webhook_malformed_item_is_rejected_and_recorded(api, server, item: Any) -> None:
    """Issue 10: a bad item is answered `rejected` with its reason and stored for the operator;
    no order changes."""
    sid = await start(api)
    await join(api, sid)
    orders = await server.services.store.find("orders", limit=100)
    r = await api.post(WEBHOOK, **signed({"pix": [item]}))
    assert r.status == 200, r.body
    (result,) = r.json["results"]
    assert result["outcome"] == "rejected" and result["index"] == 0 and result["reason"]
    assert await server.services.store.find("orders", limit=100) == orders
    (reject,) = await server.services.store.find("payment_rejects", limit=10)
    assert reject["reason"] == result["reason"] and reject["index"] == 0


async def test_webhook_bad_item_never_blocks_the_others(api, server) -> None:
    """Issue 10: a signed batch `[ok, infoPagador: "oi \\ud800", ok]` answered 500 on every retry
    with item 0 credited and item 2 never; now both good items are paid, the bad one recorded."""
    sid = await start(api)
    first = (await join(api, sid))["payment"]
    second = (await join(api, sid))["payment"]
    bad = {**callback(first["txid"], "19.45", e2e="E2")["pix"][0], "infoPagador": "oi \ud800"}
    body = {
        "pix": [
            callback(first["txid"], "19.45", e2e="E1")["pix"][0],
            bad,
            callback(second["txid"], "19.45", e2e="E3")["pix"][0],
        ]
    }
    raw = json.dumps(body).encode()  # "\\ud800" stays an escape: valid JSON, invalid text
    assert b"\\ud800" in raw
    for _attempt in range(2):  # the provider's retry is harmless too
        r = await api.post(WEBHOOK, raw=raw, headers={"X-Pix-Signature": sign(SECRET, raw)})
        assert r.status == 200, r.body
        outcomes = [res["outcome"] for res in r.json["results"]]
        assert outcomes[1] == "rejected" and "surrogate" in r.json["results"][1]["reason"]
        assert outcomes[0] in ("paid", "replayed") and outcomes[2] in ("paid", "replayed")
    for payment in (first, second):
        order = await server.services.store.get("orders", payment["order_id"])
        assert order["status"] == "paid"
    rejects = await server.services.store.find("payment_rejects", limit=10)
    assert len(rejects) == 2 and all(rej["index"] == 1 for rej in rejects)
    assert "\\ud800" in rejects[0]["item"]


@pytest.fixture
async def unconfigured(settings) -> AsyncIterator[tuple[Client, Any]]:
    """The real app with no webhook secret configured, and its services."""
    async with open_services(replace(settings, pix_webhook_secret=Secret(""))) as svc:
        sock, port = tornado.testing.bind_unused_port()
        http_server = tornado.httpserver.HTTPServer(make_app(svc.settings, svc))
        http_server.add_sockets([sock])
        try:
            _, token = await make_broadcaster(svc)
            yield Client(f"http://127.0.0.1:{port}", broadcaster_token=token), svc
        finally:
            http_server.stop()
            await http_server.close_all_connections()


async def test_webhook_refuses_when_secret_unconfigured(unconfigured) -> None:
    client, svc = unconfigured
    sid = await start(client)
    payment = (await join(client, sid))["payment"]
    before = await snapshot(svc.store)
    # Even a body "signed" with the empty secret is refused: no secret means no webhook at all.
    r = await client.post(WEBHOOK, **signed(callback(payment["txid"], "19.45"), secret=""))
    err = assert_error(r, 503, "webhook_disabled")
    assert "MULTISTREAM_PIX_WEBHOOK_SECRET" in err["message"]
    assert await snapshot(svc.store) == before
    assert (await svc.store.get("orders", payment["order_id"]))["status"] == "pending"


# -- order routes --------------------------------------------------------------------------------


async def test_order_status_only_for_its_viewer(api, server) -> None:
    sid = await start(api)
    a, b = await join(api, sid), await join(api, sid)
    path = f"/api/v1/payments/orders/{a['payment']['order_id']}"
    assert_error(await api.get(path), 401, "missing_token")
    assert_error(await api.get(path, token=b["viewer_token"]), 403, "not_your_order")
    broadcaster = server.services.tokens.issue_broadcaster(sid)
    assert_error(await api.get(path, token=broadcaster), 403, "not_your_order")
    assert_error(await api.get(path, token="garbage"), 401)
    assert_error(
        await api.get("/api/v1/payments/orders/ord_nope", token=a["viewer_token"]),
        404,
        "order_not_found",
    )
    assert_error(await api.get("/api/v1/payments/orders/ord_nope/qr.svg"), 404, "order_not_found")
    assert_error(await api.get("/api/v1/payments/orders/%24ne/qr.svg"), 404)


# -- receiver validation at session start -------------------------------------------------------


@pytest.mark.parametrize(
    ("pix_body", "code", "field", "fragment"),
    [
        (
            {"key": "dev@example.com", "merchant_name": "A" * 26, "merchant_city": "X"},
            "invalid",
            "pix.merchant_name",
            "at most 25",
        ),
        (
            {"key": "dev@example.com", "merchant_name": "Ana", "merchant_city": "X" * 61},
            "invalid",
            "pix.merchant_city",
            "at most 60",
        ),
        (
            {"key": "not a key", "merchant_name": "Ana", "merchant_city": "X"},
            "invalid_pix_key",
            "pix.key",
            "pix.key",
        ),
        (
            {"key": "123.456.789-00", "merchant_name": "Ana", "merchant_city": "X"},
            "invalid_pix_key",
            "pix.key",
            "check digits",
        ),
        (
            {"key": "dev@example.com", "merchant_name": "Ana"},
            "invalid",
            "pix.merchant_city",
            "merchant_city is required",
        ),
        (
            {"key": "dev@example.com", "merchant_name": "東京", "merchant_city": "X"},
            "invalid",
            "pix.merchant_name",
            "BR Code can carry",
        ),
        (
            {"key": "dev@example.com", "merchant_name": 5, "merchant_city": "X"},
            "invalid",
            "pix.merchant_name",
            "must be a string",
        ),
        (
            {"key": "dev@example.com", "merchant_name": "A", "merchant_city": "X", "extra": 1},
            "invalid",
            "pix",
            "unknown fields",
        ),
    ],
)
async def test_receiver_limits_enforced_at_session_start(
    api, server, pix_body: dict, code: str, field: str, fragment: str
) -> None:
    before = await snapshot(server.services.store)
    r = await api.post(
        f"{PREFIX}/session/start", {**START_BODY, "pix": pix_body}, token=api.broadcaster_token
    )
    err = assert_error(r, 400, code)
    assert fragment in err["message"]
    assert err["field"] == field, err
    assert await snapshot(server.services.store) == before


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("+55 11 91234-5678", "+5511912345678"),
        ("11912345678", "+5511912345678"),
        ("123.456.789-09", "12345678909"),
        ("12.345.678/0001-95", "12345678000195"),
        ("Dev@Example.com", "dev@example.com"),
    ],
)
async def test_receiver_key_is_normalised_into_the_code(api, typed: str, stored: str) -> None:
    body = {
        **START_BODY,
        "pix": {"key": typed, "merchant_name": "Ana", "merchant_city": "São José dos Campos"},
    }
    sid = await start(api, body)
    code = pix.parse((await join(api, sid))["payment"]["pix_copia_e_cola"])
    assert code.key == stored
    # The city is cut to the 15 characters a BR Code holds (the studio warned beforehand).
    assert code.merchant_city == "SAO JOSE DOS CA"


async def test_receiver_check_answers_normalised_fields_and_warnings(api) -> None:
    url = "/api/v1/payments/pix/receiver"
    r = await api.post(url, {"key": "(11) 91234-5678", "merchant_city": "São José dos Campos"})
    assert r.status == 200, r.body
    assert r.json["receiver"] == {
        "key": "+5511912345678",
        "key_type": "phone",
        "merchant_city": "SAO JOSE DOS CA",
    }
    [warning] = r.json["warnings"]
    assert warning["field"] == "pix.merchant_city" and warning["code"] == "city_truncated"
    assert r.json["problems"] == []
    # Each field's problem on its own, in both languages; the good field still answers.
    r = await api.post(
        url, {"key": "123.456.789-00", "merchant_name": "N" * 26, "merchant_city": "Recife"}
    )
    assert r.status == 200, r.body
    assert r.json["receiver"] == {"merchant_city": "RECIFE"}
    key, name = r.json["problems"]
    assert (key["field"], key["code"]) == ("pix.key", "invalid_pix_key")
    assert "check digits" in key["messages"]["en"]
    assert "verificadores" in key["messages"]["pt-BR"]
    assert name["field"] == "pix.merchant_name" and "25" in name["messages"]["pt-BR"]
    # Not a receiver draft at all: the usual 400.
    assert_error(await api.post(url, {"nope": 1}), 400, "invalid")
    assert_error(await api.post(url, {"key": 5}), 400, "invalid")


async def test_receiver_with_accents_is_accepted(api) -> None:
    body = {
        **START_BODY,
        "pix": {
            "key": "+5548999998888",
            "merchant_name": "Conceição",
            "merchant_city": "Florianópolis",
        },
    }
    sid = await start(api, body)
    code = pix.parse((await join(api, sid))["payment"]["pix_copia_e_cola"])
    assert (code.merchant_name, code.merchant_city) == ("Conceicao", "FLORIANOPOLIS")


# -- entitlement at subscribe -------------------------------------------------------------------


async def test_subscribe_authorisation_requires_payment(api, server) -> None:
    sid = await start(api)
    joined = await join(api, sid)
    token, vid = joined["viewer_token"], joined["viewer_id"]
    streams = {
        s["kind"]: s["id"]
        for s in (await api.get(f"{PREFIX}/session/{sid}/status")).json["streams"]
    }
    sessions = server.services.sessions
    claims = viewer(sid, vid)
    with pytest.raises(PaymentRequired, match="screen"):
        await sessions.authorize_subscribe(claims, streams["screen"])
    with pytest.raises(PaymentRequired):
        await sessions.authorize_composite(claims, sid)

    only_screen = await set_enabled(api, sid, token, ["screen"])
    await pay(api, only_screen["payment"]["txid"], "15.00")
    await sessions.authorize_subscribe(claims, streams["screen"])
    await set_enabled(api, sid, token, ["screen", "camera"])
    with pytest.raises(PaymentRequired, match="camera"):
        await sessions.authorize_subscribe(claims, streams["camera"])
    with pytest.raises(PaymentRequired, match="camera"):
        await sessions.authorize_composite(claims, sid)


# -- operator CLI --------------------------------------------------------------------------------


def _cli(data_dir: Path, *args: str, store: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTISTREAM_")}
    if store is not None:
        args = (*args, "--store", store)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "multistream.cli",
            "orders",
            "mark-paid",
            *args,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_cli_mark_paid(api, server) -> None:
    sid = await start(api)
    joined = await join(api, sid)
    payment = joined["payment"]
    data_dir = server.services.settings.data_dir
    store = server.services.settings.store_url
    done = _cli(data_dir, payment["txid"], store=store)
    assert done.returncode == 0, done.stderr
    assert f"txid={payment['txid']} status=paid" in done.stdout
    order = await server.services.store.get("orders", payment["order_id"])
    assert order["status"] == "paid" and order["end_to_end_id"] == "manual"
    session = await server.services.sessions.get_session(sid)
    assert await server.services.payments.entitled_kinds(session, joined["viewer_id"]) == {
        "screen",
        "camera",
    }

    before = await snapshot(server.services.store)
    missing = _cli(data_dir, "NoSuchTxid", store=store)
    assert missing.returncode == 1
    assert "no order with txid 'NoSuchTxid'" in missing.stderr
    assert await snapshot(server.services.store) == before


# -- entitlement on the real signaling route -----------------------------------------------------


async def test_unpaid_stream_cannot_be_subscribed_over_signaling(api, server) -> None:
    from tests.media_helpers import PatternTrack, publish, view, wait_stream_status

    started = (
        await api.post(f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token)
    ).json
    sid, btoken = started["session"]["id"], started["broadcaster_token"]
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    publisher = await publish(api, btoken, streams["screen"], PatternTrack("screen", 320, 180, 10))
    viewers = []
    try:
        joined = await join(api, sid)
        token = joined["viewer_token"]
        order = (await set_enabled(api, sid, token, ["screen"]))["payment"]
        media = server.services.media
        # The publisher's stream turns live asynchronously; let it, so the snapshot below compares
        # only what the refused offer could have written.
        await wait_stream_status(server.services.store, streams["screen"], "live")
        before = await snapshot(server.services.store)
        offer_path = f"{PREFIX}/stream/{streams['screen']}/signal/offer"
        _, denied = await view(api, token, offer_path)
        err = assert_error(denied, 402, "payment_required")
        assert "screen" in err["message"]
        assert media.counters()["viewers"] == 0  # no peer connection was left behind
        assert await snapshot(server.services.store) == before

        assert (await pay(api, order["txid"], "15.00"))["outcome"] == "paid"
        viewer, ok = await view(api, token, offer_path)
        viewers.append(viewer)
        assert ok.status == 200, ok.body
        await viewer.wait_frames(3)

        # Enabling the camera later: the camera stays locked until its difference is paid.
        diff = (await set_enabled(api, sid, token, ["screen", "camera"]))["payment"]
        assert diff["amount_centavos"] == 445
        _, denied = await view(api, token, f"{PREFIX}/stream/{streams['camera']}/signal/offer")
        assert_error(denied, 402, "payment_required")
        await api.put(f"{PREFIX}/session/{sid}/preferences", {"mode": "composite"}, token=token)
        _, denied = await view(api, token, f"{PREFIX}/session/{sid}/composite/signal/offer")
        assert_error(denied, 402, "payment_required")
        assert media.counters()["viewers"] == 1
    finally:
        for viewer in viewers:
            await viewer.close()
        await publisher.pc.close()
