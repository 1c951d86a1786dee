"""Payments edge: the PIX confirmation webhook, order status for polling, and the order's QR code.

The QR route needs no token: an `<img src>` cannot send an Authorization header, and the order id in
its URL is 96 random bits, so the URL itself is the capability. What it reveals (a PIX code for the
receiver, with an amount) lets someone pay for the viewer at most — harmless. Order status, which
says whether a viewer has paid, needs that viewer's token.
"""

from __future__ import annotations

from typing import Any

from handlers.base import ApiHandler
from handlers.openapi import error_responses, operation, path_param
from server.errors import Unavailable
from server.payments import PaymentService
from server.schemas import validate

PREFIX = "/api/v1/payments"
ID = r"([^/]+)"


class _PaymentsHandler(ApiHandler):
    @property
    def payments(self) -> PaymentService:
        payments = self.services.payments
        if payments is None:
            raise Unavailable("payments are not configured on this server", code="payments_off")
        return payments  # type: ignore[no-any-return]


class PixWebhookHandler(_PaymentsHandler):
    async def post(self) -> None:
        await self.rate_limit("webhook")
        # The raw body as received: the HMAC is checked on these bytes before any JSON parsing.
        if self.body.strip():
            self.require_json()
        result = await self.payments.handle_webhook(
            self.body, self.request.headers.get("X-Pix-Signature")
        )
        self.write_json(result)


class ReceiverCheckHandler(_PaymentsHandler):
    async def post(self) -> None:
        body = validate(self.json_body(), "PixReceiverDraft", "pix")
        self.write_json(self.payments.check_receiver(body))


class OrderHandler(_PaymentsHandler):
    async def get(self, order_id: str) -> None:
        self.write_json(await self.payments.order_status(self.claims(), order_id))


class OrderQrHandler(_PaymentsHandler):
    async def get(self, order_id: str) -> None:
        svg = await self.payments.qr_svg(order_id)
        self.set_header("Content-Type", "image/svg+xml")
        # The SVG is ours and static, but an SVG opened directly is a document: give it no powers.
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(svg)


routes = [
    (rf"{PREFIX}/pix/webhook", PixWebhookHandler),
    (rf"{PREFIX}/pix/receiver", ReceiverCheckHandler),
    (rf"{PREFIX}/orders/{ID}", OrderHandler),
    (rf"{PREFIX}/orders/{ID}/qr.svg", OrderQrHandler),
]

_ORDER_ID = path_param("order_id")
_WEBHOOK = operation(
    "Banco Central API Pix payment callback; header X-Pix-Signature: "
    "sha256=<hex HMAC-SHA256 of the raw body>. Items apply one by one: a malformed item is "
    "answered `rejected` with its reason (and recorded), the others are still credited",
    (200, "per-item outcome", "WebhookResults"),
    401,
    503,
    body="PixCallback",
    limited=True,
    params=[
        {
            "name": "X-Pix-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
        }
    ],
)

openapi: dict[str, Any] = {
    f"{PREFIX}/pix/webhook": {"post": _WEBHOOK},
    f"{PREFIX}/pix/receiver": {
        "post": operation(
            "Check a PIX receiver as typed (any of its fields), for a form to show beside each "
            "field: the key's type and how it is stored, the city as PIX codes carry it, warnings "
            "(a city cut to 15 characters) and the fields that cannot work, in English and "
            "Portuguese. A body that is not a receiver draft at all is a 400",
            (200, "the fields given, normalised, and warnings", "ReceiverChecked"),
            503,
            body="PixReceiverDraft",
        )
    },
    f"{PREFIX}/orders/{{order_id}}": {
        "get": operation(
            "An order's status, for its viewer to poll until paid",
            (200, "the order", "OrderStatus"),
            403,
            404,
            503,
            auth=True,
            params=[_ORDER_ID],
        )
    },
    f"{PREFIX}/orders/{{order_id}}/qr.svg": {
        "get": {
            "summary": "The order's PIX QR code (the unguessable order id is the capability)",
            "parameters": [_ORDER_ID],
            "responses": {
                "200": {
                    "description": "SVG QR code",
                    "content": {"image/svg+xml": {"schema": {"type": "string"}}},
                },
                **error_responses(404, 503),
            },
        }
    },
}
