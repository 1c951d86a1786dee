"""Relay links: this instance serves viewers of a session another instance owns, from one
server-to-server WebRTC connection per stream.

The owner holds the publisher's connection (`server.ownership`); an instance chosen to serve some of
the session's viewers (`server.assignment`) pulls each stream it needs *once* from the owner and fans
it out locally. The pulling side is an ordinary receive-only `RTCPeerConnection` whose offer goes to
the owner's internal endpoint (`POST /internal/relay/{stream_id}`, marked with the same HMAC as a
forwarded request, `handlers.forward`); the owner answers it as a passthrough viewer of the
publisher's own packets (`MediaPlane.serve_relay`: never adapted down a rung, counted as a relay, not
a viewer). Here the connection feeds the stream's local `StreamMedia` through an `Ingest`, exactly as
a publisher's would: the encoded tap publishes the owner's packets to the local passthrough
broadcast, nothing is decoded unless a local encoder or compositor wants frames, and a local
viewer's key-frame request reaches the owner as a PLI over the link (rate-limited by the local
broadcast and by `Ingest.request_keyframe`).

One link per (session, stream) per instance, shared by every local viewer; it closes
`relay_linger_s` after the last local viewer of its stream left. When the link fails (the owner
died or stopped the stream), the stream's local viewers are closed and reconnect, as they would
after a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import tornado.httpclient
from aiortc import RTCSessionDescription
from aiortc import sdp as aiortc_sdp

from server.errors import Unavailable
from server.internal import FORWARDED, internal_mark
from server.media import aiortc_hooks, ice, negotiation
from server.media.feeds import Feeds
from server.media.ingest import Ingest
from server.settings import Settings
from store.protocol import Doc

log = logging.getLogger(__name__)

RELAY_PATH = "/internal/relay/{}"
_TIMEOUT_S = 10.0
# How often idle links are looked for.
_SWEEP_S = 0.5


@dataclass(eq=False)
class RelayLink:
    """One stream pulled from its owner."""

    stream_id: str
    session_id: str
    address: str
    ingest: Ingest
    opened_at: float = field(default_factory=time.monotonic)
    # Since when no local viewer needs the stream (None while one does).
    idle_since: float | None = None


class RelayLinks:
    """This instance's relay links, keyed by stream id, and which sessions are served by relay."""

    def __init__(
        self,
        settings: Settings,
        feeds: Feeds,
        *,
        needed: Callable[[str, str, str], bool],
        teardown: Callable[[str], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.feeds = feeds
        self._needed = needed  # (session_id, stream_id, kind) -> a local viewer needs it
        self._teardown = teardown  # closes a stream's local media and viewers
        self.links: dict[str, RelayLink] = {}
        # Session id -> the owner's internal address, for sessions served here through a relay
        # (set by the assignment before the viewer's offer is handled here).
        self.upstream: dict[str, str] = {}
        self._opening: dict[str, asyncio.Future[RelayLink]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.opened = 0
        self.failed = 0
        self._bytes_closed = 0

    # -- opening -----------------------------------------------------------------------------

    async def prepare(self, session_id: str, streams: Iterable[Doc]) -> None:
        """Make sure every stream in `streams` is pulled, if `session_id` is served here by relay
        (a session this instance owns, or any session on a single instance: nothing to do)."""
        address = self.upstream.get(session_id)
        if address is None:
            return
        await asyncio.gather(*(self.ensure(stream, address) for stream in streams))

    async def ensure(self, stream: Doc, address: str) -> RelayLink:
        """The stream's link to `address`, opened on first need; concurrent callers share one."""
        stream_id = stream["id"]
        link = self.links.get(stream_id)
        if link is not None and link.address == address and self.feeds.is_current(link.ingest):
            link.idle_since = None
            return link
        pending = self._opening.get(stream_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[RelayLink] = asyncio.get_running_loop().create_future()
        self._opening[stream_id] = future
        try:
            link = await self._open(stream, address)
            future.set_result(link)
            return link
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a failed open with no other waiter is not an error
            raise
        finally:
            self._opening.pop(stream_id, None)

    async def _open(self, stream: Doc, address: str) -> RelayLink:
        stream_id = stream["id"]
        media = self.feeds.media_for(stream)
        pc = negotiation.new_pc(self.settings)
        video = pc.addTransceiver("video", direction="recvonly")
        # The relay hop must not add aiortc's one-frame wait before a frame counts as complete.
        aiortc_hooks.release_frames_at_marker(video.receiver)
        if stream["kind"] == "camera":
            pc.addTransceiver("audio", direction="recvonly")
        ingest = Ingest(pc, media, self._on_state)
        try:
            ice.restrict(pc, self.settings.ice_hosts, self.settings.udp_ports)
            await pc.setLocalDescription(await pc.createOffer())
            answer = await self._ask_owner(address, stream_id, negotiation.local_sdp(pc))
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        except BaseException:
            await negotiation.quietly(pc.close(), "relay link cleanup")
            self.failed += 1
            raise
        previous = self.feeds.attach_ingest(ingest)
        media.video_codec = answered_video_codec(answer) or None
        link = RelayLink(stream_id, stream["session_id"], address, ingest)
        old = self.links.get(stream_id)
        self.links[stream_id] = link
        self.opened += 1
        if old is not None:
            self._bytes_closed += old.ingest.bytes_in
        if previous is not None:
            await negotiation.quietly(previous.close(), "replaced relay link")
        self._start_sweeper()
        log.info(
            "session=%s stream=%s relay link opened from %s codec=%s",
            link.session_id,
            stream_id,
            address,
            media.video_codec,
        )
        return link

    async def _ask_owner(self, address: str, stream_id: str, sdp: str) -> str:
        """POST the link's offer to the owner's internal endpoint; its SDP answer."""
        path = RELAY_PATH.format(stream_id)
        body = {"type": "offer", "sdp": sdp, "instance_id": self.settings.instance_id}
        try:
            resp = await tornado.httpclient.AsyncHTTPClient().fetch(
                address + path,
                method="POST",
                headers={"Content-Type": "application/json", FORWARDED: self._mark("POST", path)},
                body=json.dumps(body),
                raise_error=False,
                request_timeout=_TIMEOUT_S,
            )
        except OSError as exc:
            log.warning("relay owner at %s unreachable: %s", address, exc)
            raise _unavailable() from None
        if resp.code != 200:
            log.warning("relay owner at %s refused stream=%s: %s", address, stream_id, resp.code)
            raise _unavailable()
        try:
            return str(json.loads(resp.body)["sdp"])
        except (ValueError, KeyError, TypeError):
            raise _unavailable() from None

    def _mark(self, method: str, path: str) -> str:
        return internal_mark(self.settings.token_secret.reveal(), method, path)

    # -- state and closing -------------------------------------------------------------------

    async def _on_state(self, ingest: Ingest, state: str) -> None:
        """The link's connection came up or ended. Ended: the stream's local viewers go too
        (they reconnect and are assigned again, as after a failover)."""
        stream_id = ingest.media.stream_id
        link = self.links.get(stream_id)
        if link is None or link.ingest is not ingest:
            return
        if state == "live":
            log.info("session=%s stream=%s relay link connected", link.session_id, stream_id)
            return
        log.info("session=%s stream=%s relay link %s", link.session_id, stream_id, state)
        await self.close(stream_id)

    async def close(self, stream_id: str) -> None:
        link = self.links.pop(stream_id, None)
        if link is None:
            return
        self._bytes_closed += link.ingest.bytes_in
        await self._teardown(stream_id)
        with contextlib.suppress(Exception):
            await link.ingest.close()
        log.info("session=%s stream=%s relay link closed", link.session_id, stream_id)

    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(), name="relay-sweep"
            )

    async def _sweep(self) -> None:
        """Close links no local viewer has needed for `relay_linger_s`."""
        while self.links:
            await asyncio.sleep(_SWEEP_S)
            now = time.monotonic()
            for link in list(self.links.values()):
                kind = link.ingest.media.kind
                if self._needed(link.session_id, link.stream_id, kind):
                    link.idle_since = None
                elif link.idle_since is None:
                    link.idle_since = now
                elif now - link.idle_since >= self.settings.relay_linger_s:
                    try:
                        await self.close(link.stream_id)
                    except Exception:
                        log.exception("stream=%s relay link close failed", link.stream_id)

    async def close_all(self) -> None:
        for stream_id in list(self.links):
            await self.close(stream_id)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    # -- what runs ---------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        return {
            "relays_in": len(self.links),
            "relay_bytes_in": self._bytes_closed
            + sum(link.ingest.bytes_in for link in self.links.values()),
            "relay_links_opened": self.opened,
            "relay_links_failed": self.failed,
        }

    def sessions(self) -> list[str]:
        return sorted({link.session_id for link in self.links.values()})


def _unavailable() -> Unavailable:
    return Unavailable(
        "the instance serving this session could not be reached for a relay; retry",
        code="relay_unavailable",
    )


def answered_video_codec(answer: str) -> str:
    """The video codec an SDP answer chose (upper case), or ""."""
    described = aiortc_sdp.SessionDescription.parse(answer)
    for media in described.media:
        if media.kind == "video" and media.rtp.codecs:
            return str(media.rtp.codecs[0].name).upper()
    return ""


def relay_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """What the owner's internal endpoint returns to the relaying instance."""
    return {"type": "answer", "sdp": answer["sdp"], "pc_id": answer["pc_id"]}
