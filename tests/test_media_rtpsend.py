"""`server.media.rtpsend` writes the bytes aiortc's own sender loop would, packetising once.

Each test builds the same packets the way `RTCRtpSender._run_rtp` does (aiortc's encoder `pack`,
`RtpPacket`, `serialize` with the sender's extension map) and compares byte for byte; the loop
itself runs against real aiortc connections in `tests/test_media_aiortc_hooks.py`.
"""

from __future__ import annotations

import datetime
import os
from fractions import Fraction

import av
import pytest
from aiortc import clock
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

from server.media import rtpsend
from server.media.fanout import RingItem
from server.media.rtpsend import ExtensionBlock, RtpWriter

MID = "URI_MID"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def extension_map(*uris: str) -> HeaderExtensionsMap:
    names = {MID: "urn:ietf:params:rtp-hdrext:sdes:mid", ABS: ABS}
    extmap = HeaderExtensionsMap()
    extmap.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i + 1, uri=names[u]) for i, u in enumerate(uris)
            ]
        )
    )
    return extmap


def av_packet(data: bytes, pts: int, time_base: Fraction = Fraction(1, 90000)) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = pts
    packet.time_base = time_base
    return packet


def aiortc_packets(
    payloads: list[bytes],
    timestamp: int,
    seq: int,
    ssrc: int,
    pt: int,
    extmap: HeaderExtensionsMap,
    abs_time: int,
    mid: str | None = "0",
) -> list[bytes]:
    """What `RTCRtpSender._run_rtp` serialises for one encoded frame."""
    out = []
    for i, payload in enumerate(payloads):
        packet = RtpPacket(payload_type=pt, sequence_number=(seq + i) & 0xFFFF, timestamp=timestamp)
        packet.ssrc = ssrc
        packet.payload = payload
        packet.marker = 1 if i == len(payloads) - 1 else 0
        packet.extensions.abs_send_time = abs_time
        packet.extensions.mid = mid
        out.append(packet.serialize(extmap))
    return out


def writer_for(codec: RTCRtpCodecParameters, extmap: HeaderExtensionsMap, **kw: int) -> RtpWriter:
    return RtpWriter(0x11223344, codec, ExtensionBlock(extmap.set, "0"), mid="0", **kw)


@pytest.mark.parametrize("size", [0, 1, 1296, 1297, 5000, 40_000])
def test_vp8_packets_are_aiortcs_bytes_for_every_viewer_from_one_packetisation(size, monkeypatch):
    extmap = extension_map(MID, ABS)
    data = os.urandom(size)
    item = RingItem(0, av_packet(data, 3000), True, 0.0)
    cuts: list[int] = []
    real = rtpsend.vp8_chunks
    monkeypatch.setattr(rtpsend, "vp8_chunks", lambda buf: cuts.append(1) or real(buf))
    for pid, seq, origin in [(5, 65534, 0xFFFFFF00), (0x7FFF, 100, 7)]:  # two viewers
        writer = writer_for(
            VP8, extmap, picture_id=pid, sequence_number=seq, timestamp_origin=origin
        )
        payloads, ts = writer.cut(item.packet.pts, item)
        assert payloads == Vp8Encoder._packetize(data, pid)
        assert writer.picture_id == (pid + 1) & 0x7FFF  # counted even for an empty frame
        assert ts == (origin + 3000) & 0xFFFFFFFF
        if not payloads:
            continue
        now = 1_790_000_000.123456
        entries = writer.frame(payloads, ts, now)
        got = [writer.serialize(e, now) for e in entries]
        abs_time = rtpsend.abs_send_time(now)
        assert got == aiortc_packets(payloads, ts, seq, 0x11223344, 97, extmap, abs_time)
        assert writer.sequence_number == (seq + len(payloads)) & 0xFFFF
        # The history entries are what aiortc's loop stores (its RTX path serialises them).
        for entry, data_out in zip(entries, got, strict=True):
            assert entry.serialize(extmap) == data_out
            assert RtpPacket.parse(data_out, extmap).extensions.mid == "0"
    assert cuts == [1], "the frame is cut once, whatever the number of viewers"


def test_h264_and_opus_payloads_are_aiortcs_and_shared():
    extmap = extension_map(MID, ABS)
    # Annex B: SPS, PPS, and a slice too big for one packet (FU-A), as x264 writes them.
    nals = [b"\x67" + os.urandom(20), b"\x68" + os.urandom(4), b"\x65" + os.urandom(3000)]
    h264 = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
    item = RingItem(0, av_packet(h264, 9000), True, 0.0)
    one, two = writer_for(H264, extmap), writer_for(H264, extmap)
    expected, ts = H264Encoder().pack(item.packet)
    assert one.cut(item.packet.pts, item)[0] == expected
    assert two.cut(item.packet.pts, item)[0] is item.packed[1][0]  # type: ignore[index]
    opus = av_packet(os.urandom(120), 960, Fraction(1, 48000))
    audio = RingItem(1, opus, True, 0.0)
    writer = writer_for(OPUS, extmap, timestamp_origin=10)
    want, ts = OpusEncoder().pack(opus)
    assert writer.cut(opus.pts, audio) == (want, 10 + ts)
    # A packet on another clock is converted as aiortc converts it.
    odd = av_packet(b"x", 1000, Fraction(1, 1000))
    assert writer.ticks(odd.pts, odd.time_base) == 48000


def test_a_viewer_with_a_shifted_timeline_gets_its_own_timestamp_and_the_shared_payloads():
    extmap = extension_map(MID, ABS)
    item = RingItem(0, av_packet(os.urandom(3000), 9000), True, 0.0)
    first, second = (writer_for(VP8, extmap, timestamp_origin=0, picture_id=1) for _ in "ab")
    # The shifted viewer asks first: the frame's shared timestamp is still the frame's own.
    payloads, ts = first.cut(9000 + 1500, item)
    assert ts == 10_500 and payloads == Vp8Encoder._packetize(bytes(item.packet), 1)
    assert second.cut(9000, item) == (payloads, 9000)


def test_extension_block_without_abs_send_time_or_any_extension():
    for uris in [(MID,), ()]:
        extmap = extension_map(*uris)
        writer = writer_for(VP8, extmap, sequence_number=1, timestamp_origin=0)
        item = RingItem(0, av_packet(os.urandom(100), 0), True, 0.0)
        payloads, _ = writer.cut(item.packet.pts, item)
        entries = writer.frame(payloads, 0, 1.0)
        got = writer.serialize(entries[0], 1.0)
        want = aiortc_packets(payloads, 0, 1, 0x11223344, 97, extmap, 12345)
        assert [got] == want
        assert bool(got[0] & 0x10) == bool(uris)  # the X bit only with an extension block
    # A mid too long for the one-byte form: aiortc switches to two-byte headers, and so do we.
    extmap = extension_map(MID, ABS)
    block = ExtensionBlock(extmap.set, "m" * 20)
    profile, value = extmap.set(HeaderExtensions(mid="m" * 20, abs_send_time=0xABCDEF))
    assert profile == 0x1000
    assert block.at(0xABCDEF)[4:] == value


def test_clock_conversions_match_aiortcs():
    for now in [1_790_000_000.0, 1_790_000_000.5, 1_790_123_456.999999]:
        dt = datetime.datetime.fromtimestamp(now, datetime.UTC)
        ntp = clock.datetime_to_ntp(dt)
        assert abs(rtpsend.ntp_time(now) - ntp) < 2**32 // 100_000  # within 10 µs
        assert abs(rtpsend.abs_send_time(now) - ((ntp >> 14) & 0xFFFFFF)) <= 1
