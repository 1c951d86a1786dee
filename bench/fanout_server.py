"""Server process for the fan-out benchmark: ours (the real app) or aiortc's `MediaRelay` baseline.

Run by `bench/bench_fanout.py` in its own process so that its CPU time is the server's alone.
Prints `PORT <n>` once listening; exits on SIGTERM.

- `--impl ours`: the multistream app as `multistream serve` builds it (loopback ICE, no recording).
- `--impl relay`: the naive aiortc server — one publisher track, `MediaRelay().subscribe()` per
  viewer, so every viewer's `RTCRtpSender` encodes the decoded frames itself. Endpoints:
  `POST /publish` and `POST /view` with `{"sdp", "type"}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from server.media import ice
from server.settings import Secret, Settings


def bench_settings(data_dir: Path, codec: str, bitrate: int, passthrough: bool) -> Settings:
    return Settings(
        passthrough=passthrough,
        data_dir=data_dir,
        token_secret=Secret("bench-secret-" + "x" * 32),
        ice_hosts=("127.0.0.1",),
        ice_servers=(),
        record=False,
        video_codecs=tuple(codec.split(",")),  # "H264" or a preference list "H264,VP8"
        camera_bitrate_bps=bitrate,
        screen_bitrate_bps=max(bitrate, 2_500_000),
        instance_id="bench",
        # All viewers come from loopback at once: a capacity run, not a test of the limits.
        rate_offer=(1_000_000, 1_000_000),
        rate_join=(1_000_000, 1_000_000),
        max_pending_peers=100_000,
        # The adaptive-delivery cost comparison (bench.adaptive_cost) runs the server both ways.
        adaptive=os.environ.get("MULTISTREAM_ADAPTIVE", "1") != "0",
        # The composite-budget benchmark (bench.composite_budget) runs it bounded and unbounded.
        **{
            field: int(os.environ[name])
            for field, name in (
                ("composite_budget", "MULTISTREAM_COMPOSITE_BUDGET"),
                ("composite_budget_session", "MULTISTREAM_COMPOSITE_BUDGET_SESSION"),
            )
            if os.environ.get(name)
        },
    )


class _RelayState:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.source: Any = None
        self.pcs: set[RTCPeerConnection] = set()


class _RelayHandler(tornado.web.RequestHandler):
    def initialize(self, state: _RelayState, role: str) -> None:
        self.state = state
        self.role = role

    async def post(self) -> None:
        body = json.loads(self.request.body)
        pc = RTCPeerConnection(ice.configuration(()))
        self.state.pcs.add(pc)
        if self.role == "publish":

            @pc.on("track")
            def on_track(track: Any) -> None:
                if track.kind == "video":
                    self.state.source = track

            await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
        else:
            await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
            for t in pc.getTransceivers():
                if t.kind == "video":
                    t.sender.replaceTrack(self.state.relay.subscribe(self.state.source))
                    t.direction = "sendonly"
        ice.restrict(pc, ("127.0.0.1",))
        await pc.setLocalDescription(await pc.createAnswer())
        self.finish({"sdp": pc.localDescription.sdp, "type": "answer"})


async def run_relay(port: int, bitrate: int) -> None:
    # The baseline keeps aiortc's own encoders; start them at the same bitrate as ours.
    from aiortc.codecs import vpx

    vpx.DEFAULT_BITRATE = bitrate  # type: ignore[attr-defined]
    state = _RelayState()
    app = tornado.web.Application(
        [
            (r"/publish", _RelayHandler, {"state": state, "role": "publish"}),
            (r"/view", _RelayHandler, {"state": state, "role": "view"}),
        ]
    )
    server = tornado.httpserver.HTTPServer(app)
    print(f"PORT {_listen(server, port)}", flush=True)
    await _until_signal()
    for pc in list(state.pcs):
        await pc.close()


def _listen(server: tornado.httpserver.HTTPServer, port: int) -> int:
    """Listen on loopback; the port bound, through Tornado's public socket API."""
    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
    server.add_sockets(sockets)
    return int(sockets[0].getsockname()[1])


async def run_ours(port: int, codec: str, bitrate: int, passthrough: bool) -> None:
    from multistream.app import make_app
    from server.lifespan import open_services

    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp), codec, bitrate, passthrough)
        async with open_services(settings) as services:
            app = make_app(settings, services)
            server = tornado.httpserver.HTTPServer(app)
            print(f"PORT {_listen(server, port)}", flush=True)
            log_to = os.environ.get("FANOUT_COUNTERS")
            task = asyncio.create_task(_log_counters(services.media, log_to)) if log_to else None
            await _until_signal()
            if task is not None:
                task.cancel()
            server.stop()


async def _log_counters(media: Any, path: str) -> None:
    """Append the media plane's counters every 2 s (diagnosing where frames go under load)."""
    with open(path, "a") as fh:
        while True:
            await asyncio.sleep(2)
            fh.write(json.dumps({"t": round(time.monotonic(), 1), **media.counters()}) + "\n")
            fh.flush()


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("ours", "relay"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--codec", default="VP8")
    parser.add_argument("--bitrate", type=int, default=500_000)
    parser.add_argument("--no-passthrough", action="store_true")
    parser.add_argument("--profile", help="write a cProfile of the whole run here")
    args = parser.parse_args()
    if os.environ.get("FANOUT_SERVER_LOG"):
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("aioice").setLevel(logging.WARNING)
        logging.getLogger("tornado.access").setLevel(logging.WARNING)
    if args.impl == "relay":
        coro = run_relay(args.port, args.bitrate)
    else:
        coro = run_ours(args.port, args.codec, args.bitrate, not args.no_passthrough)
    if args.profile:
        import cProfile

        cProfile.runctx(
            "asyncio.run(coro)", globals(), {"coro": coro, "asyncio": asyncio}, args.profile
        )
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
