"""`Peer` and `Peers`: every `RTCPeerConnection` this server holds, from offer to close.

One registry owns the connections' lifecycle so that each is counted, capped, timed out and closed
in exactly one way: viewers count towards presence only once ICE and DTLS are up, an answered offer
that never connects is closed after `settings.peer_connect_timeout_s`, and offers still being
negotiated count towards the caps (offers racing each other would otherwise all pass the checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from server.auth import Claims
from server.domain import QUALITY_AUTO
from server.errors import Invalid, NotFound, TooManyRequests
from server.media.codecs import EncodeProfile
from server.media.composite import LayoutKey
from server.media.fanout import ViewerTrack
from server.media.ladder import Rung, RungSelector
from server.media.link import ViewerLink
from server.presence import Presence
from server.settings import Settings

log = logging.getLogger(__name__)

# Two streams, a composite, and one spare for a reconnect racing the old connection's close.
MAX_CONNECTIONS_PER_VIEWER = 4

Spawn = Callable[[Coroutine[Any, Any, Any]], None]


@dataclass(eq=False)
class Peer:
    """One tracked `RTCPeerConnection` and what it is for."""

    id: str
    pc: RTCPeerConnection
    session_id: str
    role: str  # "publisher" | "viewer" | "composite" | "relay" (another instance pulling a stream)
    viewer_id: str | None = None
    stream_id: str | None = None
    kind: str | None = None
    layout: LayoutKey | None = None
    codec: str | None = None
    video: ViewerTrack | None = None
    audio: ViewerTrack | None = None
    closing: bool = False
    whep: bool = False  # a WHEP composite: its URL, not the saved mode, asked for it
    created_at: float = field(default_factory=time.monotonic)
    # A viewer counts (presence, metrics) only once ICE and DTLS are up; until then a timer
    # closes the connection after `settings.peer_connect_timeout_s`.
    connected: bool = False
    deadline: asyncio.TimerHandle | None = None
    # Adaptive delivery: the source's ladder, this viewer's link, rung and choice.
    ladder: tuple[Rung, ...] = ()
    link: ViewerLink | None = None
    selector: RungSelector | None = None
    rung: int = 0
    choice: str = QUALITY_AUTO
    passthrough: bool = False
    probe_floor_bps: float = 0.0
    switch_at: float = 0.0
    # What this connection's server encodes follow (its stream's quality, or its composite's).
    profile: EncodeProfile | None = None
    # A composite's layout as the viewer chose it (`layout` is what it gets: the nearest running
    # one when the output budget is spent, `substitute` then; server/media/planner.py).
    wanted: LayoutKey | None = None
    substitute: bool = False


class Peers:
    """The connection registry: lookup, caps, connect deadline, close."""

    def __init__(self, settings: Settings, presence: Presence, spawn: Spawn) -> None:
        self.settings = settings
        self.presence = presence
        self._spawn = spawn
        self._peers: dict[str, Peer] = {}
        # Viewer connections between the cap checks and `track` (see `negotiating`).
        self._negotiating: dict[str, Peer] = {}
        self.connect_timeouts = 0
        # Frames dropped by the tracks of connections already closed.
        self.dropped_closed = 0
        # Media bytes sent by connections already closed, by role (the live ones count their own).
        self.bytes_closed: dict[str, int] = {}

    def __iter__(self) -> Iterator[Peer]:
        return iter(list(self._peers.values()))

    def get(self, pc_id: str) -> Peer | None:
        return self._peers.get(pc_id)

    def of_pc(self, pc: RTCPeerConnection) -> Peer | None:
        return next((p for p in self._peers.values() if p.pc is pc), None)

    # -- authorisation ---------------------------------------------------------------------

    def owned(self, claims: Claims, pc_id: object, *, viewers_only: bool = False) -> Peer:
        """The connection `pc_id` if this token opened it; 404 otherwise (never says whose)."""
        if not isinstance(pc_id, str) or len(pc_id) > 64:
            raise Invalid("pc_id must be a string", code="invalid_pc_id")
        peer = self._peers.get(pc_id)
        if (
            peer is None
            or peer.session_id != claims.session_id
            or (peer.role != "publisher" and peer.viewer_id != claims.viewer_id)
            or (peer.role == "publisher" and (viewers_only or claims.role != "broadcaster"))
        ):
            raise NotFound("no such peer connection", code="pc_not_found")
        return peer

    # -- caps --------------------------------------------------------------------------------

    def check_viewer_quota(self, claims: Claims) -> None:
        """A viewer needs at most one connection per stream plus a composite; refuse floods."""
        open_ = sum(
            1
            for p in self._counted()
            if p.session_id == claims.session_id and p.viewer_id == claims.viewer_id
        )
        if open_ >= MAX_CONNECTIONS_PER_VIEWER:
            raise TooManyRequests(
                f"at most {MAX_CONNECTIONS_PER_VIEWER} media connections per viewer",
                code="too_many_connections",
            )

    def check_pending(self, session_id: str) -> None:
        """Offers answered but not yet connected hold sockets and memory: cap them per session."""
        limit = self.settings.max_pending_peers
        pending = sum(
            1
            for p in self._counted()
            if p.session_id == session_id and p.role != "publisher" and not p.connected
        )
        if pending >= limit:
            raise TooManyRequests(
                f"{limit} media connections of this session are still connecting; retry shortly",
                code="too_many_pending",
                retry_after=float(self.settings.peer_connect_timeout_s),
            )

    def _counted(self) -> Iterator[Peer]:
        return itertools.chain(self._peers.values(), self._negotiating.values())

    @contextlib.contextmanager
    def negotiating(self, peer: Peer) -> Iterator[None]:
        """Count `peer` towards the caps while its offer is negotiated (before `track`)."""
        self._negotiating[peer.id] = peer
        try:
            yield
        finally:
            self._negotiating.pop(peer.id, None)

    # -- lifecycle ---------------------------------------------------------------------------

    def track(self, peer: Peer) -> None:
        """Register the connection and follow its state: connected viewers join presence, failed
        or closed ones are closed here (a publisher's failure is reported by its ingest)."""
        self._peers[peer.id] = peer

        @peer.pc.on("connectionstatechange")
        async def on_state() -> None:
            if peer.pc.connectionState == "connected" and not peer.connected and not peer.closing:
                peer.connected = True
                if peer.deadline is not None:
                    peer.deadline.cancel()
                    peer.deadline = None
                if _is_audience(peer):
                    self.presence.add(peer.session_id, peer.viewer_id or "", peer.id)
            elif peer.pc.connectionState in ("failed", "closed") and peer.role != "publisher":
                await self.close(peer)
            elif peer.pc.connectionState == "failed":
                # The ingest reports the stream as failed; drop the connection record too.
                await self.close(peer)

    def arm_deadline(self, peer: Peer) -> None:
        """Presence follows the connection (`track`), so answered-but-never-connected offers are
        not viewers; this closes them."""
        peer.deadline = asyncio.get_running_loop().call_later(
            self.settings.peer_connect_timeout_s, self._connect_deadline, peer
        )

    def _connect_deadline(self, peer: Peer) -> None:
        """A viewer connection that has not connected in time (an offer never followed by ICE,
        e.g. no candidates and no end-of-candidates) is closed and counted."""
        peer.deadline = None
        if peer.connected or peer.closing:
            return
        self.connect_timeouts += 1
        log.info(
            "session=%s viewer=%s pc=%s not connected after %ss: closed",
            peer.session_id,
            peer.viewer_id,
            peer.id,
            self.settings.peer_connect_timeout_s,
        )
        self._spawn(self.close(peer))

    async def close(self, peer: Peer) -> None:
        """Close once: presence, link, tracks, then the connection itself."""
        if peer.closing:
            return
        peer.closing = True
        if peer.deadline is not None:
            peer.deadline.cancel()
            peer.deadline = None
        self._peers.pop(peer.id, None)
        if _is_audience(peer):
            self.presence.remove(peer.session_id, peer.id)
        self.bytes_closed[peer.role] = self.bytes_closed.get(peer.role, 0) + _bytes_sent(peer)
        if peer.link is not None:
            peer.link.close()
        for track in (peer.video, peer.audio):
            if track is not None:
                self.dropped_closed += track.dropped
                track.stop()
        try:
            await peer.pc.close()
        except Exception:
            log.exception("session=%s pc=%s close failed", peer.session_id, peer.id)

    async def close_where(self, match: Callable[[Peer], bool]) -> None:
        for peer in [p for p in self._peers.values() if match(p)]:
            await self.close(peer)

    # -- counters ----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        peers = list(self._peers.values())
        return {
            "peer_connections": len(peers),
            "publishers": sum(1 for p in peers if p.role == "publisher"),
            "viewers": sum(1 for p in peers if _is_audience(p)),
            # Other instances pulling a stream from this one (server/media/relay.py).
            "relays_out": sum(1 for p in peers if p.role == "relay"),
            # Media payload bytes sent, by who received them (viewers here, relaying instances).
            "bytes_out_viewers": self._bytes("viewer") + self._bytes("composite"),
            "bytes_out_relays": self._bytes("relay"),
            # Distinct connected viewers by mode: a separate-mode viewer of two streams counts once.
            "viewers_separate": len(
                {(p.session_id, p.viewer_id) for p in peers if p.role == "viewer" and p.connected}
            ),
            "viewers_composite": len(
                {
                    (p.session_id, p.viewer_id)
                    for p in peers
                    if p.role == "composite" and p.connected
                }
            ),
            "peers_pending": sum(1 for p in peers if p.role != "publisher" and not p.connected),
            "peer_connect_timeouts": self.connect_timeouts,
        }

    def _bytes(self, role: str) -> int:
        live = sum(_bytes_sent(p) for p in self._peers.values() if p.role == role)
        return live + self.bytes_closed.get(role, 0)


def _is_audience(peer: Peer) -> bool:
    """A viewer's connection (presence, viewer counts); not a publisher's, not a relay's."""
    return peer.role in ("viewer", "composite")


def _bytes_sent(peer: Peer) -> int:
    return sum(t.bytes_delivered for t in (peer.video, peer.audio) if t is not None)
