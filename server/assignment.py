"""Which instance serves a viewer: the session's owner, or the least-loaded instance that relays.

Publishers always go to the owner (`server.ownership`). A viewer's signaling (a stream offer, a
composite offer, WHEP, a viewer's signaling socket) may reach any instance, the owner included; with
relay on (`MULTISTREAM_RELAY`), that instance picks, among the owner and every live instance offering to relay,
the one with the fewest peer connections, and either serves the viewer itself -- through a relay
link pulled from the owner when it is not the owner (`server/media/relay.py`) -- or forwards the
signaling there (`handlers.forward`). With relay off, a session owned elsewhere is forwarded to its
owner, as before.

Load comes from the instance records each relaying instance rewrites every heartbeat in the
`instances` collection (and, for an owner that does not relay, from its lease, which carries the
same load). A record is seconds old, so a crowd joining at once would all see the same "least
loaded" instance: each instance also counts the viewers it has itself sent to each instance since
that instance's record was written, and adds them to the recorded load. (Viewers entering through
*other* instances at the same moment are not seen until the next heartbeat; the spread evens out
within one heartbeat.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.errors import Unavailable
from server.ownership import Ownership
from server.settings import Settings
from store.protocol import Doc, Store

log = logging.getLogger(__name__)

_MAX_INSTANCES = 256
# After a viewer is given to this instance, its record is rewritten this much later.
_REFRESH_S = 0.25
_RELAY_PC = re.compile(r"^pc_r([0-9a-f]{8})_")


def instance_tag(instance_id: str) -> str:
    """Eight hex digits standing for an instance in connection ids (any instance id spelling)."""
    return hashlib.sha256(instance_id.encode()).hexdigest()[:8]


def relay_pc_id(instance_id: str) -> str:
    """A connection id naming the relaying instance that serves it (`[A-Za-z0-9_-]`, 29 chars)."""
    return f"pc_r{instance_tag(instance_id)}_{secrets.token_urlsafe(12)}"


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one viewer's signaling is served: `address` None = here."""

    instance_id: str
    address: str | None
    relay: bool  # served by an instance that does not own the session


@dataclass(frozen=True, slots=True)
class _Candidate:
    instance_id: str
    address: str
    peers: int
    at: float  # wall time the load was recorded


class Assignment:
    """This instance's record in `instances`, and the choice of where each viewer is served."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        ownership: Ownership,
        *,
        relaying: Callable[[], list[str]] = list,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.ownership = ownership
        self._relaying = relaying
        self._clock = clock
        # Session id -> the owner's address, for sessions this instance serves by relay; shared
        # with the media plane's `RelayLinks.upstream`.
        self.upstream: dict[str, str] = {}
        # Instance id -> wall times this instance sent a viewer there (pruned at each heartbeat).
        self._sent: dict[str, list[float]] = {}
        self.decisions: dict[str, int] = {"owner": 0, "relay_here": 0, "forwarded": 0}
        self._task: asyncio.Task[None] | None = None
        self._soon: asyncio.Task[None] | None = None

    # -- the record --------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Write this instance's record: address, load, sessions relayed here."""
        if not self.settings.relay:
            return
        if not self.ownership.serving:  # draining: viewers are no longer sent here
            await self.store.delete("instances", self.settings.instance_id)
            return
        now = self._clock()
        load = self.ownership.load()
        doc = {
            "id": self.settings.instance_id,
            "address": self.ownership.address,
            "relay": True,
            "peers": int(load["peers"]),
            "cpu": load["cpu"],
            "relaying": self._relaying()[:100],
            "at": now,
            "expires_at": now + self.settings.lease_ttl_s,
        }
        await self.store.upsert("instances", doc)
        horizon = now - 2 * self.settings.lease_ttl_s
        for instance_id, times in list(self._sent.items()):
            self._sent[instance_id] = [t for t in times if t > horizon]

    def _refresh_soon(self) -> None:
        """A viewer was just given to this instance: rewrite its record shortly (once its peer
        connection is counted) rather than at the next heartbeat, so other entry instances see
        the new load within a fraction of a second."""
        if self._soon is None or self._soon.done():
            self._soon = asyncio.get_running_loop().create_task(self._refresh_after(_REFRESH_S))

    async def _refresh_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.heartbeat()
        except Exception:
            log.warning("instance record refresh failed", exc_info=True)

    def start(self) -> None:
        if self.settings.relay and self._task is None:
            self._task = asyncio.create_task(self._beat(), name="instance-heartbeat")

    async def _beat(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except Exception:
                log.warning("instance record heartbeat failed", exc_info=True)
            await asyncio.sleep(self.settings.lease_heartbeat_s)

    async def close(self) -> None:
        """Stop offering this instance (drain, shutdown): its record goes at once."""
        for task in (self._task, self._soon):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._soon = None
        if self.settings.relay:
            with contextlib.suppress(Exception):
                await self.store.delete("instances", self.settings.instance_id)

    # -- the choice --------------------------------------------------------------------------

    async def decide(self, session_id: str, *, forwarded: bool) -> Decision:
        """Where a viewer's signaling for `session_id` is served. `forwarded`: another instance
        already chose this one (never forwarded again). The owner assigns too: a viewer entering
        through it may be sent to a less-loaded relaying instance."""
        owner_address = await self.ownership.route(session_id)
        mine = owner_address is None
        if mine:
            self.upstream.pop(session_id, None)
        if forwarded:
            if self.settings.relay:
                self._refresh_soon()
            if not mine and (not self.settings.relay or not self.ownership.serving):
                raise Unavailable(
                    "the session moved to another instance; retry", code="owner_unavailable"
                )
            return self._serve_here(session_id, owner_address)
        lease = await self.ownership.current(session_id) if self.settings.relay else None
        if lease is None or not await self._relayable(session_id):
            if mine:
                return self._serve_here(session_id, None)
            self.decisions["forwarded"] += 1
            owner_id = str(lease["holder"]) if lease is not None else ""
            return Decision(owner_id, owner_address, False)
        chosen = await self._least_loaded(lease)
        self._sent.setdefault(chosen.instance_id, []).append(self._clock())
        if chosen.instance_id == self.settings.instance_id:
            self._refresh_soon()
            return self._serve_here(session_id, owner_address)
        self.decisions["forwarded"] += 1
        return Decision(chosen.instance_id, chosen.address, chosen.instance_id != lease["holder"])

    def _serve_here(self, session_id: str, owner_address: str | None) -> Decision:
        """Serve the viewer on this instance: as the owner (`owner_address` None), else through
        a relay link from the owner at `owner_address`."""
        me = self.settings.instance_id
        if owner_address is None:
            self.decisions["owner"] += 1
            return Decision(me, None, False)
        self.upstream[session_id] = owner_address
        self.decisions["relay_here"] += 1
        return Decision(me, None, True)

    async def _relayable(self, session_id: str) -> bool:
        """A relay pulls what the owner ingests: with no stream live yet, a viewer waits for its
        publisher at the owner, as on a single instance."""
        live = await self.store.find(
            "broadcast_streams", {"session_id": session_id, "status": "live"}, limit=1
        )
        return bool(live)

    async def _least_loaded(self, lease: Doc) -> _Candidate:
        """The owner or a live relaying instance, fewest peers first (ties: the owner, then this
        instance, then by id)."""
        owner_id = str(lease["holder"])
        candidates = {c.instance_id: c for c in await self.candidates()}
        if not self.ownership.serving:  # draining: its record may outlive the drain's start
            candidates.pop(self.settings.instance_id, None)
        if owner_id not in candidates:
            at = float(lease.get("expires_at", 0)) - self.settings.lease_ttl_s
            peers = int(lease.get("peers") or 0)
            candidates[owner_id] = _Candidate(owner_id, str(lease["address"]), peers, at)
        me = self.settings.instance_id

        def rank(c: _Candidate) -> tuple[int, int, str]:
            order = 0 if c.instance_id == owner_id else 1 if c.instance_id == me else 2
            return (self._load(c), order, c.instance_id)

        return min(candidates.values(), key=rank)

    def _load(self, candidate: _Candidate) -> int:
        sent = self._sent.get(candidate.instance_id, [])
        return candidate.peers + sum(1 for t in sent if t >= candidate.at)

    async def candidates(self) -> list[_Candidate]:
        """Every instance offering to relay whose record is still fresh."""
        now = self._clock()
        docs = await self.store.find("instances", {"relay": True}, limit=_MAX_INSTANCES)
        return [
            _Candidate(str(d["id"]), str(d["address"]), int(d.get("peers") or 0), float(d["at"]))
            for d in docs
            if float(d.get("expires_at", 0)) > now and d.get("address")
        ]

    async def address_of_pc(self, pc_id: object) -> str | None:
        """The internal address of the instance relaying connection `pc_id`, if another one."""
        if not isinstance(pc_id, str):
            return None
        match = _RELAY_PC.match(pc_id)
        if match is None or match.group(1) == instance_tag(self.settings.instance_id):
            return None
        for candidate in await self.candidates():
            if instance_tag(candidate.instance_id) == match.group(1):
                return candidate.address
        return None

    async def other_addresses(self, session_id: str) -> list[str]:
        """Every other instance that may hold connections of the session's viewers: its owner
        and every live relaying instance."""
        me = self.settings.instance_id
        found = {c.instance_id: c.address for c in await self.candidates()}
        lease = await self.ownership.current(session_id)
        if lease is not None:
            found.setdefault(str(lease["holder"]), str(lease["address"]))
        return [address for instance_id, address in found.items() if instance_id != me]

    async def describe(self, session_id: str) -> dict[str, Any]:
        """The operators' view in a session's status: whether relay is on, and every relaying
        instance's load and whether it relays this session now."""
        instances = []
        for doc in await self.store.find("instances", {"relay": True}, limit=_MAX_INSTANCES):
            if float(doc.get("expires_at", 0)) <= self._clock():
                continue
            instances.append(
                {
                    "instance_id": doc["id"],
                    "peers": doc.get("peers"),
                    "cpu": doc.get("cpu"),
                    "relaying": session_id in (doc.get("relaying") or []),
                }
            )
        return {"enabled": self.settings.relay, "instances": instances}
