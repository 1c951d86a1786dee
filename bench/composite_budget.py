"""Composite viewers with random layouts: server CPU and composite encoders, budget vs no budget.

    .venv/bin/python -m bench.composite_budget                 # N = 5, 10, 20, 40 (~3 min)
    .venv/bin/python -m bench.composite_budget --levels 5,10   # shorter
    .venv/bin/python -m pytest bench/bench_composite.py --benchmark-only

One session (1080p text screen at 15 fps, content hint `text`, and a 720p30 camera, published from
pre-encoded H.264 loops so the publisher costs this process nothing) and N composite viewers, each
with a random layout (one of the four corners or `auto`, a size from 10 to 40 %). Each viewer is a
light aiortc peer (RTP counted, not decoded). The server runs in its own process; its CPU is sampled
over a window at each N, with the composite encoders and layouts it runs (`/metrics`).

Two servers side by side: **budget** (the default: `MULTISTREAM_COMPOSITE_BUDGET` = 4 per core,
half of it per session) and **unbounded** (a budget no session reaches: every distinct layout gets
its own compositor and encoder, as before the planner). The machine is shared: compare the two
columns of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import tornado.httpclient

from bench import bench_fanout as fan

PREFIX = fan.PREFIX
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right", "auto")
UNBOUNDED = 10_000


@dataclass
class Level:
    mode: str
    viewers: int
    server_cpu_pct: float
    composite_encoders: int
    composite_layouts: int
    substitutions: int
    over_budget: int
    fps_median: float
    fps_min: float
    distinct_layouts: int
    silent: int = 0  # viewers that received no frame in the window
    encoded_per_s: float = 0.0  # frames the server's encoders made per second (all encoders)


async def _metrics(base: str) -> dict[str, float]:
    resp = await tornado.httpclient.AsyncHTTPClient().fetch(base + "/metrics")
    out: dict[str, float] = {}
    for line in resp.body.decode().splitlines():
        if line.startswith("multistream_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def _session(http: fan.Http) -> tuple[list[Any], str]:
    clips = fan.session_clips("H264")
    started = await http.post(
        f"{PREFIX}/session/start",
        {
            "title": "bench composite budget",
            "streams": ["screen", "camera"],
            "quality": {
                "screen": {"preset": "1080p", "fps": 15, "content_hint": "text"},
                "camera": {"preset": "720p", "fps": 30},
            },
        },
        token=await http.account(),
    )
    token, session_id = started["broadcaster_token"], started["session"]["id"]
    streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
    pcs = [
        await fan.publish(
            http,
            f"{PREFIX}/stream/{streams[kind]}/signal/offer",
            fan.ClipTrack("video", clips[kind], 30, 90_000),
            "H264",
            token,
        )
        for kind in ("screen", "camera")
    ]
    return pcs, session_id


async def run_mode(
    mode: str, levels: list[int], settle_s: float, window_s: float, seed: int
) -> list[Level]:
    budget = (
        {}
        if mode == "budget"
        else {
            "MULTISTREAM_COMPOSITE_BUDGET": str(UNBOUNDED),
            "MULTISTREAM_COMPOSITE_BUDGET_SESSION": str(UNBOUNDED),
        }
    )
    saved = {k: os.environ.get(k) for k in budget}
    os.environ.update(budget)
    try:
        server = fan.start_server("ours", "H264", 1_200_000)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    http = fan.Http(server.base)
    rng = random.Random(seed)
    pcs: list[Any] = []
    counters: list[fan.FrameCounter] = []
    layouts: set[tuple[str, int]] = set()
    rows: list[Level] = []
    try:
        pubs, session_id = await _session(http)
        pcs += pubs
        await asyncio.sleep(1.5)

        async def add() -> None:
            joined = await http.post(f"{PREFIX}/session/{session_id}/join", {})
            pip = {"corner": rng.choice(CORNERS), "size_pct": rng.randint(10, 40)}
            layouts.add((pip["corner"], pip["size_pct"]))
            await http.put(
                f"{PREFIX}/session/{session_id}/preferences",
                {"enabled_streams": ["screen", "camera"], "mode": "composite", "pip": pip},
                joined["viewer_token"],
            )
            pc, counter = await fan.light_viewer(
                http,
                f"{PREFIX}/session/{session_id}/composite/signal/offer",
                joined["viewer_token"],
            )
            pcs.append(pc)
            counters.append(counter)

        for n in levels:
            while len(counters) < n:
                await asyncio.gather(*(add() for _ in range(min(5, n - len(counters)))))
            await asyncio.sleep(settle_s)
            frames0 = [c.frames for c in counters]
            encoded0 = (await _metrics(server.base)).get("multistream_frames_encoded_total", 0)
            cpu0, t0 = server.cpu_s(), time.monotonic()
            await asyncio.sleep(window_s)
            dt = time.monotonic() - t0
            cpu = (server.cpu_s() - cpu0) / dt * 100
            fps = [(c.frames - f0) / dt for c, f0 in zip(counters, frames0, strict=True)]
            m = await _metrics(server.base)
            rows.append(
                Level(
                    mode,
                    n,
                    round(cpu, 1),
                    int(m.get("multistream_composite_encoders_running", 0)),
                    int(m.get("multistream_composite_layouts", 0)),
                    int(m.get("multistream_composite_substitutions_total", 0)),
                    int(m.get("multistream_composite_over_budget_total", 0)),
                    round(statistics.median(fps), 1),
                    round(min(fps), 1),
                    len(layouts),
                    sum(1 for f in fps if f == 0),
                    round((m.get("multistream_frames_encoded_total", 0) - encoded0) / dt, 1),
                )
            )
            print(render_row(rows[-1]), flush=True)
    finally:
        for pc in pcs:
            await pc.close()
        server.stop()
    return rows


HEADER = (
    "| server | composite viewers | distinct layouts asked | composite encoders | layouts running "
    "| viewers given a nearest layout (total) | frames encoded/s | server CPU % of a core "
    "| viewer fps median / min | viewers with no frame |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def render_row(r: Level | dict[str, Any]) -> str:
    d = r if isinstance(r, dict) else r.__dict__
    return (
        f"| {d['mode']} | {d['viewers']} | {d['distinct_layouts']} | {d['composite_encoders']} | "
        f"{d['composite_layouts']} | {d['substitutions']} | {d.get('encoded_per_s', '-')} | "
        f"{d['server_cpu_pct']} | "
        f"{d['fps_median']} / {d['fps_min']} | {d.get('silent', 0)} |"
    )


async def run(levels: list[int], settle_s: float, window_s: float, seed: int) -> list[Level]:
    rows = []
    for mode in ("budget", "unbounded"):
        rows += await run_mode(mode, levels, settle_s, window_s, seed)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="5,10,20,40")
    parser.add_argument("--settle", type=float, default=4.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    print(
        f"{os.cpu_count()} cores; default budget {4 * (os.cpu_count() or 1)} composite encoders "
        f"per instance, half per session; same random layouts (seed {args.seed}) for both\n"
    )
    print(HEADER, flush=True)
    asyncio.run(run(levels, args.settle, args.window, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
