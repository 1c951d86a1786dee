"""Fan-out capacity: one publisher, N loopback viewers; server CPU per viewer and delivered fps.

Compares, in one run, the multistream media plane (encode once, packets fanned out) with the naive
aiortc server (`MediaRelay`, every viewer's sender re-encodes), for a 360p30 stream, and measures
the 1080p composite feed of the media plane (one layout shared by all viewers).

    .venv/bin/python -m bench.bench_fanout                 # full table (a few minutes)
    .venv/bin/python -m bench.bench_fanout --quick         # small N only
    .venv/bin/python -m pytest bench/bench_fanout.py       # the quick sweep as a pytest-benchmark

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
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import tornado.httpclient
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

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


def start_server(impl: str, codec: str, bitrate: int) -> Server:
    """`impl`: "relay", "ours" (passthrough on) or "ours-enc" (every output encoded once)."""
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
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=open(os.environ["FANOUT_SERVER_LOG"], "a")  # noqa: SIM115
        if os.environ.get("FANOUT_SERVER_LOG")
        else subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
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
    http: Http, path: str, token: str | None
) -> tuple[RTCPeerConnection, FrameCounter]:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    answer = await http.post(path, await offer(pc), token)
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    counter = FrameCounter()
    dtls = pc.getTransceivers()[0].receiver.transport
    dtls._handle_rtp_data = counter.on_rtp  # type: ignore[method-assign]
    return pc, counter


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
        {
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
        {
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
    counters: list[FrameCounter] = []
    try:
        if name.startswith("composite"):
            pubs, add = await setup_composite(http)
        else:
            pubs, add = await setup_stream(http, impl)
        await asyncio.sleep(1.5)
        for n in [0, *levels]:
            while len(pcs) < n:
                batch = min(10, n - len(pcs))
                for pc, counter in await asyncio.gather(*(add() for _ in range(batch))):
                    pcs.append(pc)
                    counters.append(counter)
            await asyncio.sleep(settle_s)
            frames0 = [c.frames for c in counters]
            packets0 = sum(c.packets for c in counters)
            cpu0, mine0, t0 = server.cpu_s(), sum(me.cpu_times()[:2]), time.monotonic()
            await asyncio.sleep(window_s)
            dt = time.monotonic() - t0
            cpu = (server.cpu_s() - cpu0) / dt * 100
            mine = (sum(me.cpu_times()[:2]) - mine0) / dt * 100
            fps = [(c.frames - f0) / dt for c, f0 in zip(counters, frames0, strict=True)]
            rows.append(
                {
                    "scenario": name,
                    "impl": impl,
                    "viewers": n,
                    "server_cpu_pct": round(cpu, 1),
                    "client_cpu_pct": round(mine, 1),
                    "fps_median": round(statistics.median(fps), 1) if fps else None,
                    "fps_p10": round(sorted(fps)[len(fps) // 10], 1) if fps else None,
                    "packets_per_s": round((sum(c.packets for c in counters) - packets0) / dt),
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


def _row(row: dict[str, Any], idle: dict[str, Any], prev: dict[str, Any] | None = None) -> str:
    per = _per_viewer(row, idle)
    marg = _marginal(row, prev)
    cost = _us_per_viewer_frame(row, idle)
    row["cpu_pct_per_viewer"] = None if per is None else round(per, 3)
    row["marginal_cpu_pct_per_viewer"] = None if marg is None else round(marg, 3)
    row["us_per_viewer_frame"] = None if cost is None else round(cost, 1)
    # Viewers one core could serve at the source frame rate, at this measured per-frame cost.
    at_rate = 1e6 / (cost * row["source_fps"]) if cost and cost > 0 else None
    row["viewers_per_core_at_source_fps"] = None if at_rate is None else round(at_rate)
    per_s = f"{per:6.2f}" if per is not None else "     -"
    cost_s = f"{cost:7.1f}" if cost is not None else "      -"
    core_s = f"{at_rate:7.0f}" if at_rate is not None else "      -"
    fps = "-" if row["fps_median"] is None else f"{row['fps_median']:5.1f}/{row['fps_p10']:5.1f}"
    return (
        f"| {row['scenario']:<15} | {row['impl']:<8} | {row['viewers']:>4} | "
        f"{row['server_cpu_pct']:6.1f} | {per_s} | {cost_s} | {core_s} | {fps:>11} | "
        f"{row['client_cpu_pct']:6.1f} | {row['load_avg_1m']:5.1f} |"
    )


HEADER = (
    "| scenario | impl | N | server CPU % | CPU %/viewer | µs CPU/viewer-frame | viewers/core "
    "@source fps | fps median/p10 | client CPU % | load 1m |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


async def run(quick: bool, only: str | None) -> list[dict[str, Any]]:
    print(HEADER)
    rows: list[dict[str, Any]] = []
    ours_levels = [1, 10] if quick else [1, 10, 50, 100, 200]
    if os.environ.get("FANOUT_LEVELS"):
        ours_levels = [int(n) for n in os.environ["FANOUT_LEVELS"].split(",")]
    relay_levels = [1, 10] if quick else [1, 10, 25, 50]
    comp_levels = [1, 10] if quick else [1, 10, 50, 100]
    plan = [
        ("stream 360p30", "ours", "VP8", ours_levels, 30.0),
        ("stream 360p30", "ours-enc", "H264", ours_levels, 30.0),
        ("stream 360p30", "relay", "VP8", relay_levels, 30.0),
        ("composite 1080p", "ours", "H264", comp_levels, 30.0),
    ]
    for name, impl, codec, levels, fps in plan:
        if only and only not in (impl, name.split()[0], f"{impl}:{name.split()[0]}"):
            continue
        rows += await sweep(
            name,
            impl,
            codec,
            levels,
            fps,
            settle_s=2.0 if quick else 3.0,
            window_s=3.0 if quick else 5.0,
        )
    return rows


def test_fanout_capacity(benchmark: Any) -> None:
    """The quick sweep under pytest-benchmark; the figures land in `extra_info`."""
    rows = benchmark.pedantic(lambda: asyncio.run(run(True, None)), rounds=1, iterations=1)
    benchmark.extra_info["rows"] = rows
    ours = [r for r in rows if r["impl"] == "ours" and r["scenario"].startswith("stream")]
    assert ours[-1]["fps_median"] and ours[-1]["fps_median"] > 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        help="an impl (ours, ours-enc, relay), a scenario (stream, composite) or both "
        "as impl:scenario",
    )
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    rows = asyncio.run(run(args.quick, args.only))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
