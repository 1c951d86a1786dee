"""Fan-out capacity: one publisher, N loopback viewers; server CPU per forwarded packet and per viewer.

The honest row first: a **realistic session** -- a 1080p30 screen of scrolling small text (VP8,
~2.7 Mb/s, several RTP packets per frame), a 720p30 camera with sensor noise (VP8, ~1.4 Mb/s) and
Opus audio -- published from pre-encoded loops (``bench.content``), each viewer receiving all three
by passthrough. It reports µs of server CPU per forwarded packet, packets/s and Mb/s per core and
viewers per core at that bitrate. An SFU's work grows with packets forwarded, not with viewers.

Then, labelled as what they are: a synthetic 360p30 pattern that encodes to **one RTP packet per
frame** (flattering any forwarding path), run through the media plane (passthrough, and decode once
/ encode once) and through the naive aiortc server (`MediaRelay`, every viewer's sender
re-encodes); and the 1080p composite feed of the media plane (one layout shared by all viewers).

    .venv/bin/python -m bench.bench_fanout                 # full table (several minutes)
    .venv/bin/python -m bench.bench_fanout --quick         # small N only
    .venv/bin/python -m bench.bench_fanout --only session  # the realistic rows only
    .venv/bin/python -m pytest bench/bench_fanout.py       # quick sweeps as pytest-benchmarks

Measurement: the server runs in its own process (`bench/fanout_server.py`); its CPU time
(user+system, psutil) is sampled over a window at each N. The load clients are light: each viewer
is a real aiortc peer connection (ICE, DTLS, SRTP decryption) but its RTP is not parsed, jitter-
buffered or decoded — a per-connection hook on the DTLS transport counts packets and frames (RTP
marker bit) after decryption. So a viewer costs the client a few µs per packet, and the clients do
not starve the server on this 2-core machine. The publisher is an aiortc sender of a synthetic
pattern in the client process.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import psutil
import pytest
import tornado.httpclient
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from bench import content
from bench.broadcaster import signup_token
from server.media import ice
from tests.media_helpers import LOOPBACK, PatternTrack, new_pc

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/api/v1/livestream"


@dataclass
class FrameCounter:
    """Replaces a client's RTP handling: counts packets, bytes and frames, parses nothing."""

    packets: int = 0
    frames: int = 0
    octets: int = 0

    async def on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        self.packets += 1
        self.octets += len(data)
        if data[1] & 0x80:  # marker bit: last packet of a video frame
            self.frames += 1


@dataclass
class Server:
    impl: str
    proc: subprocess.Popen[str]
    port: int
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(impl: str, codec: str, bitrate: int, root: Path = ROOT) -> Server:
    """`impl`: "relay", "ours" (passthrough on) or "ours-enc" (every output encoded once).
    `root`: the source tree the server runs from (another revision: `bench.adaptive_cost`)."""
    extra = ["--no-passthrough"] if impl == "ours-enc" else []
    if os.environ.get("FANOUT_PROFILE"):
        extra += ["--profile", os.environ["FANOUT_PROFILE"]]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.fanout_server",
            "--impl",
            impl.split("-")[0],
            "--codec",
            codec,
            "--bitrate",
            str(bitrate),
            *extra,
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=open(os.environ["FANOUT_SERVER_LOG"], "a")  # noqa: SIM115
        if os.environ.get("FANOUT_SERVER_LOG")
        else subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return Server(impl, proc, int(line.split()[1]))


class Http:
    def __init__(self, base: str) -> None:
        self.base = base
        self.client = tornado.httpclient.AsyncHTTPClient()
        self._account: str | None = None

    async def account(self) -> str:
        """The bench broadcaster's API token (signed up on the fresh server once)."""
        if self._account is None:
            self._account = await signup_token(self.base)
        return self._account

    async def post(self, path: str, body: Any, token: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        resp = await self.client.fetch(
            self.base + path,
            method="POST",
            body=json.dumps(body),
            headers=headers,
            request_timeout=60,
        )
        return json.loads(resp.body)

    async def put(self, path: str, body: Any, token: str) -> Any:
        resp = await self.client.fetch(
            self.base + path,
            method="PUT",
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        return json.loads(resp.body)


async def offer(pc: RTCPeerConnection) -> dict[str, str]:
    ice.restrict(pc, LOOPBACK)
    await pc.setLocalDescription(await pc.createOffer())
    return {"sdp": pc.localDescription.sdp, "type": "offer"}


def prefer(transceiver: Any, codec: str) -> None:
    caps = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences(
        [c for c in caps if c.mimeType.lower() == f"video/{codec.lower()}"]
        + [c for c in caps if c.mimeType.lower() == "video/rtx"]
    )


async def publish(
    http: Http, path: str, track: MediaStreamTrack, codec: str, token: str | None = None
) -> RTCPeerConnection:
    pc = new_pc()
    prefer(pc.addTransceiver(track, direction="sendonly"), codec)
    answer = await http.post(path, await offer(pc), token)
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return pc


async def light_viewer(
    http: Http, path: str, token: str | None, kinds: tuple[str, ...] = ("video",)
) -> tuple[RTCPeerConnection, FrameCounter]:
    pc = new_pc()
    for kind in kinds:
        pc.addTransceiver(kind, direction="recvonly")
    answer = await http.post(path, await offer(pc), token)
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    counter = FrameCounter()
    dtls = pc.getTransceivers()[0].receiver.transport
    dtls._handle_rtp_data = counter.on_rtp  # type: ignore[method-assign]
    return pc, counter


class ClipTrack(MediaStreamTrack):
    """Loops pre-encoded payloads at a fixed rate: a publisher whose encoder costs nothing here.

    aiortc's sender packetizes an ``av.Packet`` without encoding it (as the server's passthrough
    does), so the client process spends its CPU on the viewers, not on a 1080p encoder.
    """

    def __init__(self, kind: str, payloads: list[bytes], rate: int, clock: int) -> None:
        super().__init__()
        self.kind = kind
        self.payloads, self.rate, self.clock = payloads, rate, clock
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.payloads[self._n % len(self.payloads)])
        packet.pts = self._n * (self.clock // self.rate)
        packet.time_base = fractions.Fraction(1, self.clock)
        self._n += 1
        return packet


SCREEN_FPS, CAMERA_FPS, CLIP_S = 30, 30, 4
SCREEN_BPS, CAMERA_BPS, OPUS_BPS = 3_000_000, 1_500_000, 48_000


def session_clips(codec: str) -> dict[str, list[bytes]]:
    """The realistic publisher's loops: 1080p text screen, 720p camera, Opus (cached on disk)."""
    frames = CLIP_S * SCREEN_FPS
    return {
        "screen": content.cached(
            f"screen-1080p-{codec}-{SCREEN_FPS}-{frames}-{SCREEN_BPS}-v1",
            lambda: content.encode_clip(
                content.ScreenSource(1920, 1080), codec, SCREEN_FPS, frames, SCREEN_BPS
            ),
        ),
        "camera": content.cached(
            f"camera-720p-{codec}-{CAMERA_FPS}-{frames}-{CAMERA_BPS}-v1",
            lambda: content.encode_clip(
                content.CameraSource(1280, 720), codec, CAMERA_FPS, frames, CAMERA_BPS
            ),
        ),
        "audio": content.cached(
            f"opus-{CLIP_S}-{OPUS_BPS}-v1", lambda: content.opus_clip(CLIP_S, OPUS_BPS)
        ),
    }


async def setup_session(http: Http, codec: str) -> tuple[list[RTCPeerConnection], Any]:
    """A broadcaster's session: screen + camera with audio, each viewer receiving all three."""
    clips = session_clips(codec)
    started = await http.post(
        f"{PREFIX}/session/start",
        token=await http.account(),
        body={
            "title": "bench session",
            "streams": ["screen", "camera"],
            "quality": {
                "screen": {"preset": "1080p", "fps": SCREEN_FPS},
                "camera": {"preset": "720p", "fps": CAMERA_FPS},
            },
        },
    )
    token = started["broadcaster_token"]
    session_id = started["session"]["id"]
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    screen = await publish(
        http,
        f"{PREFIX}/stream/{streams['screen']}/signal/offer",
        ClipTrack("video", clips["screen"], SCREEN_FPS, 90_000),
        codec,
        token,
    )
    camera_pc = new_pc()
    prefer(
        camera_pc.addTransceiver(
            ClipTrack("video", clips["camera"], CAMERA_FPS, 90_000), direction="sendonly"
        ),
        codec,
    )
    camera_pc.addTransceiver(ClipTrack("audio", clips["audio"], 50, 48_000), direction="sendonly")
    answer = await http.post(
        f"{PREFIX}/stream/{streams['camera']}/signal/offer", await offer(camera_pc), token
    )
    await camera_pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def add() -> list[tuple[RTCPeerConnection, FrameCounter]]:
        joined = await http.post(f"{PREFIX}/session/{session_id}/join", {})
        viewer = joined["viewer_token"]
        return [
            await light_viewer(http, f"{PREFIX}/stream/{streams['screen']}/signal/offer", viewer),
            await light_viewer(
                http,
                f"{PREFIX}/stream/{streams['camera']}/signal/offer",
                viewer,
                ("video", "audio"),
            ),
        ]

    return [screen, camera_pc], add


@dataclass
class Scenario:
    name: str
    impl: str
    codec: str
    source_fps: float
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    counters: list[FrameCounter] = field(default_factory=list)


async def setup_stream(http: Http, impl: str) -> tuple[list[RTCPeerConnection], Any]:
    """360p30 camera publisher; returns a coroutine factory adding one viewer."""
    track = PatternTrack("camera", 640, 360, 30)
    if impl == "relay":
        pub = await publish(http, "/publish", track, "VP8")

        async def add() -> tuple[RTCPeerConnection, FrameCounter]:
            return await light_viewer(http, "/view", None)

        return [pub], add
    started = await http.post(
        f"{PREFIX}/session/start",
        token=await http.account(),
        body={
            "title": "bench",
            "streams": ["camera"],
            "quality": {"camera": {"preset": "360p", "fps": 30}},
        },
    )
    token = started["broadcaster_token"]
    session_id = started["session"]["id"]
    stream_id = started["session"]["streams"][0]["id"]
    pub = await publish(http, f"{PREFIX}/stream/{stream_id}/signal/offer", track, "VP8", token)

    async def add_ours() -> tuple[RTCPeerConnection, FrameCounter]:
        joined = await http.post(f"{PREFIX}/session/{session_id}/join", {})
        return await light_viewer(
            http, f"{PREFIX}/stream/{stream_id}/signal/offer", joined["viewer_token"]
        )

    return [pub], add_ours


async def setup_composite(http: Http) -> tuple[list[RTCPeerConnection], Any]:
    """1080p15 screen + 720p30 camera; every viewer on one layout (bottom-right 25 %)."""
    started = await http.post(
        f"{PREFIX}/session/start",
        token=await http.account(),
        body={
            "title": "bench composite",
            "streams": ["screen", "camera"],
            "quality": {
                "screen": {"preset": "1080p", "fps": 15},
                "camera": {"preset": "720p", "fps": 30},
            },
        },
    )
    token = started["broadcaster_token"]
    session_id = started["session"]["id"]
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    pubs = [
        await publish(
            http,
            f"{PREFIX}/stream/{streams['screen']}/signal/offer",
            PatternTrack("screen", 1920, 1080, 15),
            "H264",
            token,
        ),
        await publish(
            http,
            f"{PREFIX}/stream/{streams['camera']}/signal/offer",
            PatternTrack("camera", 1280, 720, 30),
            "H264",
            token,
        ),
    ]

    async def add() -> tuple[RTCPeerConnection, FrameCounter]:
        joined = await http.post(f"{PREFIX}/session/{session_id}/join", {})
        await http.put(
            f"{PREFIX}/session/{session_id}/preferences",
            {
                "enabled_streams": ["screen", "camera"],
                "mode": "composite",
                "pip": {"corner": "bottom-right", "size_pct": 25},
            },
            joined["viewer_token"],
        )
        return await light_viewer(
            http, f"{PREFIX}/session/{session_id}/composite/signal/offer", joined["viewer_token"]
        )

    return pubs, add


async def sweep(
    name: str,
    impl: str,
    codec: str,
    levels: list[int],
    source_fps: float,
    settle_s: float,
    window_s: float,
) -> list[dict[str, Any]]:
    server = start_server(impl, codec, 500_000)
    me = psutil.Process()
    http = Http(server.base)
    rows: list[dict[str, Any]] = []
    pcs: list[RTCPeerConnection] = []
    viewers: list[list[FrameCounter]] = []  # per viewer: its connections' counters, video first
    try:
        if name.startswith("composite"):
            pubs, add = await setup_composite(http)
        elif name.startswith("session"):
            pubs, add = await setup_session(http, codec)
        else:
            pubs, add = await setup_stream(http, impl)
        await asyncio.sleep(1.5)
        for n in [0, *levels]:
            while len(viewers) < n:
                batch = min(10, n - len(viewers))
                for got in await asyncio.gather(*(add() for _ in range(batch))):
                    conns = got if isinstance(got, list) else [got]
                    pcs.extend(pc for pc, _ in conns)
                    viewers.append([counter for _, counter in conns])
            await asyncio.sleep(settle_s)
            counters = [c for v in viewers for c in v]
            frames0 = [v[0].frames for v in viewers]
            packets0 = [v[0].packets for v in viewers]
            all0 = sum(c.packets for c in counters)
            octets0 = sum(c.octets for c in counters)
            cpu0, mine0, t0 = server.cpu_s(), sum(me.cpu_times()[:2]), time.monotonic()
            await asyncio.sleep(window_s)
            dt = time.monotonic() - t0
            cpu = (server.cpu_s() - cpu0) / dt * 100
            mine = (sum(me.cpu_times()[:2]) - mine0) / dt * 100
            fps = [(v[0].frames - f0) / dt for v, f0 in zip(viewers, frames0, strict=True)]
            frames = sum(v[0].frames for v in viewers) - sum(frames0)
            video_packets = sum(v[0].packets for v in viewers) - sum(packets0)
            rows.append(
                {
                    "scenario": name,
                    "impl": impl,
                    "codec": codec,
                    "viewers": n,
                    "connections": len(counters),
                    "server_cpu_pct": round(cpu, 1),
                    "client_cpu_pct": round(mine, 1),
                    "fps_median": round(statistics.median(fps), 1) if fps else None,
                    "fps_p10": round(sorted(fps)[len(fps) // 10], 1) if fps else None,
                    "packets_per_s": round((sum(c.packets for c in counters) - all0) / dt),
                    "mbps": round((sum(c.octets for c in counters) - octets0) * 8 / dt / 1e6, 2),
                    "packets_per_frame": round(video_packets / frames, 2) if frames else None,
                    "source_fps": source_fps,
                    "viewer_frames_per_s": round(sum(fps), 1),
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                }
            )
            print(_row(rows[-1], rows[0], rows[-2] if len(rows) > 1 else None), flush=True)
    finally:
        for pc in pcs:
            await pc.close()
        for pub in locals().get("pubs", []):
            await pub.close()
        server.stop()
    return rows


def _per_viewer(row: dict[str, Any], idle: dict[str, Any]) -> float | None:
    if not row["viewers"]:
        return None
    return (row["server_cpu_pct"] - idle["server_cpu_pct"]) / row["viewers"]


def _marginal(row: dict[str, Any], prev: dict[str, Any] | None) -> float | None:
    """CPU % each viewer added since the previous level (the shared encoder is paid already)."""
    if prev is None or not prev["viewers"] or row["viewers"] <= prev["viewers"]:
        return None
    return (row["server_cpu_pct"] - prev["server_cpu_pct"]) / (row["viewers"] - prev["viewers"])


def _us_per_viewer_frame(row: dict[str, Any], idle: dict[str, Any]) -> float | None:
    """Server CPU (above the publisher-only idle) per frame delivered to one viewer, in µs.

    Robust to a busy machine: if the server or the clients are starved, fewer frames arrive and
    less CPU is spent, but the cost of each delivered frame stays what it is.
    """
    frames = row.get("viewer_frames_per_s") or 0
    if not row["viewers"] or frames <= 0:
        return None
    return (row["server_cpu_pct"] - idle["server_cpu_pct"]) / 100 / frames * 1e6


def _per_packet(row: dict[str, Any], idle: dict[str, Any]) -> dict[str, float | None]:
    """Server CPU above the publisher-only idle per forwarded packet, and what one core carries.

    Packets and bytes are counted where the viewers receive them (after SRTP), so a starved
    server that forwards less also spends less: the cost per packet stays what it is.
    """
    busy = (row["server_cpu_pct"] - idle["server_cpu_pct"]) / 100  # cores spent on fan-out
    if not row["viewers"] or busy <= 0 or not row["packets_per_s"]:
        return dict.fromkeys(
            ("us_per_packet", "packets_per_core_s", "mbps_per_core", "viewers_per_core")
        )
    return {
        "us_per_packet": round(busy / row["packets_per_s"] * 1e6, 1),
        "packets_per_core_s": round(row["packets_per_s"] / busy),
        "mbps_per_core": round(row["mbps"] / busy),
        "viewers_per_core": round(row["viewers"] / busy),
    }


def _row(row: dict[str, Any], idle: dict[str, Any], prev: dict[str, Any] | None = None) -> str:
    per = _per_viewer(row, idle)
    marg = _marginal(row, prev)
    cost = _us_per_viewer_frame(row, idle)
    row["cpu_pct_per_viewer"] = None if per is None else round(per, 3)
    row["marginal_cpu_pct_per_viewer"] = None if marg is None else round(marg, 3)
    row["us_per_viewer_frame"] = None if cost is None else round(cost, 1)
    row.update(_per_packet(row, idle))
    return render_row(row)


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render_row(row: dict[str, Any]) -> str:
    fps = "-" if row["fps_median"] is None else f"{row['fps_median']:.1f}/{row['fps_p10']:.1f}"
    return (
        f"| {label(row)} | {row['viewers']} | {row['server_cpu_pct']:.1f} | "
        f"{_f(row.get('mbps'), '.1f')} | {row['packets_per_s']} | "
        f"{_f(row.get('packets_per_frame'), '.1f')} | {_f(row.get('us_per_packet'), '.1f')} | "
        f"{_f(row.get('packets_per_core_s'), 'd')} | {_f(row.get('mbps_per_core'), 'd')} | "
        f"{_f(row.get('viewers_per_core'), 'd')} | {fps} | {row['client_cpu_pct']:.1f} | "
        f"{row['load_avg_1m']:.1f} |"
    )


LABELS = {
    ("session", "ours"): "session: 1080p30 text screen + 720p30 camera + Opus, passthrough",
    ("stream", "ours"): "360p30 pattern, ONE packet per frame, passthrough",
    ("stream", "ours-enc"): "360p30 pattern, one packet per frame, decode+encode once",
    ("stream", "relay"): "360p30 pattern, aiortc MediaRelay (re-encode per viewer)",
    ("composite", "ours"): "1080p composite, one layout (one x264 encoder)",
}


def label(row: dict[str, Any]) -> str:
    kind = row["scenario"].split()[0]
    return f"{LABELS.get((kind, row['impl']), row['scenario'])} ({row.get('codec', '')})"


HEADER = (
    "| scenario | N viewers | server CPU % | Mb/s out | packets/s out | packets/frame | "
    "µs CPU/packet | packets/s per core | Mb/s per core | viewers/core | fps median/p10 | "
    "client CPU % | load 1m |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


PLAN: dict[str, tuple[str, str, str, float]] = {
    # key: (scenario, impl, codec, source fps)
    "session": ("session 1080p+720p+opus", "ours", "VP8", 30.0),
    "stream": ("stream 360p30", "ours", "VP8", 30.0),
    "stream-enc": ("stream 360p30", "ours-enc", "H264", 30.0),
    "relay": ("stream 360p30", "relay", "VP8", 30.0),
    "composite": ("composite 1080p", "ours", "H264", 30.0),
}


def levels_for(key: str, quick: bool) -> list[int]:
    if os.environ.get("FANOUT_LEVELS"):
        return [int(n) for n in os.environ["FANOUT_LEVELS"].split(",")]
    full = {
        "session": [5, 10, 20, 40],
        "stream": [1, 10, 50, 100, 200],
        "stream-enc": [1, 10, 50, 100, 200],
        "relay": [1, 10, 25, 50],
        "composite": [1, 10, 50, 100],
    }
    quick_levels = {"session": [4, 12]}
    return quick_levels.get(key, [1, 10]) if quick else full[key]


async def run(quick: bool, only: str | None) -> list[dict[str, Any]]:
    print(HEADER)
    rows: list[dict[str, Any]] = []
    for key, (name, impl, codec, fps) in PLAN.items():
        if only and (
            key != only if only in PLAN else only not in (impl, f"{impl}:{name.split()[0]}")
        ):
            continue
        rows += await sweep(
            name,
            impl,
            codec,
            levels_for(key, quick),
            fps,
            settle_s=2.0 if quick else 3.0,
            window_s=3.0 if quick else 5.0,
        )
    return rows


@pytest.mark.parametrize("key", ["session", "stream", "relay", "composite"])
def test_fanout_capacity(benchmark: Any, key: str) -> None:
    """One quick sweep per scenario under pytest-benchmark; the figures land in `extra_info`."""
    rows = benchmark.pedantic(lambda: asyncio.run(run(True, key)), rounds=1, iterations=1)
    benchmark.group = "fan-out (server CPU per forwarded packet)"
    benchmark.extra_info["rows"] = rows
    assert rows[-1]["fps_median"] and rows[-1]["fps_median"] > 0
    if key == "session":
        assert rows[-1]["packets_per_frame"] > 1  # the point of this row: multi-packet frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        help="a plan key (session, stream, stream-enc, relay, composite), an impl (ours, "
        "ours-enc, relay), a scenario or both as impl:scenario",
    )
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    rows = asyncio.run(run(args.quick, args.only))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
