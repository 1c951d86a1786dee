"""Every place the media plane reaches into aiortc's internals, in one module.

aiortc (pinned below 1.17) has no public API for what an SFU needs: reading the RTCP a viewer sends
(receiver reports, REMB, NACK, PLI), deciding which NACKed packets to resend, pacing what leaves a
connection, asking a publisher for a key frame, and seeing a receiver's encoded frames. Each hook
here patches **one object instance** (never a class or a module constant), checks that the
attribute it replaces exists, and raises `AiortcShapeError` naming itself if aiortc changed shape.
`tests/test_media_aiortc_hooks.py` runs each hook against a real aiortc connection.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCDtlsTransport, RTCIceGatherer, RTCRtpReceiver, RTCRtpSender
from aiortc import rtp as aiortc_rtp
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from server.media import aioice_hooks

log = logging.getLogger(__name__)


class AiortcShapeError(RuntimeError):
    """aiortc no longer has the internal a hook relies on: the pin must not be lifted blindly."""


def _require(obj: object, attr: str, hook: str) -> Any:
    try:
        return getattr(obj, attr)
    except AttributeError:
        raise AiortcShapeError(
            f"aiortc hook {hook!r}: {type(obj).__name__} has no {attr!r} (aiortc changed)"
        ) from None


# -- senders (viewers' connections) -----------------------------------------------------------


def observe_rtcp(sender: RTCRtpSender, on_packet: Callable[[Any], None]) -> None:
    """`on_packet(packet)` sees every RTCP packet routed to this sender (RR, SR, REMB, NACK, PLI,
    FIR) after aiortc has handled it (so its RTT estimate already includes a fresh report)."""
    original = _require(sender, "_handle_rtcp_packet", "observe_rtcp")

    async def handle(packet: Any) -> None:
        await original(packet)
        on_packet(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def sender_last_sr(sender: RTCRtpSender) -> tuple[int | None, float | None]:
    """(LSR, wall-clock time it was sent) of the sender's latest sender report: a receiver
    report echoing that LSR is one raw round-trip sample (now - sent - DLSR)."""
    lsr = _require(sender, "_RTCRtpSender__lsr", "sender_last_sr")
    at = _require(sender, "_RTCRtpSender__lsr_time", "sender_last_sr")
    return lsr, at


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC) of a sender."""
    return (
        int(_require(sender, "_ssrc", "sender_ssrcs")),
        int(_require(sender, "_rtx_ssrc", "sender_ssrcs")),
    )


def gate_retransmit(sender: RTCRtpSender, allow: Callable[[int, int, int], bool]) -> None:
    """Before aiortc resends a NACKed packet, `allow(seq, size, rtp_timestamp)` decides; packets
    aiortc no longer holds are skipped by aiortc itself (its history is 128 packets)."""
    original = _require(sender, "_retransmit", "gate_retransmit")
    history: dict[int, Any] = _require(sender, "_RTCRtpSender__rtp_history", "gate_retransmit")
    size_of = aiortc_rtp.RTP_HISTORY_SIZE

    async def retransmit(sequence_number: int) -> None:
        packet = history.get(sequence_number % size_of)
        if packet is None or packet.sequence_number != sequence_number:
            return
        if allow(sequence_number, len(packet.payload) + 40, packet.timestamp):
            await original(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]


def sender_rtp_timestamp(sender: RTCRtpSender) -> int:
    """The RTP timestamp of the last packet this sender sent (to age NACKed packets)."""
    return int(_require(sender, "_RTCRtpSender__rtp_timestamp", "sender_rtp_timestamp"))


def forward_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """PLI/FIR from the viewer: aiortc would only flag its own (unused) encoder; call `request`."""
    _require(sender, "_send_keyframe", "forward_keyframe_requests")
    sender._send_keyframe = request  # type: ignore[method-assign]


def abs_send_time_id(sender: RTCRtpSender) -> int | None:
    """The negotiated one-byte header extension id of abs-send-time on this sender, if any."""
    extmap = _require(sender, "_RTCRtpSender__rtp_header_extensions_map", "abs_send_time_id")
    ids = _require(extmap, "_HeaderExtensionsMap__ids", "abs_send_time_id")
    value = getattr(ids, "abs_send_time", None)
    return int(value) if value else None


class SenderPort:
    """What a replacement RTP loop (`take_over_rtp`) reads and writes of one `RTCRtpSender`:
    its SSRC, track, enabled flag, mid, header-extension map, retransmission history (the dict
    aiortc's `_retransmit` reads), transport's send path, and the counters its sender reports
    carry."""

    _HOOK = "take_over_rtp"
    _COUNTERS = (
        "_RTCRtpSender__ntp_timestamp",
        "_RTCRtpSender__rtp_timestamp",
        "_RTCRtpSender__octet_count",
        "_RTCRtpSender__packet_count",
    )

    def __init__(self, sender: RTCRtpSender) -> None:
        hook = self._HOOK
        self._sender = sender
        self.ssrc = int(_require(sender, "_ssrc", hook))
        self.history: dict[int, Any] = _require(sender, "_RTCRtpSender__rtp_history", hook)
        self._extmap = _require(sender, "_RTCRtpSender__rtp_header_extensions_map", hook)
        _require(self._extmap, "set", hook)
        _require(sender, "_enabled", hook)
        _require(sender, "_RTCRtpSender__mid", hook)
        _require(sender, "_RTCRtpSender__track", hook)
        for name in self._COUNTERS:
            _require(sender, name, hook)

    def track(self) -> Any:
        return self._sender.track

    def enabled(self) -> bool:
        return bool(self._sender._enabled)

    def mid(self) -> str | None:
        mid: str | None = self._sender._RTCRtpSender__mid  # type: ignore[attr-defined]
        return mid

    def serialize_extensions(self, values: aiortc_rtp.HeaderExtensions) -> tuple[int, bytes]:
        """(profile, bytes) of a header-extension block as this sender's map writes it."""
        profile, value = self._extmap.set(values)
        return int(profile), bytes(value)

    def send_rtp(self) -> Callable[[bytes], Awaitable[None]]:
        """The sender's transport's send path as it is now (`send_directly`, under the pacer's
        `pace_transport` while it is on): read once per frame."""
        send: Callable[[bytes], Awaitable[None]] = self._sender.transport._send_rtp
        return send

    def account(self, ntp_timestamp: int, rtp_timestamp: int, octets: int, packets: int) -> None:
        """What aiortc's loop records after each packet (its sender reports and `getStats`)."""
        sender: Any = self._sender
        sender._RTCRtpSender__ntp_timestamp = ntp_timestamp
        sender._RTCRtpSender__rtp_timestamp = rtp_timestamp
        sender._RTCRtpSender__octet_count += octets
        sender._RTCRtpSender__packet_count += packets

    def stop_track(self) -> None:
        """What aiortc's loop does when it ends: stop the track and forget it."""
        sender: Any = self._sender
        track = sender._RTCRtpSender__track
        if track is not None:
            track.stop()
            sender._RTCRtpSender__track = None


def take_over_rtp(
    sender: RTCRtpSender,
    run: Callable[[SenderPort, RTCRtpCodecParameters], Awaitable[None]],
) -> None:
    """Run `run(port, codec)` as the sender's RTP loop instead of aiortc's `_run_rtp`
    (server/media/rtpsend.py), with aiortc's start/exit protocol around it: `stop()` waits for
    the loop's started and exited events, and the loop ends quietly on cancellation, a closed
    connection or an ended track. Must run before the sender starts (`send()`)."""
    hook = "take_over_rtp"
    _require(sender, "_run_rtp", hook)
    started: asyncio.Event = _require(sender, "_RTCRtpSender__rtp_started", hook)
    exited: asyncio.Event = _require(sender, "_RTCRtpSender__rtp_exited", hook)
    if _require(sender, "_RTCRtpSender__started", hook):
        raise RuntimeError("take_over_rtp: the sender already runs aiortc's RTP loop")
    port = SenderPort(sender)

    async def run_rtp(codec: RTCRtpCodecParameters) -> None:
        started.set()
        try:
            await run(port, codec)
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            # As aiortc's loop: the exited event must be set, or `stop()` hangs.
            log.exception("RTP loop of sender %s failed", port.ssrc)
        port.stop_track()
        exited.set()

    sender._run_rtp = run_rtp  # type: ignore[method-assign]


# -- the connection's transport (sending, pacing) ---------------------------------------------

_DIRECT_MARK = "_multistream_direct_send"


def send_directly(transport: RTCDtlsTransport) -> None:
    """Replace the transport's `_send_rtp` (SRTP protect, then three nested coroutines of the
    ICE connection down to asyncio's datagram `sendto`) by one coroutine that protects and hands
    the datagram to the nominated pair's socket (`aioice_hooks.datagram_send`), counting bytes
    and packets as aiortc does. Install before `pace_transport` (which then wraps this one);
    idempotent per transport."""
    hook = "send_directly"
    if getattr(transport, _DIRECT_MARK, False):
        return
    _require(transport, "_send_rtp", hook)
    if "_send_rtp" in vars(transport):
        raise RuntimeError("send_directly: the transport's send path is hooked already")
    _require(transport, "_state", hook)
    _require(transport, "_tx_srtp", hook)
    _require(transport, "_RTCDtlsTransport__tx_bytes", hook)
    _require(transport, "_RTCDtlsTransport__tx_packets", hook)
    ice = transport.transport
    send_datagram = aioice_hooks.datagram_send(_require(ice, "_connection", hook))
    connected = DtlsState.CONNECTED
    t: Any = transport

    async def send_rtp(data: bytes) -> None:
        if t._state != connected:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        srtp = t._tx_srtp
        # aiortc's `is_rtcp`: RTCP and RTP share the bundle.
        data = srtp.protect_rtcp(data) if 192 <= data[1] <= 208 else srtp.protect(data)
        pending = send_datagram(data)
        if pending is not None:
            await pending
        t._RTCDtlsTransport__tx_bytes += len(data)
        t._RTCDtlsTransport__tx_packets += 1

    transport._send_rtp = send_rtp  # type: ignore[method-assign]
    setattr(transport, _DIRECT_MARK, True)


def pace_transport(
    transport: RTCDtlsTransport,
    delay_of: Callable[[bytes], float],
    restamp: Callable[[bytes], bytes],
) -> Callable[[], None]:
    """Everything this connection sends (RTP, RTX, RTCP, every sender of the bundle) passes
    `delay_of(data)` first; a positive answer parks the caller that long (backpressure on the
    sender's loop), a negative one sends at once; both then let `restamp(data)` rewrite the
    packet's send time. Returns an undo."""
    original: Callable[[bytes], Awaitable[None]] = _require(
        transport, "_send_rtp", "pace_transport"
    )
    patched_before = "_send_rtp" in vars(transport)
    sleep = asyncio.sleep

    async def held(data: bytes, delay: float) -> None:
        # Positive: hold the packet that long. Negative: send now, but with a fresh send time
        # (a resend carries its original's, which reads as a huge delay to the receiver).
        if delay > 0.0:
            await sleep(delay)
        await original(restamp(data))

    def send_rtp(data: bytes) -> Awaitable[None]:
        # The common case (no wait) hands back aiortc's own coroutine: no extra frame per packet.
        delay = delay_of(data)
        if delay == 0.0:
            return original(data)
        return held(data, delay)

    transport._send_rtp = send_rtp  # type: ignore[method-assign,assignment]

    def undo() -> None:
        if patched_before:
            transport._send_rtp = original  # type: ignore[method-assign,assignment]
        else:
            del transport._send_rtp  # the class's own method again

    return undo


def transport_tx_bytes(transport: RTCDtlsTransport) -> int:
    """Bytes this DTLS transport has sent (SRTP-protected RTP and RTCP)."""
    return int(_require(transport, "_RTCDtlsTransport__tx_bytes", "transport_tx_bytes"))


def rewrite_abs_send_time(data: bytes, ext_id: int, value: int) -> bytes:
    """`data` (a serialized RTP packet) with its abs-send-time extension set to `value` (24-bit,
    6.18 fixed-point seconds): the receiver's delay estimator must see when the packet really
    left, not when aiortc built it before the pacer held it back."""
    if len(data) < 16 or not data[0] & 0x10:
        return data
    pos = 12 + 4 * (data[0] & 0x0F)
    if data[pos : pos + 2] != b"\xbe\xde":
        return data
    end = pos + 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
    i = pos + 4
    while i < end:
        head = data[i]
        if head == 0:
            i += 1
            continue
        x_id, length = head >> 4, (head & 0x0F) + 1
        if x_id == 15:
            break
        if x_id == ext_id and length == 3:
            out = bytearray(data)
            out[i + 1 : i + 4] = (value & 0xFFFFFF).to_bytes(3, "big")
            return bytes(out)
        i += 1 + length
    return data


# -- receivers (publishers' connections) ------------------------------------------------------


def replace_decoder_queue(receiver: RTCRtpReceiver, tap: queue.Queue[Any]) -> None:
    """Stand `tap` in for the receiver's decoder queue (it sees every reassembled encoded frame);
    must run before `receiver.receive()` starts the decoder thread."""
    _require(receiver, "_RTCRtpReceiver__decoder_queue", "replace_decoder_queue")
    receiver._RTCRtpReceiver__decoder_queue = tap  # type: ignore[attr-defined]


class _MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, except that a frame whose packets are all in, in order, from
    the buffer's start to the packet carrying the RTP marker bit is released at once. aiortc's own
    releases a frame only when the *next* frame's first packet arrives: a whole frame interval
    later (67 ms at 15 fps) for no gain on a link that does not reorder."""

    def add(self, packet: Any) -> tuple[bool, Any]:
        pli, frame = super().add(packet)
        if frame is None and packet.marker:
            frame = self._complete_at(packet)
        return pli, frame

    def _complete_at(self, marker: Any) -> JitterFrame | None:
        packets: list[Any] = []
        origin = self._origin
        if origin is None:
            return None
        for count in range(self.capacity):
            packet: Any = self._packets[(origin + count) % self._capacity]
            if packet is None or packet.timestamp != marker.timestamp:
                return None  # a gap, or an older frame still first: aiortc's rule decides
            packets.append(packet)
            if packet.sequence_number == marker.sequence_number:
                self.remove(count + 1)
                return JitterFrame(
                    data=b"".join(p._data for p in packets), timestamp=marker.timestamp
                )
        return None


def release_frames_at_marker(receiver: RTCRtpReceiver) -> None:
    """Release each complete video frame at its marker packet instead of at the next frame's first
    packet (`_MarkerJitterBuffer`); for a server-to-server relay link, whose hop would otherwise add
    a frame interval. Must run before the first packet arrives."""
    _require(receiver, "_RTCRtpReceiver__jitter_buffer", "release_frames_at_marker")
    receiver._RTCRtpReceiver__jitter_buffer = _MarkerJitterBuffer(  # type: ignore[attr-defined]
        capacity=512, is_video=True
    )


def rtx_ssrcs(receiver: RTCRtpReceiver) -> dict[int, int]:
    """RTX SSRC -> media SSRC as the receiver learnt them."""
    return dict(_require(receiver, "_RTCRtpReceiver__rtx_ssrc", "rtx_ssrcs"))


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> Awaitable[None]:
    """Ask the remote sender of `media_ssrc` for a key frame (aiortc's receiver does this itself
    on decode errors with the same call)."""
    send: Callable[[int], Awaitable[None]] = _require(receiver, "_send_rtcp_pli", "send_pli")
    return send(media_ssrc)


# -- DTLS role and ICE agent (every connection) -------------------------------------------------


def dtls_role(transport: RTCDtlsTransport) -> str:
    """The DTLS role the transport will take: "auto" (aiortc then answers as the client),
    "client" or "server". aiortc sets it from the offer in `setRemoteDescription`."""
    return str(_require(transport, "_role", "dtls_role"))


def set_dtls_role(transport: RTCDtlsTransport, role: str) -> None:
    """Choose the DTLS role before `createAnswer` writes it as `a=setup:` (server/media/dtls.py)."""
    set_role: Callable[[str], None] = _require(transport, "_set_role", "set_dtls_role")
    set_role(role)


def ice_connection(gatherer: RTCIceGatherer) -> Any:
    """The aioice `Connection` behind an ICE gatherer (its candidate gathering is ours to shape,
    server/media/ice.py through server/media/aioice_hooks.py)."""
    return _require(gatherer, "_connection", "ice_connection")
