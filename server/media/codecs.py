"""Content-aware encoder settings, codec preference, and aiortc's bitrate caps — in one place.

Screens keep their resolution (text must stay sharp) at a lower frame rate and a higher bitrate per
pixel; cameras keep motion (their frame rate) at a modest bitrate. H.264 (libx264 ultrafast +
zerolatency, ~3 ms per 1080p frame here) is preferred over VP8 (6–20 ms) when the viewer supports it.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from server.settings import Settings

# Every shared encoder stamps pts on this clock, so a viewer switched between encoders (a new
# layout, a composite falling back) sees continuous RTP timestamps.
TIME_BASE = fractions.Fraction(1, 90000)
KEYFRAME_INTERVAL_S = 4
KEYFRAME_INTERVAL_S_CONSTRAINED = 300
# Constrained rungs: a key frame at most this many average frames big (libvpx `max-intra-rate`,
# x264 through a half-second VBV buffer).
MAX_INTRA_PCT = 400
SUPPORTED_VIDEO = ("H264", "VP8")


@dataclass(frozen=True, slots=True)
class EncodeProfile:
    """What one shared encoder aims for: a frame-rate cap and a bitrate."""

    content: str  # "screen" | "camera" | "composite"
    fps: int
    bitrate_bps: int
    # A lower rung of a ladder serves slow links: rare periodic key frames (viewers ask for one
    # when they join or lose the picture), each capped in size where the encoder can (a key frame
    # is most of a second of a small link: every periodic one is a stall and a queue).
    constrained: bool = False

    @property
    def keyframe_interval_s(self) -> int:
        return KEYFRAME_INTERVAL_S_CONSTRAINED if self.constrained else KEYFRAME_INTERVAL_S


def profile_for(kind: str, quality: dict[str, Any] | None, settings: Settings) -> EncodeProfile:
    """Screen: its own (low) frame rate, the screen bitrate. Camera: motion at the camera bitrate.

    A composite is a screen picture whose frame rate follows the camera, so it gets the screen's
    bitrate and the camera's frame rate.
    """
    quality = quality or {}
    cap = settings.max_bitrate_bps
    if kind == "screen":
        fps = int(quality.get("fps") or 15)
        return EncodeProfile("screen", max(1, min(fps, 30)), min(settings.screen_bitrate_bps, cap))
    if kind == "camera":
        fps = int(quality.get("fps") or 30)
        return EncodeProfile("camera", max(1, min(fps, 30)), min(settings.camera_bitrate_bps, cap))
    bitrate = max(settings.screen_bitrate_bps, settings.camera_bitrate_bps)
    return EncodeProfile("composite", 30, min(bitrate, cap))


def scaled_profile(base: EncodeProfile, kind: str, height: int) -> EncodeProfile:
    """A smaller variant needs fewer bits: scale by area against the kind's reference height."""
    reference = 1080 if kind == "screen" else 720
    bitrate = int(base.bitrate_bps * min(1.0, (height / reference) ** 2))
    return EncodeProfile(base.content, base.fps, max(150_000, bitrate))


def create_context(codec: str, width: int, height: int, profile: EncodeProfile) -> Any:
    """A PyAV encoder context for `codec` ("H264" or "VP8") tuned for real-time delivery."""
    if codec == "H264":
        ctx = av.CodecContext.create("libx264", "w")
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            # Fill the rate-control buffer over ~1 s: smooth for the network, fine for key frames.
            "bufsize": str(profile.bitrate_bps // (2 if profile.constrained else 1)),
            "maxrate": str(profile.bitrate_bps),
            # Periodic IDR with in-band SPS/PPS so late joiners and the recorder can decode.
            "x264-params": f"keyint={profile.fps * profile.keyframe_interval_s}:repeat-headers=1",
        }
        # Constrained Baseline: what profile-level-id 42e01f / 42001f promise in the SDP.
        ctx.profile = "Baseline"
    elif codec == "VP8":
        ctx = av.CodecContext.create("libvpx", "w")
        ctx.gop_size = profile.fps * profile.keyframe_interval_s
        ctx.qmin = 2
        ctx.qmax = 56
        ctx.options = {
            "deadline": "realtime",
            # Screens change little between frames; spend the time on quality there.
            "cpu-used": "8" if profile.content == "screen" else "10",
            "lag-in-frames": "0",
            "static-thresh": "1" if profile.content != "screen" else "0",
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "bufsize": str(profile.bitrate_bps),
            "error-resilient": "1",
        }
        if profile.constrained:
            # A slow link's rung must reach its rate even on hard content: coarser quantisers
            # allowed, key frames capped.
            ctx.qmax = 63
            ctx.options = {**ctx.options, "max-intra-rate": str(MAX_INTRA_PCT)}
    else:
        raise ValueError(f"unsupported video codec {codec!r}")
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    ctx.bit_rate = profile.bitrate_bps
    ctx.framerate = fractions.Fraction(profile.fps, 1)
    ctx.time_base = TIME_BASE
    ctx.thread_count = 1
    return ctx


def video_preferences(names: Iterable[str]) -> list[RTCRtpCodecCapability]:
    """aiortc codec capabilities in the configured order (each with its RTX), for
    `RTCRtpTransceiver.setCodecPreferences`."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    ordered: list[RTCRtpCodecCapability] = []
    for name in names:
        if name.upper() not in SUPPORTED_VIDEO:
            continue
        ordered += [c for c in caps if c.mimeType.lower() == f"video/{name.lower()}"]
    ordered += [c for c in caps if c.mimeType.lower() == "video/rtx"]
    return ordered
