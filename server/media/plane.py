"""`MediaPlane`: every peer connection, encoder, composite and recorder of this server, by session.

The plane is the session service's listener (`SessionEvents`): stopping a stream, ending a session or
changing a viewer's preferences closes or updates exactly the connections concerned. Handlers call
`publish`, `subscribe`, `subscribe_composite` and `add_candidate` after authenticating the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc import sdp as aiortc_sdp

from server.auth import Claims
from server.clock import now_iso
from server.domain import QUALITY_AUTO
from server.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, TooManyRequests
from server.ids import new_id
from server.media import aiortc_hooks, codecs, dtls, ice, offers
from server.media.composite import CompositeFeed, LayoutKey
from server.media.encoder import SharedEncoder
from server.media.fanout import PacketBroadcast, ViewerTrack
from server.media.frames import LatestFrame
from server.media.ingest import Ingest, StreamMedia
from server.media.ladder import HEADROOM, Rung, RungSelector, ladder_for
from server.media.library import RecordingLibrary
from server.media.link import ViewerLink
from server.media.recorder import Recorder
from server.media.scaling import ScaledFeed, variant_height
from server.presence import Presence
from server.settings import Settings
from store.protocol import Doc, Store

log = logging.getLogger(__name__)

_ACTIVE = ("pending", "live")
# Two streams, a composite, and one spare for a reconnect racing the old connection's close.
MAX_CONNECTIONS_PER_VIEWER = 4
# How often each adaptive viewer's rung is reconsidered (receiver reports come about every second).
CONTROL_INTERVAL_S = 0.5
# The first estimate before any feedback: the top rung with GCC's usual 1.5x room to grow.
INITIAL_HEADROOM = 1.5
# A rung switch still waiting for its key frame after this long may be reconsidered.
SWITCH_HOLD_S = 3.0
# A link whose estimate is under this multiple of its rung's bitrate is paced.
PACE_BELOW = 2.0
# A rung's measured bitrate counts once it has run this long (its first key frame dominates before).
RATE_SETTLE_S = 6.0
# How long a viewer of the original keeps the stream decoded while its link is unproven.
WARM_S = 20.0
# A rung's measured rate counts up to this multiple of its nominal one (VP8 and x264 meet their
# targets within a few % on the lab's scrolling text; more is key frames asked for by loss).
MEASURED_CAP = 1.2


def _pts_offset_of(media: StreamMedia) -> int | None:
    return media.pts_offset


@dataclass(eq=False)
class Peer:
    """One tracked `RTCPeerConnection` and what it is for."""

    id: str
    pc: RTCPeerConnection
    session_id: str
    role: str  # "publisher" | "viewer" | "composite"
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


class MediaPlane:
    """The WebRTC media service of one server process."""

    def __init__(self, settings: Settings, store: Store, sessions: Any, presence: Presence) -> None:
        self.settings = settings
        self.store = store
        self.sessions = sessions
        self.presence = presence
        codecs.raise_aiortc_bitrate_caps(settings)
        self._epoch = time.monotonic()
        # Encoders and compositors each take ~1–10 ms per frame; a few threads keep the loop free.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="media")
        self._peers: dict[str, Peer] = {}
        # Viewer connections between the cap checks and `_track` (see `_negotiate_viewer`).
        self._negotiating: dict[str, Peer] = {}
        self._media: dict[str, StreamMedia] = {}
        self._ingests: dict[str, Ingest] = {}
        self._encoders: dict[tuple[str, str], SharedEncoder] = {}
        self._composites: dict[LayoutKey, CompositeFeed] = {}
        self._scaled: dict[str, ScaledFeed] = {}
        self._prefs_seen: dict[tuple[str, str], str] = {}
        self._recorders: dict[str, Recorder] = {}
        self._dropped_closed = 0
        self._connect_timeouts = 0
        self._control: asyncio.Task[None] | None = None
        # Last measured bitrate of each rung's encoder (key: encoder source key).
        self._rung_measured: dict[str, float] = {}
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()
        self.library = RecordingLibrary(store, sessions, settings.recordings_dir)

    # -- counters (tests, metrics) -----------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Snapshot for tests and metrics: what is running right now."""
        return {
            "peer_connections": len(self._peers),
            "publishers": sum(1 for p in self._peers.values() if p.role == "publisher"),
            "viewers": sum(1 for p in self._peers.values() if p.role != "publisher"),
            # Distinct connected viewers by mode: a separate-mode viewer of two streams counts once.
            "viewers_separate": len(
                {
                    (p.session_id, p.viewer_id)
                    for p in self._peers.values()
                    if p.role == "viewer" and p.connected
                }
            ),
            "viewers_composite": len(
                {
                    (p.session_id, p.viewer_id)
                    for p in self._peers.values()
                    if p.role == "composite" and p.connected
                }
            ),
            "peers_pending": sum(
                1 for p in self._peers.values() if p.role != "publisher" and not p.connected
            ),
            "peer_connect_timeouts": self._connect_timeouts,
            "encoders_running": sum(1 for e in self._encoders.values() if e.running),
            "composite_encoders": sum(
                1
                for (src, _), e in self._encoders.items()
                if src.startswith("composite") and e.running
            ),
            "passthrough_viewers": sum(m.video.readers for m in self._media.values()),
            "decoding_streams": sum(1 for i in self._ingests.values() if i.decoding),
            "composite_layouts": len(self._composites),
            "scaled_variants": len(self._scaled),
            "recorders": len(self._recorders),
            "frames_dropped": self._dropped_closed
            + sum(e.broadcast.dropped for e in self._encoders.values())
            + sum(m.video.dropped + m.audio.dropped for m in self._media.values()),
            "frames_encoded": sum(e.frames_encoded for e in self._encoders.values()),
            "rungs_running": sum(
                1 for (src, _), e in self._encoders.items() if "#" in src and e.running
            ),
            "keyframe_requests_suppressed": sum(
                e.broadcast.key_requests_suppressed for e in self._encoders.values()
            )
            + sum(m.video.key_requests_suppressed for m in self._media.values()),
            "frames_skipped": sum(e.frames_skipped for e in self._encoders.values()),
            "frames_decoded": sum(i.frames_in for i in self._ingests.values()),
        }

    def viewer_links(self) -> list[dict[str, Any]]:
        """Every adaptive viewer connection's target bitrate, rung and resend counts (metrics)."""
        out = []
        for peer in self._peers.values():
            if peer.link is None:
                continue
            out.append(
                {
                    "target_bps": peer.link.target_bps(),
                    "rung": peer.rung,
                    "limited": peer.rung > 0,
                    "resent": peer.link.rtx.resent,
                    "resend_skipped": peer.link.rtx.skipped_old
                    + peer.link.rtx.skipped_budget
                    + peer.link.rtx.skipped_recent
                    + peer.link.moot,
                }
            )
        return out

    def keyframe_requests(self) -> dict[tuple[str, str, str], int]:
        """(target, reason, outcome) -> count of key-frame requests (metrics): target "publisher"
        (PLIs sent to publishers) or "encoder" (forced key frames of shared encoders)."""
        out: dict[tuple[str, str, str], int] = {}

        def add(key: tuple[str, str, str], n: int) -> None:
            out[key] = out.get(key, 0) + n

        for ingest in self._ingests.values():
            for reason, n in ingest.plis_sent.items():
                add(("publisher", reason, "sent"), n)
        sources = [("publisher", m.video) for m in self._media.values()]
        sources += [("encoder", e.broadcast) for e in self._encoders.values()]
        for target, broadcast in sources:
            for reason, n in broadcast.key_requests.items():
                add((target, reason, "forwarded"), n)
            for reason, n in broadcast.key_requests_suppressed_by.items():
                add((target, reason, "suppressed"), n)
        return out

    def composite_feeds(self) -> list[CompositeFeed]:
        return list(self._composites.values())

    # -- publishing ------------------------------------------------------------------------------

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
        media = self._stream_media(stream)
        ingest = Ingest(pc, media, self._on_ingest_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            seen: set[str] = set()
            for t in pc.getTransceivers():
                wanted = t.kind == "video" or (t.kind == "audio" and stream["kind"] == "camera")
                t.direction = "recvonly" if wanted and t.kind not in seen else "inactive"
                seen.add(t.kind)
            answer = await self._answer(pc)
        except DomainError:
            await _quietly(ingest.close(), "publisher cleanup")
            raise
        except Exception as exc:
            await _quietly(ingest.close(), "publisher cleanup")
            log.info("stream=%s publisher offer refused: %r", stream_id, exc)
            raise Invalid("offer could not be negotiated", code="invalid_sdp") from None
        previous = self._ingests.get(stream_id)
        self._ingests[stream_id] = ingest
        media.ingest = ingest
        video_t = next((t for t in pc.getTransceivers() if t.kind == "video"), None)
        media.video_codec = (self._negotiated_codec(pc, video_t) or None) if video_t else None
        self._track(peer)
        if previous is not None:
            # A publisher reconnecting replaces its earlier connection; viewers stay.
            old = next((p for p in self._peers.values() if p.pc is previous.pc), None)
            if old is not None:
                await self._close_peer(old)
        log.info(
            "session=%s stream=%s pc=%s publisher connected (signaling)",
            peer.session_id,
            stream_id,
            peer.id,
        )
        return {"sdp": answer, "type": "answer", "pc_id": peer.id}

    async def _on_ingest_state(self, ingest: Ingest, state: str) -> None:
        stream_id = ingest.media.stream_id
        if self._ingests.get(stream_id) is not ingest:
            return  # a replaced or torn-down connection
        if state == "live":
            updated = await self._set_stream_status(stream_id, "live", ("pending", "live"))
            if updated is not None and self.settings.record:
                self._start_recorder(updated)
        elif state in ("failed", "closed"):
            status = "failed" if state == "failed" else "stopped"
            updated = await self._set_stream_status(stream_id, status, _ACTIVE)
            self._spawn(self._teardown_stream(stream_id))

    async def _set_stream_status(
        self, stream_id: str, status: str, expect_any: tuple[str, ...]
    ) -> Doc | None:
        stream = await self.store.get("broadcast_streams", stream_id)
        if stream is None or stream["status"] not in expect_any:
            return None
        fields: dict[str, Any] = {"status": status}
        if status == "live" and stream["status"] != "live":
            fields["started_at"] = now_iso()
        if status in ("stopped", "failed"):
            fields["stopped_at"] = now_iso()
        updated = await self.store.update(
            "broadcast_streams", stream_id, fields, expect={"status": stream["status"]}
        )
        if updated is not None and stream["status"] != status:
            log.info(
                "session=%s stream=%s status %s -> %s",
                stream["session_id"],
                stream_id,
                stream["status"],
                status,
            )
        return updated

    # -- subscribing -----------------------------------------------------------------------------

    async def subscribe(self, claims: Claims, stream_id: str, body: object) -> dict[str, str]:
        """A viewer's offer for one stream its preferences enable; the server side only sends."""
        _, stream, _prefs = await self.sessions.authorize_subscribe(claims, stream_id)
        self._check_viewer_quota(claims)
        self._check_pending(claims.session_id)
        offer = offers.parse_offer(body)
        offers.check_viewer(offer)
        height = variant_height(body.get("max_height") if isinstance(body, dict) else None)
        want_audio = stream["kind"] == "camera" and bool(offer.directions("audio"))
        peer = Peer(
            new_id("pc"),
            self._new_pc(),
            stream["session_id"],
            "viewer",
            viewer_id=claims.viewer_id,
            stream_id=stream_id,
            kind=stream["kind"],
        )
        media = self._stream_media(stream)
        passthrough = media.video_codec if self.settings.passthrough and height is None else None
        video_t, audio_t, codec = await self._negotiate_viewer(
            peer, offer, want_audio, prefer=passthrough
        )
        profile = codecs.profile_for(stream["kind"], stream.get("quality"), self.settings)
        peer.codec = codec
        if height is not None:
            # An explicit size: that variant only, no adaptation.
            feed = self._scaled_feed(media, height)
            profile = codecs.scaled_profile(profile, stream["kind"], height)
            source = self._encoder(feed.name, codec, feed.output, profile).broadcast
        else:
            quality = stream.get("quality") or {}
            hint = str(
                quality.get("content_hint") or ("motion" if peer.kind == "camera" else "detail")
            )
            nominal = int(quality.get("height") or (1080 if peer.kind == "screen" else 720))
            peer.ladder = ladder_for(profile, hint, nominal)
            # Same codec as the publisher at the top rung: forward its packets, encode nothing.
            peer.passthrough = passthrough is not None and codec == passthrough
            source = self._rung_source(peer, 0)
        self._attach(peer, video_t, audio_t, source, codec, media if want_audio else None)
        log.info(
            "session=%s stream=%s viewer=%s pc=%s codec=%s subscribed",
            peer.session_id,
            stream_id,
            peer.viewer_id,
            peer.id,
            codec,
        )
        return {"sdp": self._local_sdp(peer.pc), "type": "answer", "pc_id": peer.id}

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
        key = self._layout_key(prefs)
        if not key.kinds:
            raise Forbidden("no stream is enabled for this viewer", code="stream_not_enabled")
        self._check_viewer_quota(claims)
        self._check_pending(claims.session_id)
        offer = offers.parse_offer(body)
        offers.check_viewer(offer)
        want_audio = "camera" in key.kinds and bool(offer.directions("audio"))
        peer = Peer(
            new_id("pc"),
            self._new_pc(),
            session_id,
            "composite",
            viewer_id=claims.viewer_id,
            layout=key,
            whep=whep,
        )
        video_t, audio_t, codec = await self._negotiate_viewer(peer, offer, want_audio)
        peer.codec = codec
        peer.ladder = ladder_for(codecs.profile_for("composite", None, self.settings), "text", 1080)
        source = self._rung_source(peer, 0)
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
        return {"sdp": self._local_sdp(peer.pc), "type": "answer", "pc_id": peer.id}

    async def _negotiate_viewer(
        self, peer: Peer, offer: offers.Offer, want_audio: bool, prefer: str | None = None
    ) -> tuple[RTCRtpTransceiver, RTCRtpTransceiver | None, str]:
        """Negotiate with the peer counted by the caps meanwhile: offers racing each other all
        pass the checks before any is tracked, unless the ones in flight count too."""
        self._negotiating[peer.id] = peer
        try:
            return await self._negotiate(peer, offer, want_audio, prefer)
        finally:
            self._negotiating.pop(peer.id, None)

    async def _negotiate(
        self, peer: Peer, offer: offers.Offer, want_audio: bool, prefer: str | None
    ) -> tuple[RTCRtpTransceiver, RTCRtpTransceiver | None, str]:
        pc = peer.pc
        order = list(self.settings.video_codecs)
        if prefer is not None:
            # The publisher's codec first: a viewer that supports it gets forwarded packets.
            order = [prefer, *[c for c in order if c.upper() != prefer]]
        try:
            video_t = pc.addTransceiver("video", direction="sendonly")
            video_t.setCodecPreferences(codecs.video_preferences(order))
            audio_t = pc.addTransceiver("audio", direction="sendonly") if want_audio else None
            await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            for t in pc.getTransceivers():
                if t is not video_t and t is not audio_t:
                    t.direction = "inactive"  # never receive anything from a viewer
            await self._answer(pc)
            codec = self._negotiated_codec(pc, video_t)
        except DomainError:
            await close_refused(pc)
            raise
        except Exception as exc:
            await close_refused(pc)
            log.info("session=%s viewer=%s offer refused: %r", peer.session_id, peer.viewer_id, exc)
            raise Invalid("offer could not be negotiated", code="invalid_sdp") from None
        if video_t.mid is None or codec not in codecs.SUPPORTED_VIDEO:
            await close_refused(pc)
            raise Invalid("offer has no usable video codec (H264 or VP8)", code="no_common_codec")
        return video_t, audio_t if (audio_t and audio_t.mid) else None, codec

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
        # aiortc's sender would only flag its own (unused) encoder on PLI/FIR: forward it instead.
        aiortc_hooks.forward_keyframe_requests(video_t.sender, peer.video.request_keyframe)
        if peer.ladder and self.settings.adaptive:
            top = peer.ladder[0].bitrate_bps
            peer.link = ViewerLink(video_t.sender, int(top * INITIAL_HEADROOM))
            peer.link.install()
            peer.link.on_unrecoverable = peer.video.resync
            peer.selector = RungSelector(len(peer.ladder), time.monotonic())
            peer.video.recover = functools.partial(self._recover_on_rung, peer)
            if peer.passthrough and peer.stream_id in self._media:
                # Decode while this viewer's link is unproven: should it need an encoded rung,
                # the decoder runs already (it starts on this viewer's join key frame).
                self._media[peer.stream_id].frames.keep_warm(WARM_S)
            self._ensure_control_loop()
        if audio_t is not None and audio_media is not None:
            # A composite's audio outlives one camera stream: it waits for the next one.
            peer.audio = ViewerTrack(
                "audio", audio_media.audio, persistent=peer.role == "composite"
            )
            audio_t.sender.replaceTrack(peer.audio)
        self._track(peer)
        # Presence follows the connection (`_track`), so answered-but-never-connected offers are
        # not viewers.
        peer.deadline = asyncio.get_running_loop().call_later(
            self.settings.peer_connect_timeout_s, self._connect_deadline, peer
        )

    # -- candidates ------------------------------------------------------------------------------

    async def add_candidate(self, claims: Claims, pc_id: object, raw: object) -> None:
        """A trickled remote ICE candidate for a connection this token opened."""
        if not isinstance(pc_id, str) or len(pc_id) > 64:
            raise Invalid("pc_id must be a string", code="invalid_pc_id")
        peer = self._peers.get(pc_id)
        if (
            peer is None
            or peer.session_id != claims.session_id
            or (peer.role != "publisher" and peer.viewer_id != claims.viewer_id)
            or (peer.role == "publisher" and claims.role != "broadcaster")
        ):
            raise NotFound("no such peer connection", code="pc_not_found")
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

    # -- WHIP/WHEP resources (server/whip.py) ------------------------------------------------

    def peer(self, pc_id: str) -> Peer | None:
        return self._peers.get(pc_id)

    def current_publisher(self, stream_id: str | None) -> str | None:
        """The pc_id of the stream's current ingest connection, if any."""
        ingest = self._ingests.get(stream_id or "")
        peer = next((p for p in self._peers.values() if ingest and p.pc is ingest.pc), None)
        return peer.id if peer is not None else None

    async def close_peer(self, pc_id: str) -> None:
        """Close one connection now (a WHEP `DELETE`, or a replaced WHIP publication)."""
        peer = self._peers.get(pc_id)
        if peer is not None:
            await self._close_peer(peer)

    def disconnect(self, pc_id: str) -> None:
        """The viewer's signaling socket closed: its connections go with it."""
        peer = self._peers.get(pc_id)
        if peer is not None and peer.role != "publisher":
            self._spawn(self._close_peer(peer))

    # -- session events (SessionEvents) ----------------------------------------------------------

    async def stream_started(self, stream: Doc) -> None:
        """Nothing to do until the broadcaster's offer arrives."""

    async def stream_stopped(self, stream: Doc) -> None:
        await self._teardown_stream(stream["id"])

    async def session_ended(self, session: Doc) -> None:
        session_id = session["id"]
        for seen in [k for k in self._prefs_seen if k[0] == session_id]:
            del self._prefs_seen[seen]
        for stream_id in [s for s, m in self._media.items() if m.session_id == session_id]:
            await self._teardown_stream(stream_id)
        for peer in [p for p in self._peers.values() if p.session_id == session_id]:
            await self._close_peer(peer)
        for key in [k for k in self._composites if k.session_id == session_id]:
            await self._close_composite(key)

    async def preferences_changed(self, prefs: Doc) -> None:
        session_id, viewer_id = prefs["session_id"], prefs["viewer_id"]
        # Events can arrive twice or late (replayed from the store by another instance's sync):
        # never let an older preference undo a newer one.
        updated = str(prefs.get("updated_at") or "")
        seen = self._prefs_seen.get((session_id, viewer_id), "")
        if updated and updated < seen:
            return
        self._prefs_seen[(session_id, viewer_id)] = updated or seen
        enabled = set(prefs["enabled_streams"])
        for peer in [
            p
            for p in self._peers.values()
            if p.session_id == session_id and p.viewer_id == viewer_id
        ]:
            if peer.role == "viewer" and peer.kind not in enabled:
                await self._close_peer(peer)
            elif peer.role == "composite":
                key = self._layout_key(prefs)
                if peer.whep and peer.layout is not None:
                    # Its URL chose the layout; only the enabled streams follow the preferences.
                    key = LayoutKey(session_id, peer.layout.corner, peer.layout.size_pct, key.kinds)
                if (prefs["mode"] != "composite" and not peer.whep) or not key.kinds:
                    await self._close_peer(peer)
                elif key != peer.layout and peer.video is not None and peer.codec is not None:
                    # Layout follows the preference live: same connection, another shared feed
                    # (the same rung of it).
                    peer.layout = key
                    peer.video.switch(self._rung_source(peer, peer.rung))
                    log.info(
                        "session=%s viewer=%s pc=%s layout -> %s",
                        session_id,
                        viewer_id,
                        peer.id,
                        key.name,
                    )

    # -- adaptive delivery -----------------------------------------------------------------------

    def _rung_source(self, peer: Peer, index: int) -> PacketBroadcast:
        """The shared output of rung `index` of this viewer's source, started if needed."""
        rung = peer.ladder[index]
        codec = peer.codec or "VP8"
        if peer.role == "composite":
            assert peer.layout is not None
            if rung.source:
                return self._composite_encoder(peer.layout, codec).broadcast
            base = f"composite:{peer.layout.name}"
            frames = self._composite_feed(peer.layout).output
            content = "composite"
            timeline: StreamMedia | None = None
        else:
            assert peer.stream_id is not None
            media = self._media[peer.stream_id]
            profile = codecs.profile_for(media.kind, media.stream.get("quality"), self.settings)
            if rung.source:
                if peer.passthrough:
                    return media.video
                return self._encoder(
                    f"stream:{peer.stream_id}", codec, media.frames, profile, media
                ).broadcast
            base = f"stream:{peer.stream_id}"
            frames = media.frames
            content = profile.content
            timeline = media
        if rung.height is None:
            name = f"{base}@full"
        else:
            feed = self._scaled_of(f"{base}@{rung.height}p", frames, rung.height)
            name, frames = feed.name, feed.output
        return self._encoder(
            f"{name}#{rung.name}", codec, frames, rung.profile(content), timeline
        ).broadcast

    def _recover_on_rung(self, peer: Peer, reason: str) -> bool:
        """A viewer of the publisher's own packets, shared with others, lost its picture
        (`reason`: its PLI, a packet that will not be resent, frames too late for its link).
        A key frame from the publisher would reach every viewer; when the stream is being
        decoded anyway, move this one to the encoded rung its link carries instead: that
        encoder's key frame reaches only its own viewers. (It climbs back by the selector.)"""
        track, link, selector = peer.video, peer.link, peer.selector
        media = self._media.get(peer.stream_id or "")
        if (
            track is None
            or link is None
            or selector is None
            or peer.closing
            or not peer.passthrough
            or peer.rung != 0
            or len(peer.ladder) < 2
            or peer.choice != QUALITY_AUTO
            or track.pending is not None
            or media is None
            or media.ingest is None
            or not media.ingest.decoding
        ):
            return False
        rates = self._rung_rates(peer)
        usable = link.target_bps() * HEADROOM
        index = next((i for i in range(1, len(rates)) if rates[i] <= usable), len(rates) - 1)
        now = time.monotonic()
        selector.index, selector.changed_at, selector.fits_since = index, now, None
        peer.rung, peer.switch_at = index, now
        log.info(
            "session=%s viewer=%s pc=%s recovers (%s) on rung %s, not on the shared original",
            peer.session_id,
            peer.viewer_id,
            peer.id,
            reason,
            peer.ladder[index].name,
        )
        track.switch(self._rung_source(peer, index))
        return True

    def _ensure_control_loop(self) -> None:
        if self._control is None or self._control.done():
            self._control = asyncio.get_running_loop().create_task(
                self._control_loop(), name="media-adapt"
            )

    async def _control_loop(self) -> None:
        """Every viewer's rung follows its link, twice a second."""
        while not self._closed:
            await asyncio.sleep(CONTROL_INTERVAL_S)
            adaptive = [p for p in self._peers.values() if p.link is not None and not p.closing]
            if not adaptive:
                return
            for peer in adaptive:
                try:
                    self._adapt(peer)
                except Exception:
                    log.exception("session=%s pc=%s adaptation failed", peer.session_id, peer.id)

    def _rung_key(self, peer: Peer, index: int) -> str:
        rung = peer.ladder[index]
        if peer.role == "composite":
            assert peer.layout is not None
            base = f"composite:{peer.layout.name}"
        else:
            base = f"stream:{peer.stream_id}"
        variant = "full" if rung.height is None else f"{rung.height}p"
        return f"{base}@{variant}#{rung.name}"

    def _rung_rates(self, peer: Peer) -> list[float]:
        """Each rung's bitrate: as last measured (encoders overshoot their target on hard content,
        e.g. scrolling text; the original is whatever the publisher sends), else its nominal one.
        Measurements outlive the rung's encoder, so a rung that proved too big stays so."""
        rates: list[float] = []
        current = peer.video.source if peer.video is not None else None
        for i, rung in enumerate(peer.ladder):
            rate = float(rung.bitrate_bps)
            if i == 0 and peer.passthrough and peer.stream_id in self._media:
                measured = self._media[peer.stream_id].video.rate_bps()
                rate = measured if measured > 0 else rate
            elif not rung.source:
                key = self._rung_key(peer, i)
                if (
                    i == peer.rung
                    and current is not None
                    and peer.video is not None
                    and peer.video.pending is None
                ):
                    # (While a switch waits, `current` is still the rung being left.)
                    measured = current.rate_bps(settled_s=RATE_SETTLE_S)
                    if measured > 0:
                        # Smoothed: one window holding a key frame is not the rung's rate.
                        known = self._rung_measured.get(key, measured)
                        self._rung_measured[key] = 0.8 * known + 0.2 * measured
                rate = max(rate, min(self._rung_measured.get(key, 0.0), MEASURED_CAP * rate))
            rates.append(rate)
        return rates

    def _adapt(self, peer: Peer) -> None:
        link, selector, track = peer.link, peer.selector, peer.video
        assert link is not None and selector is not None
        if track is None or track.readyState != "live":
            return
        link.tick()
        now = time.monotonic()
        # Pace only where the link could be the bottleneck (the hook has a per-packet cost).
        rate_now = self._rung_rates(peer)[peer.rung]
        at_risk = link.estimator.congested() or link.target_bps() < PACE_BELOW * rate_now
        link.set_paced(at_risk)
        if at_risk and peer.passthrough and peer.rung == 0 and peer.stream_id in self._media:
            self._media[peer.stream_id].frames.keep_warm(WARM_S)
        if track.pending is not None and now - peer.switch_at < SWITCH_HOLD_S:
            return  # a switch waits for its key frame: judge the new rung once it delivers
        if peer.choice != QUALITY_AUTO:
            wanted = next(
                (i for i, r in enumerate(peer.ladder) if r.name == peer.choice), peer.rung
            )
        else:
            rates = self._rung_rates(peer)
            snap = link.estimator
            probing_before = selector.probing_from
            failed_before = selector.probes_failed
            wanted = selector.update(
                now,
                link.target_bps(),
                rates,
                snap.feedback.loss,
                snap.remb(now),
                link.sent_bps,
                snap.up_target_bps(now),
                # Chromium's REMB lags a probe by seconds; loss and queueing answer at once.
                snap.congested(),
            )
            if selector.probing_from is not None and probing_before is None:
                # A probe: lift the estimate to what the rung above needs, remember where from.
                peer.probe_floor_bps = snap.loss_based_bps
                link.raise_to(rates[wanted] / HEADROOM)
            elif selector.probes_failed > failed_before:
                link.lower_to(peer.probe_floor_bps)
        if wanted != peer.rung:
            log.info(
                "session=%s viewer=%s pc=%s rung %s -> %s (target %d bps)",
                peer.session_id,
                peer.viewer_id,
                peer.id,
                peer.ladder[peer.rung].name,
                peer.ladder[wanted].name,
                link.target_bps(),
            )
            peer.rung = wanted
            peer.switch_at = now
            track.switch(self._rung_source(peer, wanted), seamless=True)

    async def set_quality(self, claims: Claims, pc_id: object, choice: object) -> dict[str, Any]:
        """A viewer picks a rung by name, or "auto" (follow its link)."""
        peer = self._viewer_peer(claims, pc_id)
        names = [r.name for r in peer.ladder]
        if not isinstance(choice, str) or (choice != QUALITY_AUTO and choice not in names):
            raise Invalid(f"quality must be 'auto' or one of {names}", code="invalid_quality")
        peer.choice = choice
        if peer.link is not None:
            self._adapt(peer)
        return self._viewer_state(peer)

    def _viewer_peer(self, claims: Claims, pc_id: object) -> Peer:
        if not isinstance(pc_id, str) or len(pc_id) > 64:
            raise Invalid("pc_id must be a string", code="invalid_pc_id")
        peer = self._peers.get(pc_id)
        if (
            peer is None
            or peer.role == "publisher"
            or peer.session_id != claims.session_id
            or peer.viewer_id != claims.viewer_id
        ):
            raise NotFound("no such peer connection", code="pc_not_found")
        return peer

    def quality_of(self, claims: Claims, pc_id: object) -> dict[str, Any]:
        """What this viewer connection gets and why (the page's quality menu)."""
        return self._viewer_state(self._viewer_peer(claims, pc_id))

    def qualities_of(self, claims: Claims, session_id: str) -> list[dict[str, Any]]:
        """The same for every open connection of this viewer (a page polls this: a connection
        that just closed is simply absent, not an error)."""
        return [
            self._viewer_state(p)
            for p in self._peers.values()
            if p.role != "publisher"
            and p.session_id == session_id == claims.session_id
            and p.viewer_id == claims.viewer_id
            and not p.closing
        ]

    def _viewer_state(self, peer: Peer) -> dict[str, Any]:
        rung = peer.ladder[peer.rung] if peer.ladder else None
        target = peer.link.target_bps() if peer.link is not None else None
        limited = peer.choice == QUALITY_AUTO and peer.rung > 0 and peer.link is not None
        return {
            "pc_id": peer.id,
            "choice": peer.choice,
            "rungs": [
                {"name": r.name, "height": r.height, "fps": r.fps, "bitrate_bps": r.bitrate_bps}
                for r in peer.ladder
            ],
            "rung": rung.name if rung is not None else None,
            "delivering": (
                peer.ladder[peer.rung].name
                if peer.video is not None and peer.video.pending is None and rung is not None
                else None
            ),
            "target_bps": target,
            "limited_by_connection": limited,
        }

    def viewers_debug(self, session_id: str) -> list[dict[str, Any]]:
        """Every viewer connection of a session: estimate, rung, pacing, resends, drops."""
        out: list[dict[str, Any]] = []
        for peer in self._peers.values():
            if peer.session_id != session_id or peer.role == "publisher":
                continue
            entry: dict[str, Any] = {
                "pc_id": peer.id,
                "viewer_id": peer.viewer_id,
                "role": peer.role,
                "kind": peer.kind,
                "codec": peer.codec,
                "choice": peer.choice,
                "rung": peer.ladder[peer.rung].name if peer.ladder else None,
                "switching": peer.video is not None and peer.video.pending is not None,
                "link": peer.link.snapshot() if peer.link is not None else None,
                "rung_rates_bps": [int(r) for r in self._rung_rates(peer)] if peer.ladder else [],
                "probes": peer.selector.probes if peer.selector is not None else 0,
                "probes_failed": peer.selector.probes_failed if peer.selector is not None else 0,
            }
            if peer.video is not None:
                entry["keyframes"] = peer.video.source.keyframe_stats()
                media = self._media.get(peer.stream_id or "")
                if media is not None and media.ingest is not None:
                    entry["keyframes"]["publisher_plis"] = dict(media.ingest.plis_sent)
                entry["frames_delivered"] = peer.video.delivered
                entry["frames_dropped"] = peer.video.dropped
                entry["frames_dropped_late"] = peer.video.dropped_late
                entry["switches"] = peer.video.switches
            out.append(entry)
        return out

    # -- building blocks -------------------------------------------------------------------------

    def _check_viewer_quota(self, claims: Claims) -> None:
        """A viewer needs at most one connection per stream plus a composite; refuse floods."""
        open_ = sum(
            1
            for p in self._counted_peers()
            if p.session_id == claims.session_id and p.viewer_id == claims.viewer_id
        )
        if open_ >= MAX_CONNECTIONS_PER_VIEWER:
            raise TooManyRequests(
                f"at most {MAX_CONNECTIONS_PER_VIEWER} media connections per viewer",
                code="too_many_connections",
            )

    def _counted_peers(self) -> Iterator[Peer]:
        return itertools.chain(self._peers.values(), self._negotiating.values())

    def _check_pending(self, session_id: str) -> None:
        """Offers answered but not yet connected hold sockets and memory: cap them per session."""
        limit = self.settings.max_pending_peers
        pending = sum(
            1
            for p in self._counted_peers()
            if p.session_id == session_id and p.role != "publisher" and not p.connected
        )
        if pending >= limit:
            raise TooManyRequests(
                f"{limit} media connections of this session are still connecting; retry shortly",
                code="too_many_pending",
                retry_after=float(self.settings.peer_connect_timeout_s),
            )

    def _connect_deadline(self, peer: Peer) -> None:
        """A viewer connection that has not connected in time (an offer never followed by ICE,
        e.g. no candidates and no end-of-candidates) is closed and counted."""
        peer.deadline = None
        if peer.connected or peer.closing:
            return
        self._connect_timeouts += 1
        log.info(
            "session=%s viewer=%s pc=%s not connected after %ss: closed",
            peer.session_id,
            peer.viewer_id,
            peer.id,
            self.settings.peer_connect_timeout_s,
        )
        self._spawn(self._close_peer(peer))

    def _new_pc(self) -> RTCPeerConnection:
        if self._closed:
            raise Conflict("media plane is shutting down", code="shutting_down")
        return RTCPeerConnection(ice.configuration(self.settings.ice_servers))

    async def _answer(self, pc: RTCPeerConnection) -> str:
        ice.restrict(pc, self.settings.ice_hosts, self.settings.udp_ports)
        dtls.answer_as_server(pc)  # interop with RSA-certificate peers (server/media/dtls.py)
        await pc.setLocalDescription(await pc.createAnswer())
        return self._local_sdp(pc)

    @staticmethod
    def _local_sdp(pc: RTCPeerConnection) -> str:
        return str(pc.localDescription.sdp)

    @staticmethod
    def _negotiated_codec(pc: RTCPeerConnection, transceiver: RTCRtpTransceiver) -> str:
        answer = aiortc_sdp.SessionDescription.parse(pc.localDescription.sdp)
        for media in answer.media:
            if media.rtp.muxId == transceiver.mid and media.rtp.codecs:
                return str(media.rtp.codecs[0].name).upper()
        return ""

    def _track(self, peer: Peer) -> None:
        self._peers[peer.id] = peer

        @peer.pc.on("connectionstatechange")
        async def on_state() -> None:
            if peer.pc.connectionState == "connected" and not peer.connected and not peer.closing:
                peer.connected = True
                if peer.deadline is not None:
                    peer.deadline.cancel()
                    peer.deadline = None
                if peer.role != "publisher":
                    self.presence.add(peer.session_id, peer.viewer_id or "", peer.id)
            elif peer.pc.connectionState in ("failed", "closed") and peer.role != "publisher":
                await self._close_peer(peer)
            elif peer.pc.connectionState == "failed":
                # The ingest reports the stream as failed; drop the connection record too.
                await self._close_peer(peer)

    async def _close_peer(self, peer: Peer) -> None:
        if peer.closing:
            return
        peer.closing = True
        if peer.deadline is not None:
            peer.deadline.cancel()
            peer.deadline = None
        self._peers.pop(peer.id, None)
        if peer.role != "publisher":
            self.presence.remove(peer.session_id, peer.id)
        if peer.link is not None:
            peer.link.close()
        for track in (peer.video, peer.audio):
            if track is not None:
                self._dropped_closed += track.dropped
                track.stop()
        try:
            await peer.pc.close()
        except Exception:
            log.exception("session=%s pc=%s close failed", peer.session_id, peer.id)

    def _media_of(self, session_id: str, kind: str) -> StreamMedia | None:
        for media in self._media.values():
            if media.session_id == session_id and media.kind == kind:
                return media
        return None

    async def _camera_media(self, session_id: str) -> StreamMedia | None:
        """The camera's media, created ahead of its publisher so a composite viewer who arrives
        first still hears the microphone once it starts."""
        media = self._media_of(session_id, "camera")
        if media is None:
            stream = next(
                (
                    s
                    for s in await self.sessions.streams_of(session_id)
                    if s["kind"] == "camera" and s["status"] in _ACTIVE
                ),
                None,
            )
            if stream is not None:
                media = self._stream_media(stream)
        return media

    def _stream_media(self, stream: Doc) -> StreamMedia:
        """The stream's media, created on first use. A camera that (re)starts is heard at once by
        the composite viewers of its session: their audio tracks follow the new broadcast."""
        media = self._media.get(stream["id"])
        if media is None:
            media = self._media[stream["id"]] = StreamMedia(stream, self._epoch)
            if media.kind == "camera":
                for peer in self._peers.values():
                    if (
                        peer.role == "composite"
                        and peer.session_id == media.session_id
                        and peer.audio is not None
                    ):
                        peer.audio.switch(media.audio)
        return media

    def _frames_of(self, session_id: str, kind: str) -> LatestFrame | None:
        media = self._media_of(session_id, kind)
        return media.frames if media is not None else None

    def _encoder(
        self,
        source_key: str,
        codec: str,
        frames: LatestFrame,
        profile: codecs.EncodeProfile,
        media: StreamMedia | None = None,
    ) -> SharedEncoder:
        key = (source_key, codec)
        encoder = self._encoders.get(key)
        if encoder is None or encoder.broadcast.closed:
            encoder = SharedEncoder(
                f"{source_key} codec={codec}",
                frames,
                codec,
                profile,
                self._executor,
                self._epoch,
                on_idle=functools.partial(self._encoder_idle, key),
                timeline=functools.partial(_pts_offset_of, media) if media is not None else None,
            )
            self._encoders[key] = encoder
            encoder.start()
        return encoder

    def _encoder_idle(self, key: tuple[str, str], encoder: SharedEncoder) -> None:
        if self._encoders.get(key) is encoder:
            del self._encoders[key]
            self._dropped_closed += encoder.broadcast.dropped
        self._spawn(encoder.close())
        # Encoder keys: "<source>[@<variant>][#<rung>]"; a scaled feed is "<source>@<variant>".
        feed_name = key[0].split("#")[0]
        feed = self._scaled.get(feed_name)
        if feed is not None and not any(
            src.split("#")[0] == feed_name for src, _ in self._encoders
        ):
            del self._scaled[feed_name]
            self._spawn(feed.close())
        base = key[0].split("#")[0].split("@")[0]
        if base.startswith("composite:"):
            layout = next((k for k in self._composites if f"composite:{k.name}" == base), None)
            if layout is not None and not any(
                src.split("#")[0].split("@")[0] == base for src, _ in self._encoders
            ):
                self._spawn(self._close_composite(layout))

    def _scaled_feed(self, media: StreamMedia, height: int) -> ScaledFeed:
        return self._scaled_of(f"stream:{media.stream_id}@{height}p", media.frames, height)

    def _scaled_of(self, name: str, frames: LatestFrame, height: int) -> ScaledFeed:
        feed = self._scaled.get(name)
        if feed is None or feed.output.closed:
            feed = self._scaled[name] = ScaledFeed(name, frames, height, self._executor)
            feed.start()
        return feed

    def _layout_key(self, prefs: Doc) -> LayoutKey:
        pip = prefs.get("pip") or {}
        kinds = tuple(k for k in ("screen", "camera") if k in prefs["enabled_streams"])
        return LayoutKey(
            prefs["session_id"],
            str(pip.get("corner", "bottom-right")),
            int(pip.get("size_pct", 25)),
            kinds,
        )

    def _composite_feed(self, key: LayoutKey) -> CompositeFeed:
        feed = self._composites.get(key)
        if feed is None:
            feed = self._composites[key] = CompositeFeed(key, self._frames_of, self._executor)
            feed.start()
            log.info("%s composite started", key.name)
        return feed

    def _composite_encoder(self, key: LayoutKey, codec: str) -> SharedEncoder:
        feed = self._composite_feed(key)
        profile = codecs.profile_for("composite", None, self.settings)
        return self._encoder(f"composite:{key.name}", codec, feed.output, profile)

    async def _close_composite(self, key: LayoutKey) -> None:
        feed = self._composites.pop(key, None)
        prefix = f"composite:{key.name}@"
        for rung_key in [k for k in self._rung_measured if k.startswith(prefix)]:
            del self._rung_measured[rung_key]
        if feed is not None:
            log.info("%s composite stopped", key.name)
            await feed.close()

    def _start_recorder(self, stream: Doc) -> None:
        stream_id = stream["id"]
        media = self._media.get(stream_id)
        if media is None or stream_id in self._recorders:
            return
        profile = codecs.profile_for(stream["kind"], stream.get("quality"), self.settings)
        ingest = self._ingests.get(stream_id)
        if ingest is not None and not any(t.kind == "video" for t in ingest.pc.getTransceivers()):
            # An audio-only camera publication (WHIP): the microphone alone is recorded.
            recorder = Recorder(
                stream, None, "", profile.fps, media, self.settings.recordings_dir, self.store
            )
        elif self.settings.passthrough and media.video_codec in codecs.SUPPORTED_VIDEO:
            # Mux the publisher's own packets: no decode, no encode for the recording.
            assert media.video_codec is not None
            recorder = Recorder(
                stream,
                media.video,
                media.video_codec,
                profile.fps,
                media,
                self.settings.recordings_dir,
                self.store,
            )
        else:
            codec = next(
                (
                    c.upper()
                    for c in self.settings.video_codecs
                    if c.upper() in codecs.SUPPORTED_VIDEO
                ),
                "H264",
            )
            encoder = self._encoder(f"stream:{stream_id}", codec, media.frames, profile)
            encoder.pin()
            recorder = Recorder(
                stream,
                encoder.broadcast,
                codec,
                profile.fps,
                media,
                self.settings.recordings_dir,
                self.store,
                on_close=encoder.unpin,
            )
        self._recorders[stream_id] = recorder
        recorder.start()

    async def _teardown_stream(self, stream_id: str) -> None:
        """Close everything of one stream; the other stream and composites carry on."""
        ingest = self._ingests.pop(stream_id, None)
        recorder = self._recorders.pop(stream_id, None)
        if recorder is not None:
            await recorder.close()
        for peer in [p for p in self._peers.values() if p.stream_id == stream_id]:
            await self._close_peer(peer)
        if ingest is not None:
            await ingest.close()
        for name in [n for n in self._scaled if n.startswith(f"stream:{stream_id}@")]:
            await self._scaled.pop(name).close()
        for key in [
            k for k in self._encoders if k[0].split("#")[0].split("@")[0] == f"stream:{stream_id}"
        ]:
            encoder = self._encoders.pop(key)
            self._dropped_closed += encoder.broadcast.dropped
            await encoder.close()
        for rung_key in [k for k in self._rung_measured if k.startswith(f"stream:{stream_id}@")]:
            del self._rung_measured[rung_key]
        media = self._media.pop(stream_id, None)
        if media is not None:
            media.close()
            log.info("session=%s stream=%s media closed", media.session_id, stream_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Server shutdown: every connection, recorder, encoder and compositor, then the threads."""
        self._closed = True
        if self._control is not None:
            self._control.cancel()
        for stream_id in list(self._media):
            await self._teardown_stream(stream_id)
        for peer in list(self._peers.values()):
            await self._close_peer(peer)
        for key in list(self._composites):
            await self._close_composite(key)
        for encoder in list(self._encoders.values()):
            await encoder.close()
        self._encoders.clear()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._executor.shutdown(wait=True)
        log.info("media plane closed")


async def close_refused(pc: RTCPeerConnection) -> None:
    """Close a refused offer's connection. aiortc's `close` assumes every transceiver got a
    transport; on a half-negotiated connection it raises midway (issue 10: after an offer without
    `a=mid`), leaving the other transports' sockets open. Then stop those directly."""
    try:
        await pc.close()
        return
    except Exception as exc:
        log.warning("closing a refused offer's connection raised %r; stopping its transports", exc)
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None:
            continue
        for stop in (dtls.stop, dtls.transport.stop):
            with contextlib.suppress(Exception):
                await stop()


async def _quietly(cleanup: Awaitable[Any], what: str) -> None:
    """Release a refused offer's connection; aiortc may raise again on a half-built one (issue
    10: an offer without `a=mid` failed in negotiation and then in `close`), and that must not
    turn the client's 400 into a 500."""
    try:
        await cleanup
    except Exception as exc:
        log.warning("%s raised %r (the offer is refused anyway)", what, exc)
