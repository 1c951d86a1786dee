"""PIX payments: orders with BR Codes, the payment-confirmation webhook, and per-stream entitlements.

- `receiver`: validates a session's PIX receiver (key, name, city) at session start.
- `webhook`: authenticates and parses Banco Central "API Pix" callbacks (pure).
- `service`: `PaymentService`, which stores orders and answers what a viewer may watch.
"""

from server.payments.receiver import validate_receiver
from server.payments.service import PaymentService
from server.payments.webhook import PixCallback, parse_callbacks, sign, verify_signature

__all__ = [
    "PaymentService",
    "PixCallback",
    "parse_callbacks",
    "sign",
    "validate_receiver",
    "verify_signature",
]
