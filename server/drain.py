"""Graceful drain: what the server does between SIGTERM/SIGINT and exiting 0.

1. At once: `draining` turns true — `/readyz` answers 503 (the orchestrator stops routing here) and
   the session service refuses new sessions and joins with a 503 JSON (`server.errors.Unavailable`).
2. Media already flowing keeps flowing until every peer connection here has closed on its own or
   `settings.drain_deadline_s` passes (a second signal cuts the wait short).
3. The media plane closes every peer connection, encoder and recorder, which finalises the
   recordings (playable files, store updated). Sessions stay `live` in the shared store: they
   outlive one process (a restart, or another instance, serves them again); their streams that
   were live here go back to `pending`, since no media flows for them any more.
4. The HTTP server stops and open connections (WebSockets included) are closed; the lifespan then
   closes the store, and the process exits 0.

Each step is logged as `drain step=<name> t=<seconds since the signal>` and kept in `timeline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # `Services` holds the drain itself, so the name is only needed for annotations
    from server.services import Services

log = logging.getLogger(__name__)

_POLL_S = 0.25


class _HttpServer(Protocol):
    def stop(self) -> None: ...

    def close_all_connections(self) -> Awaitable[None]: ...


class Drain:
    """The drain flag services consult, and the shutdown sequence that follows a stop signal."""

    def __init__(self, deadline_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline_s = deadline_s
        self._clock = clock
        self._started: float | None = None
        self._hurry = asyncio.Event()
        self.timeline: list[tuple[str, float]] = []

    @property
    def draining(self) -> bool:
        return self._started is not None

    def begin(self) -> bool:
        """Start draining (idempotent); a second call asks to skip the rest of the deadline."""
        if self._started is not None:
            self._hurry.set()
            self.mark("hurry")
            return False
        self._started = self._clock()
        self.mark("draining")
        return True

    def mark(self, step: str, **fields: Any) -> None:
        elapsed = 0.0 if self._started is None else self._clock() - self._started
        self.timeline.append((step, elapsed))
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        log.info("drain step=%s t=%.3fs%s", step, elapsed, extra)

    async def _activity(self, services: Services) -> int:
        """Open peer connections here."""
        return int(services.media.counters().get("peer_connections", 0))

    async def wait_for_sessions(self, services: Services) -> int:
        """Wait until no media flows here, the deadline passes, or a second signal."""
        assert self._started is not None
        end = self._started + self.deadline_s
        while True:
            try:
                remaining = await self._activity(services)
            except Exception:
                log.warning("drain could not count live media", exc_info=True)
                remaining = -1
            if remaining == 0 or self._clock() >= end or self._hurry.is_set():
                return remaining
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), min(_POLL_S, end - self._clock()))

    async def run(self, services: Services, server: _HttpServer | None) -> None:
        """The whole sequence after the signal; never raises, so the process still exits cleanly."""
        if not self.draining:
            self.begin()
        remaining = await self.wait_for_sessions(services)
        self.mark("deadline" if remaining else "idle", peer_connections=remaining)
        closers: tuple[tuple[str, Callable[[], Awaitable[None]]], ...] = (
            # First refuse new signaling (503, clients retry): the media is about to close.
            ("signaling", services.ownership.stop_serving),
            ("media", services.media.close),
            ("chat", services.chat.close),
        )
        for name, close in closers:
            try:
                await close()
            except Exception:
                log.exception("drain could not close %s", name)
            self.mark(f"{name}_closed")
        try:
            self.mark("streams_released", streams=await services.sessions.release_streams())
        except Exception:
            log.exception("drain could not release streams")
        try:
            # Hand-off: the next offer for these sessions, on any instance, takes them at once.
            self.mark("leases_released", sessions=await services.ownership.release_all())
        except Exception:
            log.exception("drain could not release leases")
        if server is not None:
            server.stop()
            try:
                await asyncio.wait_for(server.close_all_connections(), 5)
            except TimeoutError:
                log.warning("drain gave up waiting for HTTP connections to close")
            self.mark("http_closed")
