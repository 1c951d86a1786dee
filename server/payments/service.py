"""Orders, payment confirmation and entitlements: who has paid for which streams of a session.

Entitlement is derived from paid orders only, never from preferences: a viewer's paid total and the
union of the stream kinds its paid orders cover. A kind is watchable when it is covered, or when the
price of (covered + that kind) is within what the viewer has already paid; so free sessions and free
add-ons need no order, and enabling another stream later charges only
`quote(covered + new) - paid`, with the bundle discount applied to the whole set.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from server import pix, pricing
from server.auth import Claims
from server.clock import iso, utc_now
from server.documents import OrderDoc, as_doc
from server.domain import STREAM_KINDS
from server.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PaymentRequired,
    Unavailable,
)
from server.ids import new_id
from server.payments.receiver import check_receiver, validate_receiver
from server.payments.webhook import PixCallback, RejectedItem, parse_callbacks, verify_signature
from server.settings import Settings
from server.validation import check_id
from store.protocol import Doc, DuplicateKey, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_TXID_ALPHABET: Final = string.ascii_letters + string.digits
_MAX_ORDERS_PER_VIEWER: Final = 500
# What a pending order may still become; only these accept a payment.
_PAYABLE: Final = ("pending", "mismatch")


def new_txid() -> str:
    """25 random letters and digits: the BR Code maximum, ~148 bits, unique per order."""
    return "".join(secrets.choice(_TXID_ALPHABET) for _ in range(pix.TXID_MAX))


def qr_url(order_id: str) -> str:
    return f"/api/v1/payments/orders/{order_id}/qr.svg"


def public_order(order: Doc) -> dict[str, Any]:
    """The order as its viewer sees it (the `payment` object of join/preferences answers)."""
    return {
        "order_id": order["id"],
        "txid": order["txid"],
        "status": order["status"],
        "amount_centavos": order["amount_centavos"],
        "currency": "BRL",
        "streams": list(order["streams"]),
        "pix_copia_e_cola": order["pix_copia_e_cola"],
        "qr_url": qr_url(order["id"]) if order["pix_copia_e_cola"] else None,
        "created_at": order["created_at"],
        "expires_at": order["expires_at"],
        "paid_at": order.get("paid_at"),
        # What a payment that was not credited brought (a wrong amount, or after expiry), so the
        # viewer is told what happened and what to do next.
        "received_centavos": _received(order),
    }


def _received(order: Doc) -> int | None:
    attempt = order.get("mismatch") if order["status"] == "mismatch" else order.get("late_payment")
    return int(attempt["received_centavos"]) if attempt else None


def entitled_from(price: dict[str, Any], paid_orders: Iterable[Doc]) -> set[str]:
    """Kinds a viewer may watch given its paid orders (pure, so the rule is testable alone)."""
    covered: set[str] = set()
    total = 0
    for order in paid_orders:
        covered.update(order["streams"])
        total += order["amount_centavos"]
    out = set(covered)
    for kind in STREAM_KINDS:
        if pricing.quote(price, covered | {kind})["amount_centavos"] <= total:
            out.add(kind)
    return out


class PaymentService:
    """Creates orders for priced sessions, confirms them from PIX callbacks, and gates streams."""

    def __init__(self, store: Store, settings: Settings, *, clock: Clock = utc_now) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    # -- session start -------------------------------------------------------------------------

    def validate_receiver(self, raw: object) -> dict[str, Any]:
        """Called by the session service at start: the receiver every order's BR Code names."""
        return validate_receiver(raw)

    def check_receiver(self, raw: object) -> dict[str, Any]:
        """A receiver being typed: the fields given, normalised, and what to warn about."""
        checked = check_receiver(raw, partial=True)
        return {
            "receiver": checked.receiver,
            "warnings": checked.warnings,
            "problems": checked.problems,
        }

    # -- reading -------------------------------------------------------------------------------

    async def orders_of(self, session_id: str, viewer_id: str) -> list[Doc]:
        """The viewer's orders in this session, oldest first, with due expiries applied."""
        orders = await self.store.find(
            "orders",
            {"session_id": session_id, "viewer_id": viewer_id},
            order_by="created_at",
            limit=_MAX_ORDERS_PER_VIEWER,
        )
        return [await self._expire_if_due(order) for order in orders]

    async def _expire_if_due(self, order: Doc) -> Doc:
        if order["status"] not in _PAYABLE or order["expires_at"] > iso(self.clock()):
            return order
        updated = await self.store.update(
            "orders", order["id"], {"status": "expired"}, expect={"status": order["status"]}
        )
        if updated is None:  # changed concurrently (paid a moment ago): read what it became
            return await self.store.get("orders", order["id"]) or order
        log.info("order=%s txid=%s expired", order["id"], order["txid"])
        return updated

    async def entitled_kinds(self, session: Doc, viewer_id: str) -> set[str]:
        """Stream kinds this viewer may subscribe to; free sessions: every kind."""
        if pricing.is_free(session["pricing"]):
            return set(STREAM_KINDS)
        paid = [o for o in await self.orders_of(session["id"], viewer_id) if o["status"] == "paid"]
        return entitled_from(session["pricing"], paid)

    async def require_entitled(self, session: Doc, viewer_id: str, kinds: Iterable[str]) -> None:
        """Raise `PaymentRequired` (402) unless paid orders cover every kind asked for."""
        wanted = set(kinds)
        if not wanted or pricing.is_free(session["pricing"]):
            return
        missing = sorted(wanted - await self.entitled_kinds(session, viewer_id))
        if missing:
            log.info("session=%s viewer=%s unpaid=%s", session["id"], viewer_id, ",".join(missing))
            raise PaymentRequired(
                f"no paid order covers the {' and '.join(missing)} stream"
                f"{'s' if len(missing) > 1 else ''} of this session; pay the order from join or "
                "preferences first",
                code="payment_required",
            )

    async def balance(
        self, session: Doc, viewer_id: str, payment: dict[str, Any] | None
    ) -> dict[str, int]:
        """What this viewer has paid in this session and what it owes now (`payment`, if any)."""
        paid = sum(
            o["amount_centavos"]
            for o in await self.orders_of(session["id"], viewer_id)
            if o["status"] == "paid"
        )
        due = payment["amount_centavos"] if payment and payment["status"] != "paid" else 0
        return {"paid_centavos": paid, "due_centavos": due}

    # -- ordering ------------------------------------------------------------------------------

    async def order_for(
        self,
        session: Doc,
        viewer_id: str,
        enabled_kinds: Iterable[str],
        quote: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """The payment a viewer owes for `enabled_kinds`, or None when nothing is owed.

        Reuses a still-pending order for the same streams and amount, so repeated joins do not pile
        up orders. `quote` (the caller's quote of `enabled_kinds`) is informational: the amount is
        recomputed from the session's pricing and the viewer's paid orders.
        """
        enabled = set(enabled_kinds)
        price = session["pricing"]
        if not enabled or pricing.is_free(price):
            return None
        orders = await self.orders_of(session["id"], viewer_id)
        paid = [o for o in orders if o["status"] == "paid"]
        if enabled <= entitled_from(price, paid):
            return None
        covered = set().union(*(o["streams"] for o in paid)) if paid else set()
        target = sorted(covered | enabled, key=STREAM_KINDS.index)
        amount = pricing.quote(price, target)["amount_centavos"] - sum(
            o["amount_centavos"] for o in paid
        )
        if amount <= 0:
            # A discount made the larger set no dearer than what is paid: record a free grant so the
            # new kinds become covered, and owe nothing.
            await self._insert(session, viewer_id, target, 0, status="paid")
            return None
        for order in reversed(orders):
            if (
                order["status"] == "pending"
                and order["amount_centavos"] == amount
                and list(order["streams"]) == target
            ):
                return public_order(order)
        order = await self._insert(session, viewer_id, target, amount, status="pending")
        return public_order(order)

    async def _insert(
        self, session: Doc, viewer_id: str, streams: list[str], amount: int, *, status: str
    ) -> Doc:
        receiver = session.get("pix")
        if amount > 0 and not receiver:
            raise Conflict("this priced session has no PIX receiver", code="pix_missing")
        now = self.clock()
        for _attempt in range(3):
            txid = new_txid()
            code = ""
            if amount > 0 and receiver:
                code = pix.build(
                    pix.BrCode(
                        key=receiver["key"],
                        merchant_name=receiver["merchant_name"],
                        merchant_city=receiver["merchant_city"],
                        amount_centavos=amount,
                        txid=txid,
                        single_use=True,
                    )
                )
            order: OrderDoc = {
                "id": new_id("ord"),
                "session_id": session["id"],
                "viewer_id": viewer_id,
                "txid": txid,
                "status": status,
                "amount_centavos": amount,
                "streams": streams,
                "pix_copia_e_cola": code,
                "created_at": iso(now),
                "expires_at": iso(now + timedelta(seconds=self.settings.order_ttl_s)),
                "paid_at": iso(now) if status == "paid" else None,
                "end_to_end_id": None,
            }
            try:
                await self.store.insert("orders", order)
            except DuplicateKey:  # a txid collision: astronomically unlikely, but cheap to retry
                continue
            log.info(
                "session=%s viewer=%s order=%s txid=%s amount=%d streams=%s status=%s",
                session["id"],
                viewer_id,
                order["id"],
                txid,
                amount,
                ",".join(streams),
                status,
            )
            return as_doc(order)
        raise Unavailable("could not allocate a unique txid; retry", code="txid_collision")

    # -- viewer polling and QR -----------------------------------------------------------------

    async def get_order(self, order_id: str) -> Doc:
        check_id(order_id, "order")
        order = await self.store.get("orders", order_id)
        if order is None:
            raise NotFound("order not found", code="order_not_found")
        return await self._expire_if_due(order)

    async def order_status(self, claims: Claims, order_id: str) -> dict[str, Any]:
        """The order for its own viewer (polled by the client until `paid`)."""
        order = await self.get_order(order_id)
        if (
            claims.role != "viewer"
            or claims.session_id != order["session_id"]
            or claims.viewer_id != order["viewer_id"]
        ):
            raise Forbidden("this order belongs to another viewer", code="not_your_order")
        return {"order": public_order(order)}

    async def qr_svg(self, order_id: str) -> bytes:
        """The order's QR code. The order id is the capability (96 random bits), see handlers."""
        order = await self.get_order(order_id)
        if not order["pix_copia_e_cola"]:
            raise NotFound("this order has no PIX code (nothing to pay)", code="no_pix_code")
        return pix.qr_svg(order["pix_copia_e_cola"])

    # -- confirmation --------------------------------------------------------------------------

    async def handle_webhook(self, body: bytes, signature: str | None) -> dict[str, Any]:
        """Authenticate the raw body, then apply each callback item; answers per-item outcomes."""
        secret = self.settings.pix_webhook_secret
        if not secret:
            raise Unavailable(
                "payment webhook disabled: MULTISTREAM_PIX_WEBHOOK_SECRET is not set",
                code="webhook_disabled",
            )
        verify_signature(secret.reveal(), body, signature)
        results = []
        for index, item in enumerate(parse_callbacks(body)):
            if isinstance(item, RejectedItem):
                results.append(await self._reject(item))
                continue
            try:
                results.append({"index": index, **await self.apply_callback(item)})
            except DomainError as exc:  # this item only; the rest of the batch still applies
                results.append(await self._reject(RejectedItem(index, exc.message, item.txid, "")))
        return {"results": results}

    async def _reject(self, item: RejectedItem) -> dict[str, Any]:
        """Record a callback item that could not be applied, for the operator; answer its outcome.

        The provider gets 200 for the batch (retrying cannot fix a malformed item, and a retry
        must not be the price of crediting the good ones)."""
        now = iso(self.clock())
        await self.store.insert(
            "payment_rejects",
            {
                "id": new_id("rej"),
                "txid": item.txid,
                "received_at": now,
                "index": item.index,
                "reason": item.reason,
                "item": item.raw,
            },
        )
        log.warning("txid=%s webhook item %d rejected: %s", item.txid, item.index, item.reason)
        return {
            "index": item.index,
            "txid": item.txid,
            "outcome": "rejected",
            "reason": item.reason,
        }

    async def apply_callback(self, cb: PixCallback) -> dict[str, Any]:
        """Honour one payment if it pays a live order exactly; record anything else, harmlessly."""
        result: dict[str, Any] = {"txid": cb.txid, "end_to_end_id": cb.end_to_end_id}
        found = await self.store.find("orders", {"txid": cb.txid}, limit=1)
        if not found:
            log.warning("txid=%s e2e=%s payment for unknown txid", cb.txid, cb.end_to_end_id)
            return {**result, "outcome": "unknown_txid"}
        order = await self._expire_if_due(found[0])
        result["order_id"] = order["id"]
        now = iso(self.clock())
        if order["status"] == "paid":
            if order.get("end_to_end_id") == cb.end_to_end_id:
                return {**result, "outcome": "replayed"}
            log.warning(
                "order=%s txid=%s e2e=%s second payment of a paid order (refund by hand)",
                order["id"],
                cb.txid,
                cb.end_to_end_id,
            )
            return {**result, "outcome": "already_paid"}
        attempt = {
            "end_to_end_id": cb.end_to_end_id,
            "received_centavos": cb.amount_centavos,
            "horario": cb.horario,
            "at": now,
        }
        if order["status"] == "expired":
            await self.store.update("orders", order["id"], {"late_payment": attempt})
            log.warning(
                "order=%s txid=%s e2e=%s payment after expiry not honoured",
                order["id"],
                cb.txid,
                cb.end_to_end_id,
            )
            return {**result, "outcome": "expired"}
        if cb.amount_centavos != order["amount_centavos"]:
            await self.store.update(
                "orders",
                order["id"],
                {"status": "mismatch", "mismatch": attempt},
                expect={"status": order["status"]},
            )
            log.warning(
                "order=%s txid=%s e2e=%s valor mismatch received=%d expected=%d",
                order["id"],
                cb.txid,
                cb.end_to_end_id,
                cb.amount_centavos,
                order["amount_centavos"],
            )
            return {**result, "outcome": "mismatch"}
        paid = await self._mark_paid(order, cb.end_to_end_id, now, cb.horario, cb.info_pagador)
        if paid is None:
            return {**result, "outcome": "already_paid"}
        return {**result, "outcome": "paid"}

    async def _mark_paid(
        self, order: Doc, e2e: str, now: str, horario: str | None, payer: str | None
    ) -> Doc | None:
        updated = await self.store.update(
            "orders",
            order["id"],
            {
                "status": "paid",
                "paid_at": now,
                "end_to_end_id": e2e,
                "horario": horario,
                "info_pagador": payer,
            },
            expect={"status": order["status"]},
        )
        if updated is not None:
            log.info(
                "order=%s txid=%s e2e=%s paid session=%s viewer=%s",
                order["id"],
                order["txid"],
                e2e,
                order["session_id"],
                order["viewer_id"],
            )
        return updated

    async def mark_paid(self, txid: str) -> Doc:
        """Operator override (`multistream orders mark-paid TXID`): paid whatever its state."""
        found = await self.store.find("orders", {"txid": txid}, limit=1)
        if not found:
            raise NotFound(f"no order with txid {txid!r}", code="order_not_found")
        order = found[0]
        if order["status"] == "paid":
            return order
        updated = await self._mark_paid(order, "manual", iso(self.clock()), None, "operator")
        return updated or await self.get_order(order["id"])
