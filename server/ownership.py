"""Who serves a live session's media: an ownership lease per session in the shared store.

Media for a session (its publishers, encoders, composites, recorder, viewers) runs in exactly one
process. That process holds the session's lease (`store.acquire_lease`, a compare-and-set): it takes
it when the session starts, renews it every `lease_heartbeat_s`, and gives it up when the session
ends or the instance drains. A lease nobody renews expires after `lease_ttl_s`; the first instance
then asked to serve the session (a publisher's new offer, a viewer's resubscription) takes it over,
so a crashed owner's sessions move without anyone deciding who gets them.

The lease carries the holder's internal address (`MULTISTREAM_INTERNAL_URL`), which other instances
forward signaling to (`handlers.forward`), and its load (peer connections, CPU), which operators
read in `GET /session/{id}/status` and `/metrics`.

Clocks: expiry compares wall clocks of different hosts, so they must agree to well under the lease
(NTP does; a skew of `s` seconds shortens or lengthens a takeover by `s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server.clock import now_iso
from server.documents import PreferencesDoc, SessionDoc, StreamDoc
from server.errors import Unavailable
from server.settings import Settings
from store.protocol import Doc, Store

log = logging.getLogger(__name__)


class CpuMeter:
    """This process's CPU use (cores busy, 1.0 = one core) since the previous reading."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self.last = 0.0

    def read(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        if wall - self._wall >= 0.5:
            self.last = round((cpu - self._cpu) / (wall - self._wall), 3)
            self._wall, self._cpu = wall, cpu
        return self.last


async def mark_interrupted(store: Store, session_id: str, own: set[str]) -> int:
    """A session taken over from an owner that stopped renewing (crashed): its recordings still
    `recording` that are not this instance's own recorders are marked `interrupted` -- nobody will
    finalise them; the file keeps what was written (on the shared volume: its size is recorded)."""
    marked = 0
    for doc in await store.find("recordings", {"session_id": session_id, "status": "recording"}):
        if doc["id"] in own:
            continue
        updated = await store.update(
            "recordings",
            doc["id"],
            {"status": "interrupted", "ended_at": now_iso()},
            expect={"status": "recording"},
        )
        if updated is not None:
            marked += 1
            log.info("session=%s recording=%s interrupted (owner lost)", session_id, doc["id"])
    return marked


class Ownership:
    """This instance's leases: take, renew, release, and answer "who serves session X"."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        peers: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.instance_id = settings.instance_id
        self.address = settings.internal_url
        self._peers = peers
        self._clock = clock
        self.cpu = CpuMeter()
        # Session id -> the lease this instance holds, as last written.
        self.held: dict[str, Doc] = {}
        # Called with a session id when this instance finds its lease taken by another.
        self.on_lost: Callable[[str], Awaitable[None]] | None = None
        # Called with a session id when this instance takes over a lease that ran out (epoch > 1).
        self.on_taken: Callable[[str], Awaitable[object]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # False once a drain has begun closing media: no session is served here any more.
        self.serving = True

    def bind(self, port: int) -> None:
        """The address other instances forward to, once the HTTP port is known: the configured
        internal URL, else the bound host and port (loopback when bound to every interface)."""
        if self.settings.internal_url:
            self.address = self.settings.internal_url
            return
        host = self.settings.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
            log.warning(
                "MULTISTREAM_INTERNAL_URL is not set and the server listens on every interface: "
                "other instances will be told to forward to http://127.0.0.1:%d (one host only)",
                port,
            )
        self.address = f"http://{host}:{port}"

    def load(self) -> dict[str, Any]:
        return {"peers": int(self._peers()), "cpu": self.cpu.read()}

    # -- leases --------------------------------------------------------------------------------

    async def claim(self, session_id: str) -> Doc:
        """Take or renew the session's lease; the lease as it stands (ours, or its holder's)."""
        now = self._clock()
        lease = await self.store.acquire_lease(
            session_id, self.instance_id, self.address, self.settings.lease_ttl_s, now
        )
        if lease["holder"] != self.instance_id:
            if self.held.pop(session_id, None) is not None:
                log.warning("session=%s lease lost to instance=%s", session_id, lease["holder"])
            return lease
        before = self.held.get(session_id)
        self.held[session_id] = lease
        if before is None or before.get("epoch") != lease["epoch"]:
            log.info("session=%s lease acquired epoch=%s", session_id, lease["epoch"])
            # SessionSync replays writes made elsewhere to `instance_id`: point it here.
            await self.store.update(
                "broadcast_sessions",
                session_id,
                {"instance_id": self.instance_id, "signaling_url": self.settings.public_url},
                expect={"status": "live"},
            )
            if lease["epoch"] > 1 and self.on_taken is not None:
                await self.on_taken(session_id)
        await self.store.update(
            "session_leases", session_id, self.load(), expect={"holder": self.instance_id}
        )
        return lease

    async def current(self, session_id: str) -> Doc | None:
        """The session's unexpired lease, whoever holds it, or None."""
        lease = await self.store.get("session_leases", session_id)
        if lease is None or float(lease.get("expires_at", 0)) <= self._clock():
            return None
        return lease

    async def route(self, session_id: str) -> str | None:
        """Where a signaling request for this session must go: None to serve it here (this
        instance holds, or has just taken, the lease), else the holder's internal address."""
        lease = await self.current(session_id)
        if not self.serving and (lease is None or lease["holder"] == self.instance_id):
            raise Unavailable(
                "this instance is shutting down; retry (another instance takes the session)",
                code="owner_unavailable",
            )
        if lease is not None and lease["holder"] == self.instance_id:
            if session_id not in self.held:  # ours in the store, e.g. after a restart: renew it
                await self.claim(session_id)
            return None
        if lease is None:
            session = await self.store.get("broadcast_sessions", session_id)
            if session is None or session.get("status") != "live":
                return None  # the handler answers 404/409 as it always has
            lease = await self.claim(session_id)
            if lease["holder"] == self.instance_id:
                return None
        return str(lease["address"])

    async def release(self, session_id: str) -> None:
        """Give the lease up now (session ended, drain): the next asker takes it without waiting."""
        if self.held.pop(session_id, None) is None:
            return
        released = await self.store.update(
            "session_leases", session_id, {"expires_at": 0}, expect={"holder": self.instance_id}
        )
        log.info("session=%s lease released=%s", session_id, released is not None)

    async def stop_serving(self) -> None:
        """Drain: serve no more signaling here (503, so clients retry and land on the next owner)
        and stop renewing; `release_all` then hands the leases over."""
        self.serving = False
        await self.close()

    async def release_all(self) -> int:
        held = list(self.held)
        for session_id in held:
            try:
                await self.release(session_id)
            except Exception:
                log.exception("session=%s lease release failed", session_id)
        return len(held)

    async def describe(self, session_id: str) -> dict[str, Any] | None:
        """The `owner` object of a session's status: who serves it, since when, until when, and
        that instance's load as of its last heartbeat (this instance's own load is read now)."""
        lease = await self.current(session_id)
        if lease is None:
            return None
        mine = lease["holder"] == self.instance_id
        load = self.load() if mine else {"peers": lease.get("peers"), "cpu": lease.get("cpu")}
        return {
            "instance_id": lease["holder"],
            "epoch": lease["epoch"],
            "acquired_at": lease["acquired_at"],
            "expires_in_s": round(float(lease["expires_at"]) - self._clock(), 3),
            "answered_by": self.instance_id,
            **load,
        }

    # -- heartbeat -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeat(), name="lease-heartbeat")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _heartbeat(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.lease_heartbeat_s)
            try:
                await self.renew()
            except Exception:
                log.warning("lease heartbeat failed", exc_info=True)

    async def renew(self) -> None:
        """One heartbeat: renew every held lease; drop those of ended sessions; hand lost ones to
        `on_lost` (their media must stop here: another instance serves them now)."""
        for session_id in list(self.held):
            session = await self.store.get("broadcast_sessions", session_id)
            if session is None or session.get("status") != "live":
                await self.release(session_id)
                continue
            lease = await self.claim(session_id)
            if lease["holder"] != self.instance_id and self.on_lost is not None:
                await self.on_lost(session_id)

    # -- SessionEvents: a session that ends gives its lease up at once ---------------------------

    async def stream_started(self, stream: StreamDoc) -> None:
        """Nothing: the lease is the session's."""

    async def stream_stopped(self, stream: StreamDoc) -> None:
        """Nothing: the lease is the session's."""

    async def session_ended(self, session: SessionDoc) -> None:
        await self.release(session["id"])

    async def preferences_changed(self, prefs: PreferencesDoc) -> None:
        """Nothing: preferences do not move media."""
