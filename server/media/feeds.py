"""`Feeds`: the media a server holds apart from any one connection, and the registries that share it.

A stream's frames and packets (`StreamMedia`), its ingest, the shared encoders, scaled feeds,
composites and recorders are each made once and read by every viewer that needs them; this module
owns their lifetimes so that the plane's connection code never builds or parses a registry key. Each
registry answers one question with one lookup: `media_for` (get or create a stream's media),
`media_of` (a session's running stream of a kind), `encoder`, `scaled`, `composite`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av

from server.domain import StreamQuality
from server.media import codecs
from server.media.composite import CompositeFeed, LayoutKey
from server.media.encoder import SharedEncoder
from server.media.frames import LatestFrame
from server.media.ingest import Ingest, StreamMedia
from server.media.keys import EncoderKey, FeedKey, Rendition, SourceKey, layout_of
from server.media.planner import OutputPlanner
from server.media.recorder import Recorder
from server.media.scaling import ScaledFeed
from server.settings import Settings
from store.protocol import Doc, Store

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class Feeds:
    """Every stream's media and what is derived from it: encoders, scaled feeds, composites,
    recorders. Derived feeds close themselves when their last reader goes (`on_idle`)."""

    def __init__(self, settings: Settings, store: Store, spawn: Spawn) -> None:
        self.settings = settings
        self.store = store
        self._spawn = spawn
        # The media clock origin every encoder and forwarded packet is stamped against.
        self.epoch = time.monotonic()
        # Encoders and compositors each take ~1–10 ms per frame; a few threads keep the loop free.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="media")
        self.media: dict[str, StreamMedia] = {}
        self.ingests: dict[str, Ingest] = {}
        self.encoders: dict[EncoderKey, SharedEncoder] = {}
        self.scaled_feeds: dict[FeedKey, ScaledFeed] = {}
        self.composites: dict[LayoutKey, CompositeFeed] = {}
        self.recorders: dict[str, Recorder] = {}
        # Last measured bitrate of each ladder rendition: it outlives the rung's encoder (a rung
        # that proved too big stays so) and goes with its source.
        self.measured: dict[Rendition, float] = {}
        # Frames dropped by broadcasts and tracks already closed (the live ones count their own).
        self.dropped_closed = 0
        # Told of each new stream media (a camera that (re)starts is heard by composite viewers).
        self.on_media: Callable[[StreamMedia], None] = lambda media: None
        # Which composite encoders run, under the output budget (server/media/planner.py).
        self.planner = OutputPlanner(settings.composite_budget, settings.session_composite_budget)
        # Told when a session's composite output stopped (the budget has room again).
        self.on_composite_freed: Callable[[str], None] = lambda session_id: None

    # -- stream media ------------------------------------------------------------------------

    def media_for(self, stream: Doc) -> StreamMedia:
        """The stream's media, created on first use (a viewer may arrive before its publisher)."""
        media = self.media.get(stream["id"])
        if media is None:
            media = self.media[stream["id"]] = StreamMedia(stream, self.epoch)
            self.on_media(media)
        return media

    def media_of(self, session_id: str, kind: str) -> StreamMedia | None:
        """The session's stream media of one kind, if any exists here."""
        for media in self.media.values():
            if media.session_id == session_id and media.kind == kind:
                return media
        return None

    def _frames_of(self, session_id: str, kind: str) -> LatestFrame | None:
        media = self.media_of(session_id, kind)
        return media.frames if media is not None else None

    def attach_ingest(self, ingest: Ingest) -> Ingest | None:
        """Make `ingest` the stream's current publisher connection; answers the one it replaces."""
        stream_id = ingest.media.stream_id
        previous = self.ingests.get(stream_id)
        self.ingests[stream_id] = ingest
        ingest.media.ingest = ingest
        return previous

    def is_current(self, ingest: Ingest) -> bool:
        return self.ingests.get(ingest.media.stream_id) is ingest

    # -- encoders and scaled feeds -----------------------------------------------------------

    def encoder(
        self,
        rendition: Rendition,
        codec: str,
        frames: LatestFrame,
        profile: codecs.EncodeProfile,
        timeline: StreamMedia | None = None,
    ) -> SharedEncoder:
        """The shared encoder of `rendition` in `codec`, started on first use. `timeline`: the
        stream whose publisher clock the output follows (so passthrough and encoded agree)."""
        key = EncoderKey(rendition, codec)
        encoder = self.encoders.get(key)
        if encoder is None or encoder.broadcast.closed:
            encoder = SharedEncoder(
                str(key),
                frames,
                codec,
                profile,
                self.executor,
                self.epoch,
                on_idle=functools.partial(self._encoder_idle, key),
                timeline=functools.partial(_pts_offset_of, timeline) if timeline else None,
            )
            self.encoders[key] = encoder
            encoder.start()
        return encoder

    def _encoder_idle(self, key: EncoderKey, encoder: SharedEncoder) -> None:
        """The encoder's last reader left: close it, then what only it was reading."""
        if self.encoders.get(key) is encoder:
            del self.encoders[key]
            self.dropped_closed += encoder.broadcast.dropped
            freed = self.planner.running.get(key)
            if freed is not None:
                self.planner.release(key)
                self.on_composite_freed(freed.layout.session_id)
        self._spawn(encoder.close())
        feed = key.rendition.feed
        scaled = self.scaled_feeds.get(feed)
        if scaled is not None and not any(k.rendition.feed == feed for k in self.encoders):
            del self.scaled_feeds[feed]
            self._spawn(scaled.close())
        source = key.rendition.source
        layout = source.layout
        if (
            layout is not None
            and layout in self.composites
            and not any(k.rendition.source == source for k in self.encoders)
        ):
            self._spawn(self.close_composite(layout))

    def scaled(self, key: FeedKey, frames: LatestFrame) -> ScaledFeed:
        """`frames` scaled to `key.height`, shared by every encoder of that size."""
        assert key.height is not None
        feed = self.scaled_feeds.get(key)
        if feed is None or feed.output.closed:
            feed = self.scaled_feeds[key] = ScaledFeed(str(key), frames, key.height, self.executor)
            feed.start()
        return feed

    # -- composites --------------------------------------------------------------------------

    def layout(self, prefs: Mapping[str, Any]) -> LayoutKey:
        """The concrete layout a viewer's preferences ask for: size snapped to the planner's
        steps, `auto` resolved to the corner the session's screen suggests."""
        wanted = layout_of(prefs)
        session_id = wanted.session_id

        def screen() -> av.VideoFrame | None:
            frames = self._frames_of(session_id, "screen")
            return frames.frame if frames is not None else None

        return self.planner.layout(session_id, wanted.corner, wanted.size_pct, wanted.kinds, screen)

    def composite(self, key: LayoutKey, profile: codecs.EncodeProfile) -> CompositeFeed:
        """The compositor of one layout, started on first use. A text composite is led by its
        screen at the screen's rate (server/media/composite.py)."""
        feed = self.composites.get(key)
        if feed is None:
            led = profile.fps if profile.tuning == "text" and "screen" in key.kinds else None
            feed = self.composites[key] = CompositeFeed(
                key, self._frames_of, self.executor, screen_fps=led
            )
            feed.start()
            log.info("%s composite started", key.name)
        return feed

    def composite_encoder(
        self, key: LayoutKey, codec: str, profile: codecs.EncodeProfile
    ) -> SharedEncoder:
        """The layout's full-quality encoder (the composite profile, no ladder rung)."""
        feed = self.composite(key, profile)
        return self.encoder(Rendition(SourceKey.of_layout(key)), codec, feed.output, profile)

    async def close_composite(self, key: LayoutKey) -> None:
        feed = self.composites.pop(key, None)
        self._forget_measured(SourceKey.of_layout(key))
        if feed is not None:
            log.info("%s composite stopped", key.name)
            await feed.close()

    def _forget_measured(self, source: SourceKey) -> None:
        for rendition in [r for r in self.measured if r.source == source]:
            del self.measured[rendition]

    # -- recording ---------------------------------------------------------------------------

    def start_recorder(self, stream: Doc) -> None:
        """Record a stream that went live: its own packets when possible, else one encode."""
        stream_id = stream["id"]
        media = self.media.get(stream_id)
        if media is None or stream_id in self.recorders:
            return
        profile = codecs.profile_for(
            StreamQuality.of(stream["kind"], stream.get("quality")), self.settings
        )
        directory = self.settings.recordings_dir
        ingest = self.ingests.get(stream_id)
        if ingest is not None and not any(t.kind == "video" for t in ingest.pc.getTransceivers()):
            # An audio-only camera publication (WHIP): the microphone alone is recorded.
            recorder = Recorder(stream, None, "", profile.fps, media, directory, self.store)
        elif self.settings.passthrough and media.video_codec in codecs.SUPPORTED_VIDEO:
            # Mux the publisher's own packets: no decode, no encode for the recording.
            assert media.video_codec is not None
            recorder = Recorder(
                stream, media.video, media.video_codec, profile.fps, media, directory, self.store
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
            source = Rendition(SourceKey.of_stream(stream_id))
            encoder = self.encoder(source, codec, media.frames, profile)
            encoder.pin()
            recorder = Recorder(
                stream,
                encoder.broadcast,
                codec,
                profile.fps,
                media,
                directory,
                self.store,
                on_close=encoder.unpin,
            )
        self.recorders[stream_id] = recorder
        recorder.start()

    async def close_recorder(self, stream_id: str) -> None:
        recorder = self.recorders.pop(stream_id, None)
        if recorder is not None:
            await recorder.close()

    # -- teardown ----------------------------------------------------------------------------

    def detach_ingest(self, stream_id: str) -> Ingest | None:
        """Forget the stream's ingest first, so its closing reports no longer count as current."""
        return self.ingests.pop(stream_id, None)

    async def close_stream(self, stream_id: str) -> None:
        """Close a stream's scaled feeds, encoders and media (its ingest and viewers are closed
        by the caller first); the session's other stream and composites carry on."""
        source = SourceKey.of_stream(stream_id)
        for feed_key in [k for k in self.scaled_feeds if k.source == source]:
            await self.scaled_feeds.pop(feed_key).close()
        for key in [k for k in self.encoders if k.rendition.source == source]:
            encoder = self.encoders.pop(key)
            self.dropped_closed += encoder.broadcast.dropped
            await encoder.close()
        self._forget_measured(source)
        media = self.media.pop(stream_id, None)
        if media is not None:
            media.close()
            log.info("session=%s stream=%s media closed", media.session_id, stream_id)

    async def close(self) -> None:
        """After every stream is torn down: the composites, any encoder left, then the threads."""
        for key in list(self.composites):
            await self.close_composite(key)
        for encoder in list(self.encoders.values()):
            await encoder.close()
        self.encoders.clear()

    def shutdown_threads(self) -> None:
        self.executor.shutdown(wait=True)

    # -- counters ----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        encoders = self.encoders
        return {
            "encoders_running": sum(1 for e in encoders.values() if e.running),
            "composite_encoders": sum(
                1
                for k, e in encoders.items()
                if k.rendition.source.layout is not None and e.running
            ),
            "decoding_streams": sum(1 for i in self.ingests.values() if i.decoding),
            "composite_layouts": len(self.composites),
            "composite_budget": self.planner.instance_budget,
            "composite_substitutions": self.planner.substitutions,
            "composite_over_budget": self.planner.over_budget_starts,
            "scaled_variants": len(self.scaled_feeds),
            "recorders": len(self.recorders),
            "frames_encoded": sum(e.frames_encoded for e in encoders.values()),
            "rungs_running": sum(
                1 for k, e in encoders.items() if k.rendition.rung is not None and e.running
            ),
            "frames_skipped": sum(e.frames_skipped for e in encoders.values()),
            "passthrough_viewers": sum(m.video.readers for m in self.media.values()),
            "frames_dropped": self.dropped_closed
            + sum(e.broadcast.dropped + e.frames_dropped for e in encoders.values())
            + sum(m.video.dropped + m.audio.dropped for m in self.media.values()),
            "keyframe_requests_suppressed": sum(
                e.broadcast.key_requests_suppressed for e in encoders.values()
            )
            + sum(m.video.key_requests_suppressed for m in self.media.values()),
            "frames_decoded": sum(i.frames_in for i in self.ingests.values()),
        }


def _pts_offset_of(media: StreamMedia) -> int | None:
    return media.pts_offset
