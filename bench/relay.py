"""What a relay costs: added latency per frame, and the owner's egress with 1, 2 and 3 instances.

Real `multistream serve` processes on loopback share one store (an SQLite file, or `--store` a
MongoDB URI), with relay on. An aiortc publisher sends a textured VP8 camera (several packets per
frame, `tests.relay_helpers.TexturedCamera`) to the owner A.

Latency: one light viewer is served by A, one by B through B's relay link (the assignment puts the
first on the empty B, the second on A). Each records when every frame's last packet arrived,
keyed by the frame's last bytes (the same payload, whichever instance forwarded it); the
difference B - A per frame is the relay's added latency, printed as median and p95 in ms and in
frame intervals.

Egress: for 1, 2 and 3 instances and N light viewers spread by the assignment (entering round-robin
through every instance, as a balancer without stickiness sends them), the owner's media bytes sent
per second (`multistream_media_bytes_sent_total`), the stream's own rate (one copy), and each
instance's CPU (cores, psutil) over the same window.

    .venv/bin/python -m bench.relay
    .venv/bin/python -m bench.relay --viewers 10 30 --window 4 --latency-s 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from tests.api_helpers import web_broadcaster
from tests.cluster_helpers import cluster
from tests.conftest import Client
from tests.media_helpers import join, publish, start_session
from tests.relay_helpers import RELAY_ENV, Light, TexturedCamera, light_viewer

FPS = 15


async def _metric(api: Client, name: str, labels: str) -> float:
    text = (await api.get("/metrics")).body.decode()
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def _sent(api: Client) -> dict[str, float]:
    name = "multistream_media_bytes_sent_total"
    return {to: await _metric(api, name, f'{{to="{to}"}}') for to in ("viewers", "relays")}


async def _session(a: Client) -> tuple[str, str, Any]:
    await web_broadcaster(a)
    started = await start_session(a, ("camera",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    camera = started["session"]["streams"][0]["id"]
    pub = await publish(a, token, camera, TexturedCamera(640, 360, FPS), codec="VP8")
    await asyncio.sleep(1.0)  # every instance has written its record
    return sid, camera, pub


async def _viewer(entry: Client, sid: str, camera: str, timed: bool = False) -> Light:
    joined = await join(entry, sid, {"enabled_streams": ["camera"], "mode": "separate"})
    light = await light_viewer(entry, joined["viewer_token"], camera)
    light.timed = timed
    return light


async def latency(tmp: Path, store: str | None, seconds: float) -> dict[str, Any]:
    with cluster(tmp, store, count=2, extra=RELAY_ENV) as procs:
        a, b = (Client(p.base_url) for p in procs)
        sid, camera, pub = await _session(a)
        lights: list[Light] = []
        try:
            lights.append(await _viewer(b, sid, camera, timed=True))
            lights.append(await _viewer(b, sid, camera, timed=True))
            served = [v.served_by for v in lights]
            assert served == ["inst-b", "inst-a"], served
            await asyncio.sleep(seconds)
            relayed, direct = lights
            common = relayed.arrivals.keys() & direct.arrivals.keys()
            diffs = sorted((relayed.arrivals[k] - direct.arrivals[k]) * 1000 for k in common)
            assert len(diffs) > seconds * FPS / 2, (len(diffs), relayed.frames, direct.frames)
            interval = 1000 / FPS
            p95 = diffs[int(0.95 * (len(diffs) - 1))]
            median = statistics.median(diffs)
            return {
                "frames_matched": len(diffs),
                "frames_direct": direct.frames,
                "frames_relayed": relayed.frames,
                "median_ms": round(median, 2),
                "p95_ms": round(p95, 2),
                "median_frames": round(median / interval, 3),
                "p95_frames": round(p95 / interval, 3),
                "frame_interval_ms": round(interval, 2),
            }
        finally:
            for v in lights:
                await v.pc.close()
            await pub.pc.close()


async def egress(
    tmp: Path, store: str | None, instances: int, viewers: int, window: float
) -> dict[str, Any]:
    with cluster(tmp, store, count=instances, extra=RELAY_ENV) as procs:
        apis = [Client(p.base_url) for p in procs]
        sid, camera, pub = await _session(apis[0])
        lights: list[Light] = []
        try:
            for i in range(viewers):
                lights.append(await _viewer(apis[i % instances], sid, camera))
            await asyncio.sleep(3.0)  # every viewer's first key frame has come and gone
            cpus = [psutil.Process(p.proc.pid) for p in procs]
            cpu0 = [sum(c.cpu_times()[:2]) for c in cpus]
            before = await _sent(apis[0])
            received0 = sum(v.octets for v in lights)
            t0 = time.monotonic()
            await asyncio.sleep(window)
            elapsed = time.monotonic() - t0
            after = await _sent(apis[0])
            received = sum(v.octets for v in lights) - received0
            cpu = [
                round((sum(c.cpu_times()[:2]) - c0) / elapsed, 3)
                for c, c0 in zip(cpus, cpu0, strict=True)
            ]
            to_viewers = (after["viewers"] - before["viewers"]) / elapsed
            to_relays = (after["relays"] - before["relays"]) / elapsed
            served = {f"inst-{n}": 0 for n in "abc"[:instances]}
            for v in lights:
                served[v.served_by] += 1
            own = served["inst-a"]
            copy = to_relays / (instances - 1) if instances > 1 else to_viewers / max(1, own)
            return {
                "instances": instances,
                "viewers": viewers,
                "served": served,
                "owner_egress_mbps": round((to_viewers + to_relays) * 8 / 1e6, 2),
                "one_copy_mbps": round(copy * 8 / 1e6, 3),
                "owner_egress_copies": round((to_viewers + to_relays) / copy, 2) if copy else None,
                "audience_received_mbps": round(received / elapsed * 8 / 1e6, 2),
                "frames_min": min(v.frames for v in lights),
                "cpu_cores": cpu,
            }
        finally:
            await asyncio.gather(*(v.pc.close() for v in lights), return_exceptions=True)
            await pub.pc.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--latency-s", type=float, default=20.0)
    parser.add_argument("--store", default=None, help="a MongoDB URI (default: one SQLite file)")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="relay-") as tmp:
        out["latency"] = await latency(Path(tmp) / "lat", args.store, args.latency_s)
    print("latency", json.dumps(out["latency"]), flush=True)
    rows = []
    for n in args.viewers:
        for instances in (1, 2, 3):
            with tempfile.TemporaryDirectory(prefix="relay-") as tmp:
                row = await egress(Path(tmp), args.store, instances, n, args.window)
            rows.append(row)
            print("egress", json.dumps(row), flush=True)
    out["egress"] = rows
    print()
    print(
        "| instances | viewers | served (a/b/c) | owner egress Mb/s | copies | one copy Mb/s |"
        " CPU cores per instance |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        served = "/".join(str(v) for v in r["served"].values())
        cpu = ", ".join(f"{c:.2f}" for c in r["cpu_cores"])
        print(
            f"| {r['instances']} | {r['viewers']} | {served} | {r['owner_egress_mbps']} | "
            f"{r['owner_egress_copies']} | {r['one_copy_mbps']} | {cpu} |"
        )
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
