"""Every aiortc hook of `server.media.aiortc_hooks`, against real aiortc objects.

aiortc is pinned below 1.17 because these hooks reach into its internals. Each test names its hook:
if an aiortc upgrade changes a shape, the failure says which hook broke and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time
from typing import Any

import aioice
import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import h264, vpx
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import (
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtpPacket,
    pack_remb_fci,
)

from server.lifespan import open_services
from server.media import aiortc_hooks, codecs, ice, rtpsend
from server.media.aiortc_hooks import AiortcShapeError
from server.media.fanout import PacketBroadcast, ViewerTrack
from server.media.link import PACING_FACTOR, ViewerLink
from server.media.pacer import RTX_MAX_AGE_S
from tests.conftest import make_settings
from tests.media_helpers import LOOPBACK, PatternTrack, new_pc, offer_of


async def _answer(tx: Any, rx: Any, offer: dict[str, str], got: list[Any]) -> None:
    """`rx` answers `tx`'s offer on loopback; returns once connected with a track received."""
    await rx.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    ice.restrict(rx, LOOPBACK)
    await rx.setLocalDescription(await rx.createAnswer())
    await tx.setRemoteDescription(rx.localDescription)
    for _ in range(250):
        if tx.connectionState == "connected" and got:
            break
        await asyncio.sleep(0.02)
    assert tx.connectionState == "connected" and got


async def _pair() -> tuple[RTCPeerConnection, RTCPeerConnection, Any, Any]:
    """A sending and a receiving aiortc connection on loopback, connected, media flowing."""
    tx, rx = new_pc(), new_pc()
    sender = tx.addTrack(PatternTrack("camera", 320, 240, 30))
    got: list[Any] = []
    rx.on("track", got.append)
    offer = await offer_of(tx)
    await _answer(tx, rx, offer, got)
    receiver = next(t.receiver for t in rx.getTransceivers() if t.kind == "video")
    return tx, rx, sender, receiver


@pytest.fixture
async def pair():
    tx, rx, sender, receiver = await _pair()
    yield tx, rx, sender, receiver
    await tx.close()
    await rx.close()


def test_a_missing_internal_raises_naming_the_hook():
    with pytest.raises(AiortcShapeError, match="observe_rtcp"):
        aiortc_hooks.observe_rtcp(object(), lambda p: None)  # type: ignore[arg-type]
    with pytest.raises(AiortcShapeError, match="pace_transport"):
        aiortc_hooks.pace_transport(object(), lambda d: 0.0, lambda d: d)  # type: ignore[arg-type]
    with pytest.raises(AiortcShapeError, match="take_over_rtp"):
        aiortc_hooks.take_over_rtp(object(), rtpsend.run_rtp)  # type: ignore[arg-type]
    with pytest.raises(AiortcShapeError, match="send_directly"):
        aiortc_hooks.send_directly(object())  # type: ignore[arg-type]


async def test_hook_observe_rtcp_and_sender_last_sr_give_raw_round_trips(pair):
    _, _, sender, _ = pair
    seen: list[Any] = []
    samples: list[float] = []

    def on_packet(packet: Any) -> None:
        seen.append(packet)
        lsr, sent_at = aiortc_hooks.sender_last_sr(sender)
        for r in getattr(packet, "reports", []):
            if lsr is not None and sent_at is not None and r.lsr == lsr and r.dlsr:
                samples.append(time.time() - sent_at - r.dlsr / 65536)

    aiortc_hooks.observe_rtcp(sender, on_packet)
    for _ in range(250):  # aiortc reports about once a second; the RR after an SR echoes it
        if samples:
            break
        await asyncio.sleep(0.02)
    assert any(isinstance(p, RtcpRrPacket) for p in seen), "observe_rtcp: no receiver report seen"
    media, rtx = aiortc_hooks.sender_ssrcs(sender)
    assert media != rtx
    rr = next(p for p in seen if isinstance(p, RtcpRrPacket))
    assert any(r.ssrc == media for r in rr.reports), "sender_ssrcs: RR names another SSRC"
    assert samples, "sender_last_sr: no receiver report echoed the last sender report"
    assert all(0 <= rtt < 1 for rtt in samples), f"sender_last_sr: round trips {samples!r}"


async def test_viewer_link_reads_remb_and_receiver_reports_from_aiortc_packets(pair):
    """The link parses what Chromium sends (REMB with our SSRC, RR blocks) into its estimate."""
    _, _, sender, _ = pair
    link = ViewerLink(sender, 3_000_000)
    media, _ = aiortc_hooks.sender_ssrcs(sender)
    remb = RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=pack_remb_fci(700_000, [media]))
    link.on_rtcp(remb)
    assert link.estimator.remb(time.monotonic()) == 700_000
    # REMB only confirms delay cuts (server/media/estimator.py): the target is unchanged.
    assert link.estimator.up_target_bps(time.monotonic()) == 3_000_000
    report = RtcpReceiverInfo(
        ssrc=media, fraction_lost=0, packets_lost=0, highest_sequence=100, jitter=90, lsr=0, dlsr=0
    )
    link.on_rtcp(RtcpRrPacket(ssrc=1, reports=[report]))
    assert link.estimator.feedback.reports == 1
    # The pacer runs at a multiple of the target.
    assert link.bucket.rate_bps == pytest.approx(link.target_bps() * PACING_FACTOR, rel=0.01)


async def test_viewer_link_asks_a_key_frame_only_for_a_packet_gone_for_good(pair):
    """A resend refused by the budget is not lost: the receiver NACKs again and the budget has
    refilled by then, so no key frame is asked (one was, for every budget miss, and a key frame
    on a 1 Mbit link is a stalled second). A packet too old to resend is gone: that resyncs."""
    _, _, sender, _ = pair
    link = ViewerLink(sender, 3_000_000)
    resyncs: list[int] = []
    link.on_unrecoverable = lambda: resyncs.append(1)
    await asyncio.sleep(0.2)
    now_ts = aiortc_hooks.sender_rtp_timestamp(sender)
    allowed = [link.allow_retransmit(seq, 1200, now_ts) for seq in range(1000)]
    assert not all(allowed) and link.rtx.skipped_budget > 0
    assert resyncs == [] and link.unrecoverable == 0
    old = (now_ts - int((RTX_MAX_AGE_S + 0.5) * 90000)) & 0xFFFFFFFF
    assert not link.allow_retransmit(5000, 1200, old)
    assert resyncs == [1] and link.unrecoverable == 1


async def test_hook_gate_retransmit_decides_each_nack(pair):
    _, _, sender, _ = pair
    asked: list[tuple[int, int, int]] = []
    aiortc_hooks.gate_retransmit(sender, lambda s, n, ts: asked.append((s, n, ts)) or False)
    await asyncio.sleep(0.2)
    history = sender._RTCRtpSender__rtp_history  # the hook's own internal: present if it installed
    packet = next(iter(history.values()))
    await sender._retransmit(packet.sequence_number)
    assert asked and asked[0][0] == packet.sequence_number, "gate_retransmit: never consulted"
    assert asked[0][2] == packet.timestamp
    assert aiortc_hooks.sender_rtp_timestamp(sender) >= 0


async def test_hook_forward_keyframe_requests_receives_pli(pair):
    _, _, sender, receiver = pair
    calls: list[int] = []
    aiortc_hooks.forward_keyframe_requests(sender, lambda: calls.append(1))
    media, _ = aiortc_hooks.sender_ssrcs(sender)
    await aiortc_hooks.send_pli(receiver, media)  # the publisher-side hook, same wire
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.02)
    assert calls, "forward_keyframe_requests / send_pli: the PLI did not arrive"


async def test_hook_pace_transport_holds_video_and_restamps(pair):
    _, _, sender, _ = pair
    ext = aiortc_hooks.abs_send_time_id(sender)
    assert ext, "abs_send_time_id: no abs-send-time negotiated"
    held: list[float] = []
    restamped: list[bytes] = []

    def delay_of(data: bytes) -> float:
        held.append(time.monotonic())
        return 0.01

    def restamp(data: bytes) -> bytes:
        restamped.append(data)
        return aiortc_hooks.rewrite_abs_send_time(data, ext, 0x123456)

    undo = aiortc_hooks.pace_transport(sender.transport, delay_of, restamp)
    await asyncio.sleep(0.3)
    undo()
    assert len(held) > 5 and restamped, "pace_transport: the send path did not pass the hook"
    # Held 10 ms each: the sender's loop was parked (backpressure), not just the one packet.
    assert held[-1] - held[0] >= 0.01 * (len(held) - 1) * 0.9
    data = next(d for d in restamped if not (192 <= d[1] <= 208))
    parsed = RtpPacket.parse(
        aiortc_hooks.rewrite_abs_send_time(data, ext, 0x123456),
        sender._RTCRtpSender__rtp_header_extensions_map,
    )
    assert parsed.extensions.abs_send_time == 0x123456, "rewrite_abs_send_time missed the field"


async def test_hook_transport_tx_bytes_counts_what_left_and_pacing_toggles(pair):
    _, _, sender, _ = pair
    first = aiortc_hooks.transport_tx_bytes(sender.transport)
    await asyncio.sleep(0.2)
    assert aiortc_hooks.transport_tx_bytes(sender.transport) > first > 0, "transport_tx_bytes"
    link = ViewerLink(sender, 3_000_000)
    link.install()
    assert link.paced and sender.transport._send_rtp != sender.transport.__class__._send_rtp
    link.set_paced(False)
    assert not link.paced and "_send_rtp" not in vars(sender.transport)
    link.set_paced(True)
    link.close()
    assert "_send_rtp" not in vars(sender.transport)


async def test_hooks_rtx_ssrcs_and_replace_decoder_queue_find_their_fields(pair):
    _, _, _, receiver = pair
    assert isinstance(aiortc_hooks.rtx_ssrcs(receiver), dict)
    original = receiver._RTCRtpReceiver__decoder_queue
    tap: queue.Queue[Any] = queue.Queue()
    aiortc_hooks.replace_decoder_queue(receiver, tap)
    try:
        assert receiver._RTCRtpReceiver__decoder_queue is tap, "replace_decoder_queue: not in use"
    finally:
        # The running decoder thread reads the original; closing must reach it.
        aiortc_hooks.replace_decoder_queue(receiver, original)


def _rtp(seq: int, ts: int, marker: bool, data: bytes) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=marker)
    packet._data = data  # what aiortc's depayloader leaves for the jitter buffer
    return packet


async def test_hook_release_frames_at_marker_releases_a_frame_at_its_last_packet():
    pc = new_pc()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        shipped = receiver._RTCRtpReceiver__jitter_buffer
        assert type(shipped).__name__ == "JitterBuffer", "release_frames_at_marker: no buffer"
        # aiortc's own buffer: frame 1 comes out only with frame 2's first packet.
        assert shipped.add(_rtp(10, 900, False, b"a"))[1] is None
        assert shipped.add(_rtp(11, 900, True, b"b"))[1] is None
        assert shipped.add(_rtp(12, 1800, False, b"c"))[1].data == b"ab"

        aiortc_hooks.release_frames_at_marker(receiver)
        buffer = receiver._RTCRtpReceiver__jitter_buffer
        assert buffer is not shipped, "release_frames_at_marker: not in use"
        assert buffer.add(_rtp(10, 900, False, b"a"))[1] is None
        frame = buffer.add(_rtp(11, 900, True, b"b"))[1]
        assert frame is not None and (frame.data, frame.timestamp) == (b"ab", 900)
        # A gap: the marker packet of frame 2 arrives before its first packet.
        assert buffer.add(_rtp(13, 1800, True, b"d"))[1] is None
        frame = buffer.add(_rtp(12, 1800, False, b"c"))[1]
        assert frame is None  # aiortc's rule releases it with frame 3's first packet
        assert buffer.add(_rtp(14, 2700, False, b"e"))[1].data == b"cd"
    finally:
        await pc.close()
    with pytest.raises(AiortcShapeError, match="release_frames_at_marker"):
        aiortc_hooks.release_frames_at_marker(object())  # type: ignore[arg-type]


async def test_hooks_dtls_role_and_set_dtls_role_choose_the_answer_role():
    pc = new_pc()
    try:
        transport = pc.addTransceiver("video", direction="recvonly").receiver.transport
        assert aiortc_hooks.dtls_role(transport) == "auto", "dtls_role: aiortc starts decided"
        aiortc_hooks.set_dtls_role(transport, "server")
        assert aiortc_hooks.dtls_role(transport) == "server", "set_dtls_role: role not taken"
    finally:
        await pc.close()
    with pytest.raises(AiortcShapeError, match="set_dtls_role"):
        aiortc_hooks.set_dtls_role(object(), "server")  # type: ignore[arg-type]


async def test_hook_ice_connection_reaches_the_aioice_agent():
    pc = new_pc()
    try:
        transport = pc.addTransceiver("video", direction="recvonly").receiver.transport
        conn = aiortc_hooks.ice_connection(transport.transport.iceGatherer)
        assert isinstance(conn, aioice.Connection), f"ice_connection: got {type(conn)!r}"
    finally:
        await pc.close()
    with pytest.raises(AiortcShapeError, match="ice_connection"):
        aiortc_hooks.ice_connection(object())  # type: ignore[arg-type]


async def test_serving_leaves_aiortc_module_constants_as_shipped(tmp_path):
    """No process-wide patch: aiortc's own encoders' bitrate caps stay what aiortc ships, however
    high the server's own ceiling is (it used to raise them for the whole process)."""
    shipped = (vpx.MAX_BITRATE, h264.MAX_BITRATE)
    settings = make_settings(tmp_path, max_bitrate_bps=50_000_000)
    async with open_services(settings) as services:
        assert services.media.counters()["peer_connections"] == 0
        assert shipped == (vpx.MAX_BITRATE, h264.MAX_BITRATE)


class _NoiseTrack(PatternTrack):
    """Noise: every frame costs the encoder's whole budget (multi-packet frames)."""

    def picture(self, n: int) -> np.ndarray:
        return np.random.default_rng(n).integers(0, 256, (360, 320), dtype=np.uint8)


class _Vp8Publisher:
    """Encodes noise to VP8 (320x240, 30 fps, 2 Mb/s: ~8 KB, 6 packets a frame) into a
    `PacketBroadcast`, as a publisher's ingest or a shared encoder does."""

    def __init__(self, broadcast: PacketBroadcast) -> None:
        self.broadcast = broadcast
        self.pattern = _NoiseTrack("camera", 320, 240, 30)
        self.ctx = codecs.create_context(
            "VP8", 320, 240, codecs.EncodeProfile("camera", 30, 2_000_000)
        )
        self.key = True
        self.task = asyncio.ensure_future(self._run())

    def request_keyframe(self) -> None:
        self.key = True

    async def _run(self) -> None:
        while True:
            frame = await self.pattern.recv()
            if self.key:
                frame.pict_type = av.video.frame.PictureType.I
                self.key = False
            for packet in self.ctx.encode(frame):
                packet.time_base = codecs.TIME_BASE
                self.broadcast.publish(packet, packet.is_keyframe)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class _PacketTrack(MediaStreamTrack):
    """A track of encoded packets without `recv_shared` (what `run_rtp` falls back for)."""

    kind = "video"

    def __init__(self, source: ViewerTrack) -> None:
        super().__init__()
        self.source = source

    async def recv(self) -> av.Packet:  # type: ignore[override]
        return await self.source.recv()


async def _close_all(tx: Any, rx: Any, publisher: Any) -> None:
    """End a test's connections and publisher (the sender's stop() waits for its loop to exit)."""
    await asyncio.wait_for(tx.close(), 10)
    await rx.close()
    await publisher.close()


async def _viewer_of(
    broadcast: PacketBroadcast, tap: Any = None, plain: bool = False
) -> tuple[Any, Any, Any, Any]:
    """An aiortc sender of `broadcast` through `rtpsend.run_rtp` (installed with the hooks before
    the connection starts), and an aiortc receiver that decodes; `tap(direct)` may wrap the
    sender's direct send path; `plain`: through a track without `recv_shared`. Returns (tx, rx,
    sender, received track)."""
    track: Any = ViewerTrack("video", broadcast)
    if plain:
        track = _PacketTrack(track)
    tx, rx = new_pc(), new_pc()
    sender = tx.addTrack(track)
    got: list[Any] = []
    rx.on("track", got.append)
    offer = await offer_of(tx)
    aiortc_hooks.send_directly(sender.transport)
    aiortc_hooks.take_over_rtp(sender, rtpsend.run_rtp)
    if tap is not None:
        sender.transport._send_rtp = tap(sender.transport._send_rtp)
    await _answer(tx, rx, offer, got)
    return tx, rx, sender, got[0]


async def test_hook_take_over_rtp_sends_video_aiortc_decodes_and_resends_what_it_lost():
    """The replacement RTP loop end to end: a real aiortc receiver decodes every frame, a
    dropped packet is NACKed and resent as RTX from the history the loop fills (as aiortc's
    loop fills it), stats and sender reports count what was sent, and closing stops the loop."""
    broadcast = PacketBroadcast("hooks")
    publisher = _Vp8Publisher(broadcast)
    broadcast.on_keyframe_request = publisher.request_keyframe
    sent: list[bytes] = []
    dropped: list[int] = []
    armed: list[bool] = []  # once the receiver decodes: it has seen packets, it NACKs gaps

    def tap(direct: Any) -> Any:
        async def lossy(data: bytes) -> None:
            sent.append(data)
            # Lose one packet that is neither a frame's first nor its last (the packet before
            # it is RTP without the marker bit, and so is this one), once.
            mid_frame = all(d[1] < 192 and not d[1] & 0x80 for d in sent[-2:])
            if mid_frame and armed and not dropped:
                dropped.append(int.from_bytes(data[2:4], "big"))
                return
            await direct(data)

        return lossy

    tx, rx, sender, remote = await _viewer_of(broadcast, tap)
    try:
        with pytest.raises(RuntimeError, match="already"):
            aiortc_hooks.take_over_rtp(sender, rtpsend.run_rtp)
        frames = []
        for _ in range(60):
            frame = await asyncio.wait_for(remote.recv(), 5)
            frames.append((frame.width, frame.height))
            armed.append(True)
        assert set(frames) == {(320, 240)}, "take_over_rtp: frames did not decode"
        assert dropped, "the test lost no packet"
        media_ssrc, rtx_ssrc = aiortc_hooks.sender_ssrcs(sender)
        rtx = [d for d in sent if _rtp_of(d, rtx_ssrc)]
        resent = {int.from_bytes(d[_payload_at(d) :][:2], "big") for d in rtx}
        assert dropped[0] in resent, "take_over_rtp: the NACKed packet was not resent as RTX"
        await publisher.close()  # the loop waits for the next frame: the counts hold still
        await asyncio.sleep(0.1)
        media = [d for d in sent if _rtp_of(d, media_ssrc)]
        stats = await sender.getStats()
        out = next(s for s in stats.values() if s.type == "outbound-rtp")
        assert out.packetsSent == len(media)
        assert out.bytesSent == sum(len(d) - _payload_at(d) for d in media)
        assert aiortc_hooks.sender_rtp_timestamp(sender) == int.from_bytes(media[-1][4:8], "big")
        tx_bytes = aiortc_hooks.transport_tx_bytes(sender.transport)
        assert tx_bytes >= sum(len(d) for d in sent), "send_directly: bytes not counted"
    finally:
        await _close_all(tx, rx, publisher)
    assert sender.track is None and broadcast.readers == 0, "the loop did not stop its track"


def _rtp_of(data: bytes, ssrc: int) -> bool:
    """An RTP packet (not RTCP: aiortc's `is_rtcp`) of stream `ssrc`."""
    return not 192 <= data[1] <= 208 and int.from_bytes(data[8:12], "big") == ssrc


def _payload_at(data: bytes) -> int:
    """Offset of an RTP packet's payload (after CSRCs and the header-extension block)."""
    pos = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        pos += 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
    return pos


async def test_hook_take_over_rtp_names_the_frame_in_flight_as_last_sent():
    """While a frame's packets leave (the pacer may hold them for most of a second on a slow
    link), the sender's last RTP timestamp is that frame's, as aiortc's loop keeps it per packet:
    a NACK for an early packet of it is aged from it. (It was the previous frame's until the
    whole frame had left: such a NACK looked 13 hours old, was refused as too old, and the
    viewer was resynchronised with a key frame.)"""
    broadcast = PacketBroadcast("in-flight")
    publisher = _Vp8Publisher(broadcast)
    broadcast.on_keyframe_request = publisher.request_keyframe
    seen: list[tuple[int, int]] = []
    holder: dict[str, Any] = {}

    def tap(direct: Any) -> Any:
        async def watch(data: bytes) -> None:
            sender = holder.get("sender")
            if sender is not None and _rtp_of(data, aiortc_hooks.sender_ssrcs(sender)[0]):
                last = aiortc_hooks.sender_rtp_timestamp(sender)
                seen.append((int.from_bytes(data[4:8], "big"), last))
            await direct(data)

        return watch

    tx, rx, sender, remote = await _viewer_of(broadcast, tap)
    holder["sender"] = sender
    try:
        for _ in range(10):
            await asyncio.wait_for(remote.recv(), 5)
        assert len({ts for ts, _ in seen}) >= 5
        assert all(ts == last for ts, last in seen), seen[:5]
    finally:
        await _close_all(tx, rx, publisher)


async def test_hook_take_over_rtp_sends_a_plain_packet_track_too():
    broadcast = PacketBroadcast("plain")
    publisher = _Vp8Publisher(broadcast)
    broadcast.on_keyframe_request = publisher.request_keyframe
    tx, rx, sender, remote = await _viewer_of(broadcast, plain=True)
    try:
        for _ in range(10):
            frame = await asyncio.wait_for(remote.recv(), 5)
            assert (frame.width, frame.height) == (320, 240)
        assert "_run_rtp" in vars(sender) and sender._RTCRtpSender__rtp_history
    finally:
        await _close_all(tx, rx, publisher)


async def test_hook_send_directly_is_wrapped_by_pacing_and_restored():
    broadcast = PacketBroadcast("paced")
    publisher = _Vp8Publisher(broadcast)
    tx, rx, sender, remote = await _viewer_of(broadcast)
    try:
        direct = sender.transport._send_rtp
        first = aiortc_hooks.transport_tx_bytes(sender.transport)
        link = ViewerLink(sender, 3_000_000)
        link.install()
        assert sender.transport._send_rtp is not direct
        for _ in range(10):
            await asyncio.wait_for(remote.recv(), 5)  # paced, still flowing
        link.set_paced(False)
        assert sender.transport._send_rtp is direct, "pace_transport's undo lost send_directly"
        assert aiortc_hooks.transport_tx_bytes(sender.transport) > first
        link.close()
        aiortc_hooks.send_directly(sender.transport)  # idempotent
        assert sender.transport._send_rtp is direct
    finally:
        await _close_all(tx, rx, publisher)
