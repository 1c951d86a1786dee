"""Per-client rate limits on anonymous and expensive writes, shared by every instance.

Each (action, client address) has a token bucket whose state lives in the store (`take_token`), so
two instances behind one balancer enforce one limit, not two. Over the limit is 429 with the
seconds until the next token (`Retry-After`). A refusal is also remembered in-process until that
moment: no instance can create a token sooner (others only spend), so a flood from one address
costs one store transaction per refill period, not one per request.

The client address is the TCP peer's, unless `settings.trusted_proxy_header` names a header set
by a trusted reverse proxy (then its last entry, the one that proxy appended). IPv6 clients are
limited per /64, the block one host usually holds.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Mapping
from typing import Final, Literal

from server.errors import TooManyRequests
from server.settings import Settings
from store.protocol import Store

Action = Literal["session_start", "join", "offer", "webhook", "login"]
ACTIONS: Final[tuple[Action, ...]] = ("session_start", "join", "offer", "webhook", "login")
_MAX_REMEMBERED = 10_000


def client_address(remote_ip: str | None, headers: Mapping[str, str], settings: Settings) -> str:
    """The address a request is limited by (see the module docstring)."""
    raw = remote_ip or ""
    if settings.trusted_proxy_header:
        value = headers.get(settings.trusted_proxy_header, "")
        hops = [h.strip() for h in value.split(",") if h.strip()]
        if hops:
            raw = hops[-1]
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64] or "unknown"
    if ip.version == 6:
        mapped = ip.ipv4_mapped  # type: ignore[union-attr]
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RateLimits:
    """Token buckets per action and client address, in the shared store."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_refused = on_refused
        self.limits: dict[str, tuple[int, int]] = {
            "session_start": settings.rate_session_start,
            "join": settings.rate_join,
            "offer": settings.rate_offer,
            "webhook": settings.rate_webhook,
            "login": settings.rate_login,
        }
        self._refused_until: dict[str, float] = {}

    async def check(self, action: Action, client: str) -> None:
        """Spend one of `client`'s tokens for `action`, or raise `TooManyRequests`."""
        burst, per_minute = self.limits[action]
        key = f"{action}:{client}"
        now = self.clock()
        until = self._refused_until.get(key)
        if until is not None and now < until:
            self._refuse(action, until - now)
        wait = await self.store.take_token(key, burst, per_minute / 60.0, now)
        if wait <= 0:
            self._refused_until.pop(key, None)
            return
        if len(self._refused_until) >= _MAX_REMEMBERED:
            self._refused_until = {k: t for k, t in self._refused_until.items() if t > now}
        if len(self._refused_until) < _MAX_REMEMBERED:
            self._refused_until[key] = now + wait
        self._refuse(action, wait)

    def _refuse(self, action: str, wait: float) -> None:
        if self.on_refused is not None:
            self.on_refused(action)
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"too many {action.replace('_', ' ')} requests from this address; retry in {seconds} s",
            code="rate_limited",
            retry_after=wait,
        )
