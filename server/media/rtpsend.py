"""A viewer sender's RTP loop, with each source frame packetised once for all its viewers.

aiortc's `RTCRtpSender._run_rtp`, per viewer and per packet: packetises the frame again
(`encoder.pack`), builds an `RtpPacket` and a `HeaderExtensions` object, reads the wall clock twice
through `datetime`, serialises the header extensions through a generic map, and awaits four nested
coroutines down to the socket. On a fan-out server that is most of the CPU per forwarded packet
(bench/RESULTS.md, "Per-packet cost"). This loop sends the same bytes:

- the payloads of a frame are computed once per ring item (`fanout.RingItem.payloads`) and shared
  by every viewer of the source; VP8's 4-byte payload descriptor, whose picture id runs per viewer
  (as aiortc's per-sender encoder numbers it), is the only per-viewer part of a payload;
- the RTP header comes from one precompiled `struct`, the header-extension block from bytes
  prepared once per sender, with only the 3-byte abs-send-time written per packet;
- aiortc's retransmission history is filled with `RtpPacket`s exactly as aiortc's loop fills it
  (its NACK path, `gate_retransmit`, and RTX wrapping read them), and its sender-report counters
  are kept (`aiortc_hooks.SenderPort.account`).

Every reach into the sender is through `aiortc_hooks.take_over_rtp`; `tests/test_media_rtpsend.py`
checks the packets byte for byte against aiortc's own packetiser and serialiser.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Protocol

import av
from aiortc.codecs import get_encoder
from aiortc.codecs.vpx import PACKET_MAX
from aiortc.mediastreams import convert_timebase
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensions, RtpPacket
from aiortc.utils import random32

from server.media import aiortc_hooks
from server.media.aiortc_hooks import SenderPort

# aiortc's VP8 payload: a 4-byte descriptor (with its 15-bit picture id) and up to this many bytes
# of the frame (`aiortc.codecs.vpx.Vp8Encoder._packetize`).
VP8_DESCRIPTOR = 4
VP8_CHUNK = PACKET_MAX - VP8_DESCRIPTOR
# Seconds between the NTP epoch (1900) and the Unix epoch: abs-send-time is NTP-based.
NTP_OFFSET_S = 2_208_988_800
_HEADER = struct.Struct("!BBHII")
_time = time.time


class SharedFrame(Protocol):
    """A source frame shared by the viewers of one broadcast (`fanout.RingItem`): its packet,
    and a value per codec made by the first viewer that asks."""

    packet: av.Packet

    def shared(self, key: str, make: Callable[[], Any]) -> Any: ...


class SharedTrack(Protocol):
    """What the loop reads: a track handing out each frame with its pts for this viewer."""

    async def recv_shared(self) -> tuple[int | None, SharedFrame]: ...


def vp8_chunks(data: bytes) -> list[bytes]:
    """A VP8 frame cut as aiortc cuts it, without the per-viewer descriptors."""
    return [data[i : i + VP8_CHUNK] for i in range(0, len(data), VP8_CHUNK)]


def abs_send_time(now: float) -> int:
    """abs-send-time (6.18 fixed-point seconds, 24 bits) of Unix time `now`, as aiortc's
    `(clock.current_ntp_time() >> 14) & 0xFFFFFF`."""
    return int((now + NTP_OFFSET_S) * 262144) & 0xFFFFFF


def ntp_time(now: float) -> int:
    """64-bit NTP time of Unix time `now` (aiortc's `clock.current_ntp_time`)."""
    return int((now + NTP_OFFSET_S) * 4294967296) & 0xFFFFFFFFFFFFFFFF


class ExtensionBlock:
    """A sender's header-extension block (mid and abs-send-time, what aiortc's loop sets), as
    bytes around the 3 bytes of abs-send-time that change per packet."""

    __slots__ = ("head", "present", "tail")

    def __init__(self, serialize: Callable[[HeaderExtensions], tuple[int, bytes]], mid: Any):
        blocks = []
        for probe in (0, 0xFFFFFF):
            profile, value = serialize(HeaderExtensions(mid=mid, abs_send_time=probe))
            blocks.append(struct.pack("!HH", profile, len(value) >> 2) + value if value else b"")
        low, high = blocks
        self.present = bool(low)
        self.tail: bytes | None
        diff = [i for i, (a, b) in enumerate(zip(low, high, strict=True)) if a != b]
        if diff:
            # The probes differ in exactly the 3 bytes of abs-send-time (0x000000 vs 0xFFFFFF).
            start = diff[0]
            assert diff == [start, start + 1, start + 2], "abs-send-time is not 3 bytes"
            self.head, self.tail = low[:start], low[start + 3 :]
        else:
            self.head, self.tail = low, None  # abs-send-time not negotiated

    def at(self, abs_time: int) -> bytes:
        if self.tail is None:
            return self.head
        return self.head + abs_time.to_bytes(3, "big") + self.tail


class RtpWriter:
    """The per-viewer part of a sender's packets: SSRC, sequence numbers, timestamp origin, VP8
    picture ids, header extensions. `frame()` returns the serialised packets of one frame and
    the `RtpPacket`s aiortc's history keeps of them."""

    def __init__(
        self,
        ssrc: int,
        codec: RTCRtpCodecParameters,
        extensions: ExtensionBlock,
        *,
        mid: Any = None,
        sequence_number: int | None = None,
        timestamp_origin: int | None = None,
        picture_id: int | None = None,
    ) -> None:
        self.ssrc = ssrc
        if codec.payloadType is None:
            raise ValueError(f"codec {codec.mimeType} has no payload type")
        self.codec = codec
        self.payload_type: int = codec.payloadType
        self.mime = codec.mimeType.lower()
        self.vp8 = self.mime == "video/vp8"
        self.clock = Fraction(1, codec.clockRate)
        self.ext = extensions
        self.mid = mid
        self._first_byte = 0x90 if extensions.present else 0x80
        self.sequence_number = (
            random_sequence_number() if sequence_number is None else sequence_number
        )
        self.timestamp_origin = random32() if timestamp_origin is None else timestamp_origin
        # aiortc's VP8 encoder starts its picture ids at random and counts every packed frame.
        self.picture_id = random.randint(0, (1 << 15) - 1) if picture_id is None else picture_id
        self._encoder: Any = None

    def cut(self, pts: int | None, frame: SharedFrame) -> tuple[list[bytes], int]:
        """This sender's payloads of the frame (aiortc's encoder would cut them so) and its RTP
        timestamp at `pts`. The cutting and the timestamp's conversion are done once per frame
        for every viewer (`frame.shared`); a viewer whose timeline is shifted (`pts` is not the
        frame's) converts its own timestamp."""
        packet = frame.packet
        chunks, ticks = frame.shared(self.mime, lambda: self._cut_once(packet))
        if pts != packet.pts:
            ticks = self.ticks(pts, packet.time_base)
        timestamp = (self.timestamp_origin + ticks) & 0xFFFFFFFF
        if not self.vp8:
            # H.264 and Opus payloads do not depend on the sender.
            return chunks, timestamp
        pid = (0x8000 | self.picture_id).to_bytes(2, "big")
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        if not chunks:
            return [], timestamp
        rest = b"\x80\x80" + pid
        out = [rest + chunk for chunk in chunks]
        out[0] = b"\x90\x80" + pid + chunks[0]
        return out, timestamp

    def _cut_once(self, packet: av.Packet) -> tuple[list[bytes], int]:
        ticks = self.ticks(packet.pts, packet.time_base)
        if self.vp8:
            return vp8_chunks(bytes(packet)), ticks
        if self._encoder is None:
            self._encoder = get_encoder(self.codec)
        payloads, _ = self._encoder.pack(packet)
        return list(payloads), ticks

    def ticks(self, pts: int | None, time_base: Fraction | None) -> int:
        """`pts` (in `time_base`) on this sender's RTP clock (aiortc's `convert_timebase`)."""
        if pts is None or time_base is None:
            raise ValueError("a packet to send has no pts or time base")
        return pts if time_base == self.clock else convert_timebase(pts, time_base, self.clock)

    def frame(self, payloads: list[bytes], timestamp: int, now: float) -> list[RtpPacket]:
        """The frame's packets as aiortc's history keeps them (sequence numbers taken)."""
        seq = self.sequence_number
        ssrc, pt = self.ssrc, self.payload_type
        # One extensions object for the frame's entries: aiortc's RTX wrapping only reads it
        # (its abs-send-time is the frame's; a paced resend is restamped anyway).
        extensions = HeaderExtensions(mid=self.mid, abs_send_time=abs_send_time(now))
        csrc: list[int] = []
        last = len(payloads) - 1
        entries = []
        for i, payload in enumerate(payloads):
            entry = RtpPacket(pt, 1 if i == last else 0, seq, timestamp, ssrc, payload)
            entry.csrc = csrc
            entry.extensions = extensions
            entries.append(entry)
            seq = (seq + 1) & 0xFFFF
        self.sequence_number = seq
        return entries

    def serialize(self, entry: RtpPacket, now: float) -> bytes:
        """`entry` as aiortc's `RtpPacket.serialize` writes it, sent at `now` (each packet's
        abs-send-time is read when it is built, just before its send: a packet that waited
        behind its frame's others for the pacer must not look older than it is)."""
        head = _HEADER.pack(
            self._first_byte,
            (entry.marker << 7) | self.payload_type,
            entry.sequence_number,
            entry.timestamp,
            self.ssrc,
        )
        return b"".join((head, self.ext.at(abs_send_time(now)), entry.payload))


class _Unshared:
    """A packet from a track without `recv_shared`: its payloads are this viewer's alone."""

    __slots__ = ("packet",)

    def __init__(self, packet: av.Packet) -> None:
        self.packet = packet

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        return make()


async def run_rtp(port: SenderPort, codec: RTCRtpCodecParameters) -> None:
    """The sender's RTP loop (installed by `aiortc_hooks.take_over_rtp`): what aiortc's
    `_run_rtp` does for a track of already-encoded packets, one frame at a time."""
    writer: RtpWriter | None = None
    history = port.history
    while True:
        track: Any = port.track()
        if track is None:
            await asyncio.sleep(0.02)
            continue
        recv_shared = getattr(track, "recv_shared", None)
        if recv_shared is not None:
            pts, shared = await recv_shared()
        else:
            # Any other track of encoded packets (nothing here encodes frames): cut per viewer.
            packet = await track.recv()
            if not isinstance(packet, av.Packet):
                raise TypeError(f"the RTP loop sends encoded packets, not {type(packet)!r}")
            pts, shared = packet.pts, _Unshared(packet)
        if not port.enabled():
            continue
        if writer is None:
            # The sender's extension ids and mid are set by `send()` before this loop starts.
            mid = port.mid()
            block = ExtensionBlock(port.serialize_extensions, mid)
            writer = RtpWriter(port.ssrc, codec, block, mid=mid)
        payloads, timestamp = writer.cut(pts, shared)
        if not payloads:
            continue
        now = _time()
        entries = writer.frame(payloads, timestamp, now)
        # The frame in flight is the sender's "last sent" before its first packet leaves, as
        # aiortc counts after each packet: a NACK for one of its packets while the pacer holds
        # the rest is aged from it (`link.ViewerLink.allow_retransmit`), and a sender report
        # meanwhile maps its timestamp.
        port.account(ntp_time(now), timestamp, 0, 0)
        send = port.send_rtp()  # read per frame: the pacer hooks in and out
        serialize = writer.serialize
        octets = 0
        for entry in entries:
            history[entry.sequence_number % RTP_HISTORY_SIZE] = entry
            await send(serialize(entry, _time()))
            octets += len(entry.payload)
        port.account(ntp_time(_time()), timestamp, octets, len(entries))


def install(sender: Any) -> None:
    """Send this viewer sender's packets with `run_rtp` and its connection's datagrams straight
    to the socket (`aiortc_hooks.send_directly`). Call after `replaceTrack` with a track that has
    `recv_shared` (`fanout.ViewerTrack`), before the connection starts sending and before any
    pacing hook."""
    aiortc_hooks.send_directly(sender.transport)
    aiortc_hooks.take_over_rtp(sender, run_rtp)
