"""A broadcaster's stream arriving over its own receive-only `RTCPeerConnection`.

Video is decoded once (aiortc's receiver thread) into the stream's `LatestFrame`, which every
encoder and compositor of that stream reads. The camera connection's microphone (Opus) is *not*
decoded: a tap on the receiver hands each reassembled Opus frame, as an `av.Packet`, to the stream's
audio broadcast, and viewers' senders only packetize it.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError, MediaStreamTrack

from server.media import aiortc_hooks
from server.media.fanout import PacketBroadcast
from server.media.frames import LatestFrame
from store.protocol import Doc

# How long decoding stays on after the last reader of decoded frames left. Restarting it needs a key
# frame from the publisher, which every viewer of the forwarded stream then receives too; a
# viewer's quality rung coming and going (adaptive delivery) must not cost the others that.
DECODE_LINGER_S = 15.0

log = logging.getLogger(__name__)


class StreamMedia:
    """What outlives one publisher connection of a stream: its frames and its audio packets."""

    def __init__(self, stream: Doc, epoch: float = 0.0) -> None:
        self.stream = stream
        # The plane's media clock origin: forwarded packets are stamped on the same timeline as
        # the shared encoders', so a viewer moved between them sees time move forward.
        self.epoch = epoch
        self.stream_id: str = stream["id"]
        self.session_id: str = stream["session_id"]
        self.kind: str = stream["kind"]
        self.frames = LatestFrame(f"stream={self.stream_id}")
        self.audio = PacketBroadcast(f"stream={self.stream_id} audio", keyframes=False)
        # The publisher's own encoded video, for viewers of the same codec (no decode/encode).
        self.video = PacketBroadcast(
            f"stream={self.stream_id} passthrough", on_keyframe_request=self._ask_publisher
        )
        self.video_codec: str | None = None
        self.ingest: Ingest | None = None
        # Publisher RTP timestamp -> plane media clock (90 kHz ticks), once the first packet came.
        self.pts_offset: int | None = None

    def _ask_publisher(self) -> None:
        if self.ingest is not None:
            self.ingest.request_keyframe("viewers")

    def close(self) -> None:
        self.frames.close()
        self.audio.close()
        self.video.close()


class _EncodedTap(queue.Queue[Any]):
    """Stands in for a receiver's decoder queue: sees every reassembled encoded frame first.

    `RTCRtpReceiver` puts `(codec, JitterFrame)` here from the event loop and its decoder thread
    reads it; `decode=False` keeps the frames away from the decoder entirely.
    """

    def __init__(self, on_encoded: Callable[[Any, Any], None], decode: bool) -> None:
        super().__init__()
        self._on_encoded = on_encoded
        self.decode = decode

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            self._on_encoded(*item)  # may switch decoding on or off for this very frame
        if item is None or self.decode:
            super().put(item, block, timeout)


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a reassembled encoded frame can be decoded on its own (where a viewer may start)."""
    if not data:
        return False
    if codec == "VP8":
        return not data[0] & 0x01  # RFC 6386 §9.1: P bit 0 = key frame
    if codec == "H264":
        i = data.find(b"\x00\x00\x01")
        while i != -1 and i + 3 < len(data):
            if data[i + 3] & 0x1F in (5, 7):  # IDR slice or SPS (always sent before an IDR)
                return True
            i = data.find(b"\x00\x00\x01", i + 3)
    return False


def media_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The SSRC carrying the publisher's video, newest first, never its RTX stream.

    aiortc lists every SSRC it received from, retransmission streams included, and browsers send
    bandwidth-probe padding on RTX first: a PLI addressed to the RTX SSRC is silently ignored.
    """
    rtx = aiortc_hooks.rtx_ssrcs(receiver)
    sources = sorted(receiver.getSynchronizationSources(), key=lambda s: s.timestamp, reverse=True)
    for source in sources:
        if source.source not in rtx:
            return int(source.source)
    return int(rtx[sources[0].source]) if sources else None


def tap_receiver(
    receiver: RTCRtpReceiver, on_encoded: Callable[[Any, Any], None], decode: bool
) -> _EncodedTap:
    """Install the tap; must run before `receiver.receive()` starts the decoder thread, i.e. in the
    connection's `track` event (aiortc emits it inside `setRemoteDescription`)."""
    tap = _EncodedTap(on_encoded, decode)
    aiortc_hooks.replace_decoder_queue(receiver, tap)
    return tap


class Ingest:
    """One publisher connection feeding a `StreamMedia`; reports its state via `on_state`."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        media: StreamMedia,
        on_state: Callable[[Ingest, str], Awaitable[None]],
    ) -> None:
        self.pc = pc
        self.media = media
        self.frames_in = 0
        self.audio_in = 0
        # Encoded media bytes received (a relay link's intake, server/media/relay.py).
        self.bytes_in = 0
        self._on_state = on_state
        self._video_taken = False
        self._audio_taken = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._state = "pending"
        self._video_receiver: RTCRtpReceiver | None = None
        self._video_tap: _EncodedTap | None = None
        self.decoding = False
        self._last_pli = 0.0
        self.plis_sent: dict[str, int] = {}
        self._pts_offset: int | None = None
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(
            (t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None
        )
        if receiver is None:
            return
        if track.kind == "video" and not self._video_taken:
            self._video_taken = True
            self._video_receiver = receiver
            self._video_tap = tap_receiver(receiver, self._on_video, decode=False)
            self._spawn(self._pull_video(track))
        elif track.kind == "audio" and self.media.kind == "camera" and not self._audio_taken:
            self._audio_taken = True
            tap_receiver(receiver, self._on_opus, decode=False)

    def _on_opus(self, codec: Any, encoded: Any) -> None:
        if codec.name.lower() != "opus":
            return
        packet = av.Packet(encoded.data)
        packet.pts = encoded.timestamp
        packet.time_base = fractions.Fraction(1, codec.clockRate)
        self.audio_in += 1
        self.bytes_in += len(encoded.data)
        self.media.audio.publish(packet)

    def _on_video(self, codec: Any, encoded: Any) -> None:
        media = self.media
        name = str(codec.name).upper()
        self.bytes_in += len(encoded.data)
        key = is_keyframe(name, encoded.data)
        if key:
            log.debug("stream=%s key frame in codec=%s", self.media.stream_id, name)
        self._decide_decoding(key)
        if self._pts_offset is None:
            # Anchor the publisher's RTP clock to the plane's so a reconnecting publisher does
            # not send viewers' timestamps backwards; the stream's encoders stamp their frames
            # with the same offset, so every rung of this stream shares one timeline.
            now = time.monotonic() - self.media.epoch
            self._pts_offset = int(now * 90000) - int(encoded.timestamp)
            media.pts_offset = self._pts_offset
        if media.video.readers <= 0:
            return
        packet = av.Packet(encoded.data)
        packet.pts = int(encoded.timestamp) + self._pts_offset
        packet.time_base = VIDEO_TIME_BASE
        packet.is_keyframe = key
        media.video.publish(packet, key)

    def _decide_decoding(self, key: bool) -> None:
        """Decode only while someone reads decoded frames (an encoder, a composite, the recorder
        learning the picture size); start again at a key frame, asking for one if needed."""
        tap = self._video_tap
        if tap is None:
            return
        frames = self.media.frames
        wanted = frames.wanted(DECODE_LINGER_S)
        if wanted or frames.warm():
            if not self.decoding:
                if key:
                    self.decoding = True
                    log.info("stream=%s decoding on", self.media.stream_id)
                elif wanted:
                    # A reader waits for frames now. (Kept warm only: wait for the next key
                    # frame — a viewer's join brings one — rather than cause one for everyone.)
                    self.request_keyframe("decoder")
        elif self.decoding:
            self.decoding = False
            log.info("stream=%s decoding off (no frame readers)", self.media.stream_id)
        tap.decode = self.decoding

    def request_keyframe(self, reason: str = "viewers") -> None:
        """Send the publisher a PLI (at most every 0.5 s). `reason`: "viewers" (the passthrough
        source's readers asked, see `PacketBroadcast.request_keyframe`) or "decoder" (decoding
        starts for an encoder or composite and needs a key frame); counted in `plis_sent`."""
        now = time.monotonic()
        receiver = self._video_receiver
        if receiver is None or now - self._last_pli < 0.5:
            return
        ssrc = media_ssrc(receiver)
        if ssrc is None:
            return
        self._last_pli = now
        self.plis_sent[reason] = self.plis_sent.get(reason, 0) + 1
        log.debug("stream=%s PLI to publisher", self.media.stream_id)
        self._spawn(aiortc_hooks.send_pli(receiver, ssrc))

    async def _pull_video(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames_in += 1
                self.media.frames.publish(frame)  # type: ignore[arg-type]
        except MediaStreamError:
            log.info("stream=%s publisher track ended", self.media.stream_id)

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        mapped = {"connected": "live", "failed": "failed", "closed": "closed"}.get(state)
        if mapped is None or mapped == self._state:
            return
        self._state = mapped
        log.info(
            "session=%s stream=%s ingest %s", self.media.session_id, self.media.stream_id, state
        )
        await self._on_state(self, mapped)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.pc.close()
