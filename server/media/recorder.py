"""Recording a live stream to Matroska by muxing encoded packets (no re-encode).

The recorder is one more reader of a packet broadcast — the publisher's own packets when the plane
forwards them, else the stream's shared encoder (kept running even with no viewers) — and of the
camera's Opus broadcast. Each recording is a document in the `recordings`
collection with its start, end and duration; the file lives under `settings.recordings_dir`.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError

from server.clock import now_iso
from server.ids import new_id
from server.media.codecs import TIME_BASE
from server.media.fanout import PacketBroadcast, ViewerTrack
from server.media.ingest import StreamMedia
from store.protocol import Doc, Store

log = logging.getLogger(__name__)

_CODEC_NAMES = {"H264": "h264", "VP8": "vp8"}
OPUS_RATE = 48000


def opus_head(channels: int = 2, pre_skip: int = 312) -> bytes:
    """The `OpusHead` block Matroska stores as the Opus track's CodecPrivate (RFC 7845 §5.1)."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, OPUS_RATE, 0, 0)


class Recorder:
    """Writes one stream's packets to `<recordings_dir>/<session>/<stream>-<rec>.mkv`."""

    def __init__(
        self,
        stream: Doc,
        video: PacketBroadcast | None,
        codec: str,
        fps: int,
        media: StreamMedia,
        directory: Path,
        store: Store,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.stream = stream
        self.id = new_id("rec")
        self.codec = codec
        self.fps = fps
        self._on_close = on_close
        self.media = media
        self.store = store
        self.relpath = f"{stream['session_id']}/{stream['id']}-{self.id}.mkv"
        self.path = directory / self.relpath
        self.video_packets = 0
        self.audio_packets = 0
        self._container: Any = None
        self._vstream: Any = None
        self._astream: Any = None
        self._first_pts: int | None = None
        self._last_pts = 0
        self._started = time.monotonic()
        self._audio_offset: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # None: an audio-only publication (a camera WHIP client with just a microphone).
        self._video = ViewerTrack("video", video) if video is not None else None
        self._last_audio_pts = 0
        self._audio = ViewerTrack("audio", media.audio) if media.kind == "camera" else None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._video is not None:
            self._tasks.append(loop.create_task(self._run_video(), name=f"record {self.id} video"))
        if self._audio is not None:
            self._tasks.append(loop.create_task(self._run_audio(), name=f"record {self.id} audio"))

    def _open(self, first: av.Packet) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w", format="matroska")
        if self._video is not None:
            self._vstream = self._container.add_stream(_CODEC_NAMES[self.codec], rate=self.fps)
            frame = self.media.frames.frame
            if frame is not None:
                self._vstream.width = frame.width - frame.width % 2
                self._vstream.height = frame.height - frame.height % 2
            self._vstream.time_base = fractions.Fraction(1, 1000)
        if self._audio is not None:
            self._astream = self._container.add_stream("libopus", rate=OPUS_RATE)
            self._astream.codec_context.extradata = opus_head()
            self._astream.time_base = fractions.Fraction(1, OPUS_RATE)
        self._first_pts = first.pts or 0
        self._started = time.monotonic()

    async def _insert_doc(self) -> None:
        await self.store.insert(
            "recordings",
            {
                "id": self.id,
                "session_id": self.stream["session_id"],
                "stream_id": self.stream["id"],
                "kind": self.stream["kind"],
                "status": "recording",
                "format": "matroska",
                "video_codec": self.codec if self._video is not None else None,
                "audio_codec": "opus" if self._audio is not None else None,
                "file": self.relpath,
                "started_at": now_iso(),
                "ended_at": None,
                "duration_s": None,
                "bytes": None,
            },
        )

    async def _run_video(self) -> None:
        assert self._video is not None
        try:
            while True:
                packet = await self._video.recv()
                if self._container is None:
                    if self.media.frames.frame is None:
                        # The header needs the picture size: wait for the first decoded frame.
                        await self.media.frames.next(0, timeout=2.0)
                    self._open(packet)
                    await self._insert_doc()
                assert self._first_pts is not None
                copy = av.Packet(bytes(packet))
                copy.pts = copy.dts = (packet.pts or 0) - self._first_pts
                copy.time_base = TIME_BASE
                copy.is_keyframe = packet.is_keyframe
                copy.stream = self._vstream
                self._last_pts = int(copy.pts)  # before mux(), which rebases it in place
                self._container.mux(copy)
                self.video_packets += 1
        except MediaStreamError:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "session=%s stream=%s recording=%s video failed",
                self.stream["session_id"],
                self.stream["id"],
                self.id,
            )

    async def _run_audio(self) -> None:
        assert self._audio is not None
        try:
            while True:
                packet = await self._audio.recv()
                if self._container is None and self._video is None:
                    self._open(packet)  # audio-only: the first Opus packet opens the file
                    await self._insert_doc()
                if self._container is None or self._astream is None:
                    continue  # audio starts with the first video key frame
                if self._audio_offset is None:
                    elapsed = int((time.monotonic() - self._started) * OPUS_RATE)
                    self._audio_offset = elapsed - int(packet.pts or 0)
                copy = av.Packet(bytes(packet))
                copy.pts = copy.dts = int(packet.pts or 0) + self._audio_offset
                if copy.pts < 0:
                    continue
                copy.time_base = fractions.Fraction(1, OPUS_RATE)
                copy.stream = self._astream
                self._last_audio_pts = int(copy.pts)
                self._container.mux(copy)
                self.audio_packets += 1
        except MediaStreamError:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "session=%s stream=%s recording=%s audio failed",
                self.stream["session_id"],
                self.stream["id"],
                self.id,
            )

    async def close(self) -> None:
        """Finish the file and the document; the encoder may stop if nobody else watches."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._video is not None:
            self._video.stop()
        if self._audio is not None:
            self._audio.stop()
        if self._on_close is not None:
            self._on_close()
        if self._container is None:
            return  # nothing arrived: no file, no document
        try:
            self._container.close()
        except Exception:
            log.exception("recording=%s close failed", self.id)
        if self._video is not None:
            duration = self._last_pts / TIME_BASE.denominator + 1 / self.fps
        else:
            duration = self._last_audio_pts / OPUS_RATE + 0.02  # one 20 ms Opus frame
        size = self.path.stat().st_size if self.path.exists() else 0
        await self.store.update(
            "recordings",
            self.id,
            {
                "status": "complete",
                "ended_at": now_iso(),
                "duration_s": round(duration, 3),
                "bytes": size,
            },
        )
        log.info(
            "session=%s stream=%s recording=%s complete %.2fs %d bytes",
            self.stream["session_id"],
            self.stream["id"],
            self.id,
            duration,
            size,
        )
