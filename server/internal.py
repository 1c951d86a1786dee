"""The mark of a request one instance sends another (forwarded signaling, relay links).

`X-Multistream-Forwarded` carries an HMAC of the request's method and path under the shared token
secret: the receiving instance knows the request comes from a peer instance (not a client, who
cannot forge it) and neither routes it again nor spends rate-limit tokens on it a second time.
"""

from __future__ import annotations

import hashlib
import hmac

FORWARDED = "X-Multistream-Forwarded"


def internal_mark(secret: str, method: str, path: str) -> str:
    return hmac.new(secret.encode(), f"{method} {path}".encode(), hashlib.sha256).hexdigest()[:32]


def valid_mark(secret: str, method: str, path: str, mark: str | None) -> bool:
    return bool(mark) and hmac.compare_digest(str(mark), internal_mark(secret, method, path))
