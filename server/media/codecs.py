"""Content-aware encoder settings, codec preference, and aiortc's bitrate caps — in one place.

Screens keep their resolution (text must stay sharp) at a lower frame rate and a higher bitrate per
pixel; cameras keep motion (their frame rate) at a modest bitrate. H.264 (libx264 ultrafast +
zerolatency, ~3 ms per 1080p frame here) is preferred over VP8 (6–20 ms) when the viewer supports it.

What a stream's quality (`server.domain.StreamQuality`) decides here: its preset's height caps the
size of every server encode of that stream (`EncodeProfile.max_height`), and its content hint picks
the encoder tuning (`EncodeProfile.tuning`). A composite whose screen carries text is encoded at the
screen's frame rate (15 fps by default: twice the bits per frame of 30) with the text tuning, which
`bench.text_psnr` and `bench.composite_e2e` measure: x264 superfast with `tune=psnr` (adaptive
quantisation and psy-rd off: on a page of text they move bits out of the glyphs' flat surroundings
and blur edges) keeps a static 1080p page's text ≥ 45 dB through the composite, against ~43 dB for
ultrafast at 30 fps, for ~2x the encoder time per frame at half the frames.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import av
from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from server.domain import StreamQuality, Tuning
from server.settings import Settings

# Every shared encoder stamps pts on this clock, so a viewer switched between encoders (a new
# layout, a composite falling back) sees continuous RTP timestamps.
TIME_BASE = fractions.Fraction(1, 90000)
KEYFRAME_INTERVAL_S = 4
KEYFRAME_INTERVAL_S_CONSTRAINED = 300
# Constrained rungs: a key frame at most this many average frames big (libvpx `max-intra-rate`,
# x264 through a half-second VBV buffer).
MAX_INTRA_PCT = 400
# Constrained VP8 rungs skip frames while libvpx's rate buffer is under this share of its optimum
# (`bench.rung_burst` prints the bits per second around a full-page change for each setting).
RUNG_DROP_THRESHOLD_PCT = 30
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
    # The content hint's tuning (`domain.Tuning`) and the quality preset's height: a taller source
    # is scaled down to it before encoding (None: no cap).
    tuning: Tuning = "motion"
    max_height: int | None = None

    @property
    def keyframe_interval_s(self) -> int:
        # Text too: each periodic key frame of a page of text dips its quality for a few frames
        # (bench.composite_e2e: 45.4 -> 46.7 dB mean at 10 s); viewers joining ask for their own.
        return (
            KEYFRAME_INTERVAL_S_CONSTRAINED
            if self.constrained or self.tuning == "text"
            else KEYFRAME_INTERVAL_S
        )


def profile_for(quality: StreamQuality, settings: Settings) -> EncodeProfile:
    """Screen: its own (low) frame rate, the screen bitrate. Camera: motion at the camera bitrate.
    Either way the preset's height caps the encode and the content hint picks the tuning."""
    cap = settings.max_bitrate_bps
    base = settings.screen_bitrate_bps if quality.kind == "screen" else settings.camera_bitrate_bps
    return EncodeProfile(
        quality.kind,
        max(1, min(quality.fps, 30)),
        min(base, cap),
        tuning=quality.tuning,
        max_height=quality.max_height,
    )


def composite_profile(
    screen: StreamQuality | None, camera: StreamQuality | None, settings: Settings
) -> EncodeProfile:
    """A composite is a screen picture with the camera inset, at the screen's bitrate.

    With a screen that carries text it follows the screen: its frame rate (twice the bits per
    frame at 15 than at 30), its size cap and the text tuning; the camera inset moves at that rate.
    Camera alone: the camera's frame rate, size cap and tuning.
    """
    bitrate = min(
        max(settings.screen_bitrate_bps, settings.camera_bitrate_bps), settings.max_bitrate_bps
    )
    if screen is not None and screen.tuning == "text":
        return EncodeProfile(
            "composite",
            max(1, min(screen.fps, 30)),
            bitrate,
            tuning="text",
            max_height=screen.max_height,
        )
    lead = screen or camera
    fps = camera.fps if camera is not None else 30
    return EncodeProfile(
        "composite",
        max(1, min(fps, 30)),
        bitrate,
        tuning=lead.tuning if lead is not None else "motion",
        max_height=lead.max_height if lead is not None else None,
    )


def rung_profile(base: EncodeProfile, rung_profile: EncodeProfile) -> EncodeProfile:
    """A ladder rung's profile (`Rung.profile`) keeps its source's tuning and size cap."""
    return replace(rung_profile, tuning=base.tuning, max_height=base.max_height)


def scaled_profile(base: EncodeProfile, kind: str, height: int) -> EncodeProfile:
    """A smaller variant needs fewer bits: scale by area against the kind's reference height."""
    reference = 1080 if kind == "screen" else 720
    bitrate = int(base.bitrate_bps * min(1.0, (height / reference) ** 2))
    return replace(base, bitrate_bps=max(150_000, bitrate))


def capped_size(width: int, height: int, max_height: int | None) -> tuple[int, int]:
    """The even size a `width`x`height` picture is encoded at under a height cap (aspect kept)."""
    if max_height is not None and height > max_height:
        width, height = max(2, round(width * max_height / height / 2) * 2), max_height
    return width - width % 2, height - height % 2


def create_context(codec: str, width: int, height: int, profile: EncodeProfile) -> Any:
    """A PyAV encoder context for `codec` ("H264" or "VP8") tuned for real-time delivery."""
    text = profile.tuning == "text"
    if codec == "H264":
        ctx = av.CodecContext.create("libx264", "w")
        ctx.options = {
            # Text: a slower preset and no psycho-visual tuning (sharper glyphs, measured in
            # bench.text_psnr); motion: the fastest preset, every frame on time.
            "preset": "superfast" if text else "ultrafast",
            "tune": "psnr,zerolatency" if text else "zerolatency",
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
            # Screens and text change little between frames; spend the time on quality there.
            "cpu-used": "8" if text or profile.content == "screen" else "10",
            "lag-in-frames": "0",
            "static-thresh": "0" if text or profile.content == "screen" else "1",
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "bufsize": str(profile.bitrate_bps),
            "error-resilient": "1",
        }
        if profile.constrained:
            # A slow link's rung must reach its rate even on hard content: coarser quantisers
            # allowed, key frames capped, and constant bitrate with frame dropping. A page of
            # text that changes at once (a new slide, the lab's page wrapping) costs one frame
            # of ~110 kB at 720p whatever the quantiser: 0.9 s of a 1 Mbit link. In VBR libvpx
            # goes on at full rate after it, so the link queues, drops, and a resend cascade
            # ends in key frames; in CBR it skips the next frames until its buffer refills
            # (libvpx drops frames only in CBR), so the link drains behind the big one.
            ctx.qmax = 63
            rate = str(profile.bitrate_bps)
            ctx.options = {
                **ctx.options,
                "max-intra-rate": str(MAX_INTRA_PCT),
                "minrate": rate,
                "maxrate": rate,
                "drop-threshold": str(RUNG_DROP_THRESHOLD_PCT),
            }
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
