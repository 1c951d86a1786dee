"""Adaptive delivery per viewer: which rung of its source's ladder each connection gets, and why.

Every adaptive viewer has a `ViewerLink` (its bandwidth estimate) and a `RungSelector`; twice a
second the control loop re-judges each one and switches its track to another rung's shared encoder
when the link calls for it. The viewer's quality API (pick a rung or "auto") and the debug view read
the same state. One module, so the estimator/ladder work lands in one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from aiortc import RTCRtpSender

from server.auth import Claims
from server.domain import QUALITY_AUTO
from server.errors import Invalid
from server.media import codecs
from server.media.estimator import LOSS_LOW
from server.media.fanout import PacketBroadcast
from server.media.feeds import Feeds
from server.media.ingest import StreamMedia
from server.media.keys import EncoderKey, FeedKey, Rendition, SourceKey
from server.media.ladder import HEADROOM, RungSelector
from server.media.link import ViewerLink
from server.media.peers import Peer, Peers
from server.media.planner import Output
from server.settings import Settings

log = logging.getLogger(__name__)

# How often each adaptive viewer's rung is reconsidered (receiver reports come about every second).
CONTROL_INTERVAL_S = 0.5
# The first estimate before any feedback: the top rung with GCC's usual 1.5x room to grow.
INITIAL_HEADROOM = 1.5
# A rung switch still waiting for its key frame after this long may be reconsidered.
SWITCH_HOLD_S = 3.0
# A viewer on the top rung is paced when its estimate is under this multiple of the rung's rate.
PACE_BELOW = 1.4
# A rung's measured bitrate counts once it has run this long (its first key frame dominates before).
RATE_SETTLE_S = 6.0
# A rung's measured rate counts up to this multiple of its nominal one (VP8 and x264 meet their
# targets within a few % on the lab's scrolling text; more is key frames asked for by loss).
MEASURED_CAP = 1.2
# A link estimated under this multiple of the rate it gets may be short (see `_short`).
SHORT_BELOW = 1.25
# How long a new viewer of the original keeps the stream decoded (a congested link shows itself
# within 1-3 s; while it does, the viewer keeps it warm): decoding costs ~3 ms a 720p frame.
WARM_S = 6.0
# Reasons that name this viewer's own link whatever its estimate says: a lost packet that will
# not be resent, frames its link could not carry in time, and the key frame it still waits for
# after one of those (a new viewer's estimate is not settled when its first loss comes).
LINK_LOSS = frozenset({"resync", "late", "waiting"})


class Adaptation:
    """Rung sources, the control loop, and the per-viewer quality API."""

    def __init__(self, settings: Settings, peers: Peers, feeds: Feeds) -> None:
        self.settings = settings
        self.peers = peers
        self.feeds = feeds
        self._control: asyncio.Task[None] | None = None
        self._closed = False

    # -- sources -----------------------------------------------------------------------------

    def _source_of(self, peer: Peer) -> SourceKey:
        if peer.role == "composite":
            assert peer.layout is not None
            return SourceKey.of_layout(peer.layout)
        assert peer.stream_id is not None
        return SourceKey.of_stream(peer.stream_id)

    def _rendition(self, peer: Peer, index: int) -> Rendition:
        rung = peer.ladder[index]
        return Rendition(self._source_of(peer), rung.height, rung.name)

    def rung_source(self, peer: Peer, index: int) -> PacketBroadcast:
        """The shared output of rung `index` of this viewer's source, started if needed."""
        rung = peer.ladder[index]
        codec = peer.codec or "VP8"
        feeds = self.feeds
        timeline: StreamMedia | None
        assert peer.profile is not None
        profile = peer.profile
        grant: Output | None = None
        if peer.role == "composite":
            assert peer.wanted is not None
            # Under the output budget: this layout's output, or the nearest running one.
            planned = feeds.planner.plan(Output(peer.wanted, codec, rung.name))
            grant = planned.output
            peer.layout, peer.substitute = grant.layout, planned.substitute
            if rung.source:
                encoder = feeds.composite_encoder(peer.layout, codec, profile)
                feeds.planner.track(EncoderKey(self._rendition_of_source(peer), codec), grant)
                return encoder.broadcast
            frames = feeds.composite(peer.layout, profile).output
            content = "composite"
            timeline = None
        else:
            assert peer.stream_id is not None
            media = feeds.media[peer.stream_id]
            if rung.source:
                if peer.passthrough:
                    return media.video
                source = Rendition(SourceKey.of_stream(peer.stream_id))
                return feeds.encoder(source, codec, media.frames, profile, media).broadcast
            frames = media.frames
            content = profile.content
            timeline = media
        rendition = self._rendition(peer, index)
        if rung.height is not None:
            frames = feeds.scaled(FeedKey(rendition.source, rung.height), frames).output
        rung_profile = codecs.rung_profile(profile, rung.profile(content))
        encoder = feeds.encoder(rendition, codec, frames, rung_profile, timeline)
        if grant is not None:
            feeds.planner.track(EncoderKey(rendition, codec), grant)
        return encoder.broadcast

    def _rendition_of_source(self, peer: Peer) -> Rendition:
        return Rendition(self._source_of(peer))

    async def upgrade_substitutes(self, session_id: str) -> None:
        """A composite output stopped, so the budget has room: viewers given a substitute
        layout get their own where it now fits (same connection, the same rung)."""
        for peer in list(self.peers):
            if (
                peer.session_id != session_id
                or not peer.substitute
                or peer.closing
                or peer.video is None
                or peer.wanted is None
                or peer.codec is None
            ):
                continue
            wanted = Output(peer.wanted, peer.codec, peer.ladder[peer.rung].name)
            planned = self.feeds.planner.plan(wanted)
            if not planned.substitute and not planned.over_budget:
                peer.video.switch(self.rung_source(peer, peer.rung))
                log.info(
                    "session=%s viewer=%s pc=%s layout %s (budget freed)",
                    session_id,
                    peer.viewer_id,
                    peer.id,
                    peer.wanted.name,
                )

    def start_link(self, peer: Peer, sender: RTCRtpSender) -> None:
        """Give an adaptive viewer its link and selector, and make sure the loop runs."""
        if not peer.ladder or not self.settings.adaptive:
            return
        assert peer.video is not None
        top = peer.ladder[0].bitrate_bps
        peer.link = ViewerLink(sender, int(top * INITIAL_HEADROOM))
        peer.link.install()
        peer.link.on_unrecoverable = peer.video.resync
        peer.selector = RungSelector(len(peer.ladder), time.monotonic())
        peer.video.recover = functools.partial(self._recover_on_rung, peer)
        # A GOP replay after this viewer's PLI must fit its link (`PacketBroadcast.cached_gop`).
        peer.video.link_bps = peer.link.target_bps
        media = self.feeds.media.get(peer.stream_id or "")
        if peer.passthrough and media is not None:
            # Decode while this viewer's link is unproven: should it need an encoded rung, the
            # decoder runs already (it starts on this viewer's join key frame).
            media.frames.keep_warm(WARM_S)
        if self._control is None or self._control.done():
            self._control = asyncio.get_running_loop().create_task(
                self._control_loop(), name="media-adapt"
            )

    @staticmethod
    def _short(link: ViewerLink, rate_bps: float, below: float = 0.0) -> bool:
        """Evidence that this link may not carry `rate_bps`: congestion, loss over GCC's 2 %,
        or an estimate under `below` (default `SHORT_BELOW`) times the rate (a clean link's
        estimate runs at 1.5x what it carries)."""
        est = link.estimator
        return (
            est.congested()
            or est.feedback.loss > LOSS_LOW
            or link.target_bps() < (below or SHORT_BELOW) * rate_bps
        )

    def _recover_on_rung(self, peer: Peer, reason: str) -> bool:
        """A viewer of the publisher's own packets, shared with others, lost its picture
        (`reason`: its PLI, a packet that will not be resent, frames too late for its link --
        only when its link is paced: otherwise nothing but this server held them).
        A key frame from the publisher would reach every viewer; when its link is the problem
        (`LINK_LOSS`, or `_short` for a PLI) and the stream is being
        decoded anyway, move this one to the encoded rung its link carries instead: that
        encoder's key frame reaches only its own viewers. (It climbs back by the selector.)"""
        track, link, selector = peer.video, peer.link, peer.selector
        media = self.feeds.media.get(peer.stream_id or "")
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
        target = link.target_bps()
        # Frames too late for a link nobody paces were held up by this server, not the link
        # (measured: a burst of 40 joins on a busy machine made viewers "late" and moved them to
        # rungs, whose decoder and encoder then cost more CPU still).
        link_fault = reason in LINK_LOSS and (reason != "late" or link.paced)
        if not link_fault and not self._short(link, rates[0]):
            # Nothing says its link is short: the picture was lost to something else (this
            # server falling behind, a lone loss). An encoder would not help; ask (rate-limited).
            return False
        usable = target * HEADROOM
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
        track.switch(self.rung_source(peer, index))
        return True

    # -- the control loop --------------------------------------------------------------------

    async def _control_loop(self) -> None:
        """Every viewer's rung follows its link, twice a second."""
        while not self._closed:
            await asyncio.sleep(CONTROL_INTERVAL_S)
            adaptive = [p for p in self.peers if p.link is not None and not p.closing]
            if not adaptive:
                return
            for peer in adaptive:
                try:
                    self.adapt(peer)
                except Exception:
                    log.exception("session=%s pc=%s adaptation failed", peer.session_id, peer.id)

    def _rung_rates(self, peer: Peer) -> list[float]:
        """Each rung's bitrate: as last measured (encoders overshoot their target on hard content,
        e.g. scrolling text; the original is whatever the publisher sends), else its nominal one.
        Measurements outlive the rung's encoder, so a rung that proved too big stays so."""
        rates: list[float] = []
        current = peer.video.source if peer.video is not None else None
        measured_of = self.feeds.measured
        media = self.feeds.media.get(peer.stream_id or "")
        for i, rung in enumerate(peer.ladder):
            rate = float(rung.bitrate_bps)
            if i == 0 and peer.passthrough and media is not None:
                if peer.rung == 0:
                    # Whether to stay: what the publisher sends now.
                    measured = media.video.rate_bps()
                    rate = measured if measured > 0 else rate
                else:
                    # Whether to climb onto it: its recent peak, and never less than the
                    # stream's configured bitrate. The publisher's rate is not ours to set, and
                    # it dips and comes back (measured: a CPU-starved 1.5 Mb/s camera read
                    # 0.2 Mb/s for 10 s; a 1 Mbit viewer lifted onto it in that dip was flooded
                    # at 1.5 Mb/s, 60 % loss, when it recovered).
                    rate = max(rate, media.video.peak_bps())
            elif not rung.source:
                key = self._rendition(peer, i)
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
                        known = measured_of.get(key, measured)
                        measured_of[key] = 0.8 * known + 0.2 * measured
                rate = max(rate, min(measured_of.get(key, 0.0), MEASURED_CAP * rate))
            rates.append(rate)
        return rates

    def adapt(self, peer: Peer) -> None:
        """Re-judge one viewer: pacing, probing, and the rung its link (or its choice) calls for."""
        link, selector, track = peer.link, peer.selector, peer.video
        assert link is not None and selector is not None
        if track is None or track.readyState != "live":
            return
        link.tick()
        now = time.monotonic()
        # Pace only where the link could be the bottleneck (the hook has a per-packet cost): a
        # viewer below the top rung, or one whose link may be short. A clean link's estimate runs
        # at 1.5x what it carries (the estimator's growth cap), so it is not paced.
        rate_now = self._rung_rates(peer)[peer.rung]
        link.set_paced(peer.rung > 0 or self._short(link, rate_now, PACE_BELOW))
        media = self.feeds.media.get(peer.stream_id or "")
        if (
            peer.passthrough
            and peer.rung == 0
            and media is not None
            and (self._short(link, rate_now) or now - peer.switch_at < WARM_S)
        ):
            # Short, or just back on the original from a rung (a climb the link may not hold):
            # should it drop again, its rung's encoder finds the decoder running.
            media.frames.keep_warm(WARM_S)
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
            track.switch(self.rung_source(peer, wanted), seamless=True)

    # -- the viewer's quality API ------------------------------------------------------------

    async def set_quality(self, claims: Claims, pc_id: object, choice: object) -> dict[str, Any]:
        """A viewer picks a rung by name, or "auto" (follow its link)."""
        peer = self.peers.owned(claims, pc_id, viewers_only=True)
        names = [r.name for r in peer.ladder]
        if not isinstance(choice, str) or (choice != QUALITY_AUTO and choice not in names):
            raise Invalid(f"quality must be 'auto' or one of {names}", code="invalid_quality")
        peer.choice = choice
        if peer.link is not None:
            self.adapt(peer)
        return self._viewer_state(peer)

    def quality_of(self, claims: Claims, pc_id: object) -> dict[str, Any]:
        """What this viewer connection gets and why (the page's quality menu)."""
        return self._viewer_state(self.peers.owned(claims, pc_id, viewers_only=True))

    def qualities_of(self, claims: Claims, session_id: str) -> list[dict[str, Any]]:
        """The same for every open connection of this viewer (a page polls this: a connection
        that just closed is simply absent, not an error)."""
        return [
            self._viewer_state(p)
            for p in self.peers
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
            # A composite's layout: as chosen, as delivered, and whether the output budget gave
            # it the nearest running one instead (the watch page says so).
            "layout": None
            if peer.wanted is None or peer.layout is None
            else {
                "requested": {"corner": peer.wanted.corner, "size_pct": peer.wanted.size_pct},
                "delivered": {"corner": peer.layout.corner, "size_pct": peer.layout.size_pct},
                "substitute": peer.substitute,
            },
        }

    # -- metrics and debugging ---------------------------------------------------------------

    def viewer_links(self) -> list[dict[str, Any]]:
        """Every adaptive viewer connection's target bitrate, rung and resend counts (metrics)."""
        out = []
        for peer in self.peers:
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

    def viewers_debug(self, session_id: str) -> list[dict[str, Any]]:
        """Every viewer connection of a session: estimate, rung, pacing, resends, drops."""
        out: list[dict[str, Any]] = []
        for peer in self.peers:
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
                media = self.feeds.media.get(peer.stream_id or "")
                if media is not None and media.ingest is not None:
                    entry["keyframes"]["publisher_plis"] = dict(media.ingest.plis_sent)
                entry["frames_delivered"] = peer.video.delivered
                entry["frames_dropped"] = peer.video.dropped
                entry["frames_dropped_late"] = peer.video.dropped_late
                entry["switches"] = peer.video.switches
                entry["gop_replays"] = peer.video.replays
                entry["keyframes_delivered"] = peer.video.keyframes_delivered
            out.append(entry)
        return out

    def keyframe_requests(self) -> dict[tuple[str, str, str], int]:
        """(target, reason, outcome) -> count of key-frame requests (metrics): target "publisher"
        (PLIs sent to publishers) or "encoder" (forced key frames of shared encoders)."""
        out: dict[tuple[str, str, str], int] = {}

        def add(key: tuple[str, str, str], n: int) -> None:
            out[key] = out.get(key, 0) + n

        feeds = self.feeds
        for ingest in feeds.ingests.values():
            for reason, n in ingest.plis_sent.items():
                add(("publisher", reason, "sent"), n)
        sources = [("publisher", m.video) for m in feeds.media.values()]
        sources += [("encoder", e.broadcast) for e in feeds.encoders.values()]
        for target, broadcast in sources:
            for reason, n in broadcast.key_requests.items():
                add((target, reason, "forwarded"), n)
            for reason, n in broadcast.key_requests_suppressed_by.items():
                add((target, reason, "suppressed"), n)
            for reason, n in broadcast.key_requests_cached.items():
                add((target, reason, "gop_cache"), n)
        return out

    def close(self) -> None:
        self._closed = True
        if self._control is not None:
            self._control.cancel()
