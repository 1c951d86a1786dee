"""`MediaPlane`: the one media service the rest of the server talks to.

A thin facade over the media plane's rooms: `peers` (every connection and its lifecycle),
`negotiation` (offer/answer), `feeds` (stream media, encoders, scaled feeds, composites, recorders),
`adaptive` (each viewer's rung and the quality API) and `listener` (what a session change does to
them). Handlers call `publish`, `subscribe`, `subscribe_composite` and `add_candidate` after
authenticating the token; the session service's events reach `listener`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpTransceiver

from server.auth import Claims
from server.domain import StreamQuality
from server.errors import Conflict, DomainError, Forbidden, Invalid
from server.ids import new_id
from server.media import aiortc_hooks, codecs, ice, negotiation, offers, rtpsend
from server.media.adaptive import Adaptation
from server.media.composite import CompositeFeed, LayoutKey
from server.media.encoder import SharedEncoder
from server.media.fanout import PacketBroadcast, ViewerTrack
from server.media.feeds import Feeds
from server.media.ingest import Ingest, StreamMedia
from server.media.keys import FeedKey, Rendition, SourceKey
from server.media.ladder import ladder_for
from server.media.library import RecordingLibrary
from server.media.listener import MediaListener
from server.media.peers import Peer, Peers
from server.media.relay import RelayLinks
from server.media.scaling import variant_height
from server.presence import Presence
from server.sessions import SessionService
from server.settings import Settings
from store.protocol import Store

log = logging.getLogger(__name__)

_ACTIVE = ("pending", "live")
# A composite's nominal height when nothing caps it (its ladder's reference).
_COMPOSITE_HEIGHT = 1080


class MediaPlane:
    """The WebRTC media service of one server process."""

    def __init__(
        self, settings: Settings, store: Store, sessions: SessionService, presence: Presence
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()
        self.peers = Peers(settings, presence, self._spawn)
        self.feeds = Feeds(settings, store, self._spawn)
        self.feeds.on_media = self._media_started
        self.adaptive = Adaptation(settings, self.peers, self.feeds)
        self.feeds.on_composite_freed = lambda session_id: self._spawn(
            self.adaptive.upgrade_substitutes(session_id)
        )
        self.listener = MediaListener(self)
        self.library = RecordingLibrary(store, sessions, settings.recordings_dir)
        # Streams pulled from other instances for viewers of sessions owned there (relay.py).
        self.relay_pc_id: Callable[[], str] = lambda: new_id("pc")
        self.relays = RelayLinks(
            settings,
            self.feeds,
            needed=self._needed_here,
            teardown=self.teardown_stream,
        )

    # -- what runs (tests, metrics) ----------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Snapshot for tests and metrics: what is running right now."""
        out = {**self.peers.counters(), **self.feeds.counters(), **self.relays.counters()}
        out["frames_dropped"] += self.peers.dropped_closed
        return out

    def viewer_links(self) -> list[dict[str, Any]]:
        return self.adaptive.viewer_links()

    def keyframe_requests(self) -> dict[tuple[str, str, str], int]:
        return self.adaptive.keyframe_requests()

    def composite_feeds(self) -> list[CompositeFeed]:
        return list(self.feeds.composites.values())

    def latest_frame(self, session_id: str, kind: str) -> av.VideoFrame | None:
        """Read-only: the newest decoded frame of a session's stream, if any (thumbnails)."""
        media = self.feeds.media_of(session_id, kind)
        return media.frames.latest() if media is not None else None

    def running_encoders(self) -> list[SharedEncoder]:
        """Every running shared encoder (its name says its source; its profile what it makes)."""
        return [e for e in self.feeds.encoders.values() if e.running]

    # -- publishing --------------------------------------------------------------------------

    async def publish(self, claims: Claims, stream_id: str, body: object) -> dict[str, str]:
        """A broadcaster's offer for one of its streams; the server side only receives."""
        _, stream = await self.sessions.authorize_publish(claims, stream_id)
        offer = offers.parse_offer(body)
        offers.check_publisher(offer, stream["kind"])
        pc = self._new_pc()
        peer = Peer(
            new_id("pc"),
            pc,
            stream["session_id"],
            "publisher",
            stream_id=stream_id,
            kind=stream["kind"],
        )
        media = self.feeds.media_for(stream)
        ingest = Ingest(pc, media, self._on_ingest_state)
        try:
            answer = await negotiation.accept_publisher(
                pc, offer, stream["kind"], self.settings, f"stream={stream_id}"
            )
        except DomainError:
            await negotiation.quietly(ingest.close(), "publisher cleanup")
            raise
        previous = self.feeds.attach_ingest(ingest)
        video_t = next((t for t in pc.getTransceivers() if t.kind == "video"), None)
        media.video_codec = (negotiation.negotiated_codec(pc, video_t) or None) if video_t else None
        self.peers.track(peer)
        if previous is not None:
            # A publisher reconnecting replaces its earlier connection; viewers stay.
            old = self.peers.of_pc(previous.pc)
            if old is not None:
                await self.peers.close(old)
        log.info(
            "session=%s stream=%s pc=%s publisher connected (signaling)",
            peer.session_id,
            stream_id,
            peer.id,
        )
        return {"sdp": answer, "type": "answer", "pc_id": peer.id}

    async def _on_ingest_state(self, ingest: Ingest, state: str) -> None:
        """The publisher's media started or ended: the session service records it."""
        if not self.feeds.is_current(ingest):
            return  # a replaced or torn-down connection
        stream_id = ingest.media.stream_id
        if state == "live":
            updated = await self.sessions.mark_stream(stream_id, "live", _ACTIVE)
            if updated is not None and self.settings.record:
                self.feeds.start_recorder(updated)
        elif state in ("failed", "closed"):
            status = "failed" if state == "failed" else "stopped"
            await self.sessions.mark_stream(stream_id, status, _ACTIVE)
            self._spawn(self.teardown_stream(stream_id))

    def _media_started(self, media: StreamMedia) -> None:
        """A camera that (re)starts is heard at once by the composite viewers of its session:
        their audio tracks follow the new broadcast."""
        if media.kind != "camera":
            return
        for peer in self.peers:
            if peer.role == "composite" and peer.session_id == media.session_id and peer.audio:
                peer.audio.switch(media.audio)

    # -- subscribing -------------------------------------------------------------------------

    async def subscribe(self, claims: Claims, stream_id: str, body: object) -> dict[str, str]:
        """A viewer's offer for one stream its preferences enable; the server side only sends."""
        _, stream, _prefs = await self.sessions.authorize_subscribe(claims, stream_id)
        self.peers.check_viewer_quota(claims)
        self.peers.check_pending(claims.session_id)
        offer = offers.parse_offer(body)
        offers.check_viewer(offer)
        await self.relays.prepare(stream["session_id"], [stream])
        height = variant_height(body.get("max_height") if isinstance(body, dict) else None)
        want_audio = stream["kind"] == "camera" and bool(offer.directions("audio"))
        peer = Peer(
            self.peer_id(stream["session_id"]),
            self._new_pc(),
            stream["session_id"],
            "viewer",
            viewer_id=claims.viewer_id,
            stream_id=stream_id,
            kind=stream["kind"],
        )
        media = self.feeds.media_for(stream)
        passthrough = media.video_codec if self.settings.passthrough and height is None else None
        video_t, audio_t, codec = await self._negotiate_viewer(
            peer, offer, want_audio, prefer=passthrough
        )
        quality = StreamQuality.of(stream["kind"], stream.get("quality"))
        profile = codecs.profile_for(quality, self.settings)
        peer.codec = codec
        peer.profile = profile
        if height is not None:
            # An explicit size: that variant only, no adaptation.
            feed = self.feeds.scaled(FeedKey(SourceKey.of_stream(stream_id), height), media.frames)
            profile = codecs.scaled_profile(profile, stream["kind"], height)
            rendition = Rendition(SourceKey.of_stream(stream_id), height)
            source = self.feeds.encoder(rendition, codec, feed.output, profile).broadcast
        else:
            peer.ladder = ladder_for(profile, quality.content_hint, quality.max_height)
            # Same codec as the publisher at the top rung: forward its packets, encode nothing.
            peer.passthrough = passthrough is not None and codec == passthrough
            source = self.adaptive.rung_source(peer, 0)
        self._attach(peer, video_t, audio_t, source, codec, media if want_audio else None)
        log.info(
            "session=%s stream=%s viewer=%s pc=%s codec=%s subscribed",
            peer.session_id,
            stream_id,
            peer.viewer_id,
            peer.id,
            codec,
        )
        return {"sdp": negotiation.local_sdp(peer.pc), "type": "answer", "pc_id": peer.id}

    async def subscribe_composite(
        self,
        claims: Claims,
        session_id: str,
        body: object,
        layout: dict[str, Any] | None = None,
        whep: bool = False,
    ) -> dict[str, str]:
        """A viewer's composite feed: one video track laid out per its saved preferences.
        A WHEP player asks for the composite by URL (`whep`): no composite mode needed, and
        `layout` (`corner`/`size_pct`) may override the saved picture-in-picture."""
        _, prefs = await self.sessions.authorize_composite(claims, session_id)
        if layout:
            prefs = {**prefs, "pip": {**(prefs.get("pip") or {}), **layout}}
        if prefs["mode"] != "composite" and not whep:
            raise Conflict(
                "preferences are in separate mode; set mode to composite first",
                code="not_composite_mode",
            )
        key = self.feeds.layout(prefs)
        if not key.kinds:
            raise Forbidden("no stream is enabled for this viewer", code="stream_not_enabled")
        self.peers.check_viewer_quota(claims)
        self.peers.check_pending(claims.session_id)
        offer = offers.parse_offer(body)
        offers.check_viewer(offer)
        await self._relay_layout(key)
        want_audio = "camera" in key.kinds and bool(offer.directions("audio"))
        peer = Peer(
            self.peer_id(session_id),
            self._new_pc(),
            session_id,
            "composite",
            viewer_id=claims.viewer_id,
            layout=key,
            wanted=key,
            whep=whep,
        )
        video_t, audio_t, codec = await self._negotiate_viewer(peer, offer, want_audio)
        peer.codec = codec
        peer.profile = await self.composite_profile(key)
        peer.ladder = ladder_for(
            peer.profile, peer.profile.tuning, peer.profile.max_height or _COMPOSITE_HEIGHT
        )
        source = self.adaptive.rung_source(peer, 0)
        camera = await self._camera_media(session_id) if want_audio else None
        self._attach(peer, video_t, audio_t, source, codec, camera)
        log.info(
            "session=%s viewer=%s pc=%s %s codec=%s composite subscribed",
            session_id,
            peer.viewer_id,
            peer.id,
            key.name,
            codec,
        )
        return {"sdp": negotiation.local_sdp(peer.pc), "type": "answer", "pc_id": peer.id}

    def peer_id(self, session_id: str) -> str:
        """A viewer connection's id: one served here by relay names this instance (the app sets
        `relay_pc_id`, `server.assignment`), so requests about it find their way here."""
        if session_id in self.relays.upstream:
            return self.relay_pc_id()
        return new_id("pc")

    async def _relay_layout(self, key: LayoutKey) -> None:
        """A composite served here by relay: pull each live stream of its layout (the composite
        is made here from the relayed streams, decoded here)."""
        if key.session_id not in self.relays.upstream:
            return
        streams = [
            s
            for s in await self.sessions.streams_of(key.session_id)
            if s["kind"] in key.kinds and s["status"] == "live"
        ]
        await self.relays.prepare(key.session_id, streams)

    def _needed_here(self, session_id: str, stream_id: str, kind: str) -> bool:
        """Whether a local viewer needs this stream (its relay link stays open meanwhile)."""
        for peer in self.peers:
            if peer.session_id != session_id or peer.role == "relay":
                continue
            if peer.stream_id == stream_id:
                return True
            if peer.layout is not None and kind in peer.layout.kinds:
                return True
        return False

    async def serve_relay(self, stream_id: str, body: object, instance_id: str) -> dict[str, str]:
        """Another instance's relay link for one stream (`server/media/relay.py`): answered like
        a viewer of the publisher's own packets -- passthrough only, never adapted down a rung,
        counted as a relay -- so this instance sends the stream once per relaying instance."""
        stream = await self.sessions.get_stream(stream_id)
        media = self.feeds.media.get(stream_id)
        if stream.get("status") != "live" or media is None or media.video_codec is None:
            raise Conflict("the stream is not live on this instance", code="stream_not_live")
        offer = offers.parse_offer(body)
        offers.check_viewer(offer)
        want_audio = stream["kind"] == "camera" and bool(offer.directions("audio"))
        peer = Peer(
            new_id("pc"),
            self._new_pc(),
            stream["session_id"],
            "relay",
            viewer_id=f"relay:{instance_id}",
            stream_id=stream_id,
            kind=stream["kind"],
        )
        video_t, audio_t, codec = await negotiation.accept_viewer(
            peer.pc, offer, want_audio, self.settings, media.video_codec, f"relay={instance_id}"
        )
        if codec != media.video_codec:
            await negotiation.close_refused(peer.pc)
            raise Conflict("the relay must take the publisher's codec", code="relay_codec")
        peer.passthrough = True
        self._attach(peer, video_t, audio_t, media.video, codec, media if want_audio else None)
        log.info(
            "session=%s stream=%s pc=%s relay to instance=%s codec=%s",
            peer.session_id,
            stream_id,
            peer.id,
            instance_id,
            codec,
        )
        return {"sdp": negotiation.local_sdp(peer.pc), "type": "answer", "pc_id": peer.id}

    async def composite_profile(self, key: LayoutKey) -> codecs.EncodeProfile:
        """What a layout's composite is encoded as: it follows its screen's quality (text: the
        screen's frame rate, size cap and tuning), else its camera's (`codecs.composite_profile`)."""
        quality = {
            s["kind"]: StreamQuality.of(s["kind"], s.get("quality"))
            for s in await self.sessions.streams_of(key.session_id)
            if s["kind"] in key.kinds
        }
        return codecs.composite_profile(quality.get("screen"), quality.get("camera"), self.settings)

    async def _camera_media(self, session_id: str) -> StreamMedia | None:
        """The camera's media, created ahead of its publisher so a composite viewer who arrives
        first still hears the microphone once it starts."""
        media = self.feeds.media_of(session_id, "camera")
        if media is None:
            stream = await self.sessions.active_stream(session_id, "camera")
            if stream is not None:
                media = self.feeds.media_for(stream)
        return media

    async def _negotiate_viewer(
        self, peer: Peer, offer: offers.Offer, want_audio: bool, prefer: str | None = None
    ) -> negotiation.ViewerTransceivers:
        """Negotiate with the peer counted by the caps meanwhile: offers racing each other all
        pass the checks before any is tracked, unless the ones in flight count too."""
        with self.peers.negotiating(peer):
            return await negotiation.accept_viewer(
                peer.pc,
                offer,
                want_audio,
                self.settings,
                prefer,
                f"session={peer.session_id} viewer={peer.viewer_id}",
            )

    def _attach(
        self,
        peer: Peer,
        video_t: RTCRtpTransceiver,
        audio_t: RTCRtpTransceiver | None,
        source: PacketBroadcast,
        codec: str,
        audio_media: StreamMedia | None,
    ) -> None:
        peer.codec = codec
        peer.video = ViewerTrack("video", source)
        video_t.sender.replaceTrack(peer.video)
        # Packets cut once per frame for every viewer, sent without aiortc's per-packet layers.
        rtpsend.install(video_t.sender)
        # aiortc's sender would only flag its own (unused) encoder on PLI/FIR: forward it instead.
        aiortc_hooks.forward_keyframe_requests(video_t.sender, peer.video.request_keyframe)
        if peer.role != "relay":  # a relay takes the original as it is (the far side adapts)
            self.adaptive.start_link(peer, video_t.sender)
        if audio_t is not None and audio_media is not None:
            # A composite's audio outlives one camera stream: it waits for the next one.
            peer.audio = ViewerTrack(
                "audio", audio_media.audio, persistent=peer.role == "composite"
            )
            audio_t.sender.replaceTrack(peer.audio)
            rtpsend.install(audio_t.sender)
        self.peers.track(peer)
        self.peers.arm_deadline(peer)

    def _new_pc(self) -> RTCPeerConnection:
        if self._closed:
            raise Conflict("media plane is shutting down", code="shutting_down")
        return negotiation.new_pc(self.settings)

    # -- candidates, WHIP/WHEP resources (server/whip.py), signaling sockets -----------------

    async def add_candidate(self, claims: Claims, pc_id: object, raw: object) -> None:
        """A trickled remote ICE candidate for a connection this token opened."""
        peer = self.peers.owned(claims, pc_id)
        loopback = bool(self.settings.ice_hosts) and all(
            h.startswith("127.") or h == "::1" for h in self.settings.ice_hosts
        )
        candidate = ice.parse_candidate(raw, loopback)
        if candidate is None:
            return
        try:
            await peer.pc.addIceCandidate(candidate)
        except Exception:
            raise Invalid(
                "candidate does not match the connection", code="invalid_candidate"
            ) from None

    def peer(self, pc_id: str) -> Peer | None:
        return self.peers.get(pc_id)

    def current_publisher(self, stream_id: str | None) -> str | None:
        """The pc_id of the stream's current ingest connection, if any."""
        ingest = self.feeds.ingests.get(stream_id or "")
        peer = self.peers.of_pc(ingest.pc) if ingest is not None else None
        return peer.id if peer is not None else None

    async def close_peer(self, pc_id: str) -> None:
        """Close one connection now (a WHEP `DELETE`, or a replaced WHIP publication)."""
        peer = self.peers.get(pc_id)
        if peer is not None:
            await self.peers.close(peer)

    def disconnect(self, pc_id: str) -> None:
        """The viewer's signaling socket closed: its connections go with it."""
        peer = self.peers.get(pc_id)
        if peer is not None and peer.role != "publisher":
            self._spawn(self.peers.close(peer))

    # -- the adaptive quality API (server/media/adaptive.py) ---------------------------------

    async def set_quality(self, claims: Claims, pc_id: object, choice: object) -> dict[str, Any]:
        return await self.adaptive.set_quality(claims, pc_id, choice)

    def quality_of(self, claims: Claims, pc_id: object) -> dict[str, Any]:
        return self.adaptive.quality_of(claims, pc_id)

    def qualities_of(self, claims: Claims, session_id: str) -> list[dict[str, Any]]:
        return self.adaptive.qualities_of(claims, session_id)

    def viewers_debug(self, session_id: str) -> list[dict[str, Any]]:
        return self.adaptive.viewers_debug(session_id)

    # -- teardown ----------------------------------------------------------------------------

    async def teardown_stream(self, stream_id: str) -> None:
        """Close everything of one stream; the other stream and composites carry on."""
        ingest = self.feeds.detach_ingest(stream_id)
        await self.feeds.close_recorder(stream_id)
        await self.peers.close_where(lambda p: p.stream_id == stream_id)
        if ingest is not None:
            await ingest.close()
        await self.feeds.close_stream(stream_id)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Server shutdown: every connection, recorder, encoder and compositor, then the threads."""
        self._closed = True
        self.adaptive.close()
        await self.relays.close_all()
        for stream_id in list(self.feeds.media):
            await self.teardown_stream(stream_id)
        await self.peers.close_where(lambda p: True)
        await self.feeds.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self.feeds.shutdown_threads()
        log.info("media plane closed")
