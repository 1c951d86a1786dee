"""Server CPU per forwarded packet with adaptive delivery on and off, side by side (loopback).

    .venv/bin/python -m bench.adaptive_cost [--viewers 20] [--rounds 2] [--window 10]
        [--baseline REF]

One aiortc publisher of the network lab's scrolling-text screen (1280x720, 30 fps, VP8, multi-packet
frames), forwarded (passthrough) to N light aiortc viewers that count RTP packets without decoding.
The server runs in its own process (`bench.fanout_server`), alternately with `MULTISTREAM_ADAPTIVE`
on and off (A B A B...), and the CPU it spends per packet its viewers received is reported for
each run. Light viewers send no receiver reports, so the adaptive server keeps every viewer on the
original: what is measured is the per-packet price of the machinery (pacing hook, RTCP hooks,
frame-time checks), not of a rung switch. Numbers are noisy on a shared machine: compare the
interleaved runs, not against other days.

`--baseline REF` also runs the server of git revision REF (its files exported to a temporary
directory, this tree's compiled extensions copied in) in every round, interleaved with this
tree's, and prints the ratios of the medians: a change to the send path measured against the
code before it, in the same minutes of the same machine. `--record` writes the runs, medians and
ratios to bench/adaptive_cost.json and re-renders bench/RESULTS.md ("Per-packet cost").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.bench_fanout import PREFIX, ROOT, Http, light_viewer, publish, start_server
from tests.netlab.content import ContentTrack


@contextlib.contextmanager
def exported(ref: str) -> Iterator[Path]:
    """Revision `ref` of this repository as a source tree in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="adaptive-cost-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for built in ROOT.glob("compositor/*.so"):
            shutil.copy2(built, Path(tmp) / "compositor" / built.name)
        yield Path(tmp)


async def one_run(
    adaptive: bool, viewers: int, window_s: float, root: Path = ROOT, tree: str = "this"
) -> dict[str, Any]:
    os.environ["MULTISTREAM_ADAPTIVE"] = "1" if adaptive else "0"
    server = start_server("ours", "VP8", 2_500_000, root)
    http = Http(server.base)
    pcs: list[Any] = []
    try:
        started = await http.post(
            f"{PREFIX}/session/start",
            {"title": "cost", "streams": ["screen"]},
            token=await http.account(),
        )
        stream_id = started["session"]["streams"][0]["id"]
        session_id = started["session"]["id"]
        pub = await publish(
            http,
            f"{PREFIX}/stream/{stream_id}/signal/offer",
            ContentTrack("screen"),
            "VP8",
            started["broadcaster_token"],
        )
        pcs.append(pub)
        await asyncio.sleep(2)
        counters = []
        for _ in range(viewers):
            joined = await http.post(f"{PREFIX}/session/{session_id}/join", {})
            pc, counter = await light_viewer(
                http, f"{PREFIX}/stream/{stream_id}/signal/offer", joined["viewer_token"]
            )
            pcs.append(pc)
            counters.append(counter)
        await asyncio.sleep(6)  # aiortc's publisher ramps its bitrate up first
        packets0 = sum(c.packets for c in counters)
        octets0 = sum(c.octets for c in counters)
        cpu0, t0 = server.cpu_s(), time.monotonic()
        await asyncio.sleep(window_s)
        dt = time.monotonic() - t0
        cpu = server.cpu_s() - cpu0
        packets = sum(c.packets for c in counters) - packets0
        octets = sum(c.octets for c in counters) - octets0
        return {
            "tree": tree,
            "adaptive": adaptive,
            "viewers": viewers,
            "packets_per_s": round(packets / dt),
            "mbps_per_viewer": round(octets * 8 / dt / viewers / 1e6, 2),
            "server_cpu_pct": round(cpu / dt * 100, 1),
            "us_per_packet": round(cpu / packets * 1e6, 2) if packets else None,
        }
    finally:
        for pc in pcs:
            await pc.close()
        server.stop()


async def run(
    viewers: int, rounds: int, window_s: float, baseline: str | None = None
) -> dict[str, Any]:
    """Interleaved runs; returns the rows, the median µs/packet per tree and adaptive on/off,
    and the ratios of those medians."""
    here = this_tree()
    with contextlib.ExitStack() as stack:
        trees = [(here, ROOT)]
        if baseline is not None:
            trees.append((baseline, stack.enter_context(exported(baseline))))
        rows = []
        for _ in range(rounds):
            for adaptive in (True, False):
                for tree, root in trees:
                    row = await one_run(adaptive, viewers, window_s, root, tree)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    medians: dict[str, dict[str, float]] = {}
    for tree, _root in trees:
        for adaptive in (True, False):
            costs = [
                r["us_per_packet"]
                for r in rows
                if r["tree"] == tree and r["adaptive"] is adaptive and r["us_per_packet"]
            ]
            if costs:
                side = "on" if adaptive else "off"
                medians.setdefault(tree, {})[side] = round(statistics.median(costs), 2)
                print(f"{tree} adaptive {side}: median {medians[tree][side]:.2f} us/packet")
    ratios: dict[str, float] = {}
    for (a_tree, a_side), (b_tree, b_side) in [
        ((here, "on"), (here, "off")),
        ((here, "on"), (baseline, "off")),
        ((here, "on"), (baseline, "on")),
        ((here, "off"), (baseline, "off")),
        ((baseline, "on"), (baseline, "off")),
    ]:
        a_cost = medians.get(a_tree or "", {}).get(a_side)
        b_cost = medians.get(b_tree or "", {}).get(b_side)
        if a_cost and b_cost:
            name = f"{a_tree} {a_side} / {b_tree} {b_side}"
            ratios[name] = round(a_cost / b_cost, 2)
            print(f"ratio {name}: {ratios[name]:.2f}")
    return {"rows": rows, "medians": medians, "ratios": ratios}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def this_tree() -> str:
    """This tree's name in the tables: its commit, marked when files differ from it."""
    return _git("rev-parse", "--short", "HEAD") + ("+" if _git("status", "--porcelain") else "")


def record(result: dict[str, Any], load_start: tuple[float, ...]) -> None:
    """Write the comparison to bench/adaptive_cost.json; re-render bench/RESULTS.md with it."""
    commit = this_tree()
    command = "python -m bench.adaptive_cost " + shlex.join(sys.argv[1:])
    report.PER_PACKET_JSON.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "commit": commit,
                "command": command,
                "load_start": [round(x, 2) for x in load_start],
                **result,
            },
            indent=1,
        )
        + "\n"
    )
    suite = json.loads((ROOT / "bench" / "results.json").read_text())
    (ROOT / "bench" / "RESULTS.md").write_text(report.render(suite, "bench/results.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window", type=float, default=10)
    parser.add_argument("--baseline", help="git revision to run side by side (e.g. main)")
    parser.add_argument(
        "--record", action="store_true", help="write bench/adaptive_cost.json and RESULTS.md"
    )
    ns = parser.parse_args()
    load_start = os.getloadavg()
    result = asyncio.run(run(ns.viewers, ns.rounds, ns.window, ns.baseline))
    if ns.record:
        record(result, load_start)


if __name__ == "__main__":
    main()
