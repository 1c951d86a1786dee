"""Time-to-video after an owner dies (SIGKILL) or drains (SIGTERM), with real processes.

Two `multistream serve` instances on loopback share one store (an SQLite file, or `--store` a
MongoDB URI); a session starts on A, an aiortc publisher signals to A and a viewer to B, both over
the signaling WebSocket and both reconnecting by themselves (`tests.cluster_helpers.Resilient`).
Then A is killed (or drained), and this prints the seconds from the signal to the viewer's first
frame on its new connection, per round, with the lease settings used (defaults unless given).

    .venv/bin/python -m bench.failover --rounds 3
    .venv/bin/python -m bench.failover --lease-ttl 3 --heartbeat 1 --mode kill
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

from server.settings import Settings
from tests.cluster_helpers import cluster, live_session
from tests.conftest import Client


async def one_round(tmp: Path, store: str | None, mode: str, env: dict[str, str]) -> float:
    with cluster(tmp, store, extra=env) as (a_proc, b_proc):
        a, b = Client(a_proc.base_url), Client(b_proc.base_url)
        _sid, publisher, viewer = await live_session(a, b, a_proc.base_url, b_proc.base_url)
        try:
            # Start the clock at a random point of the heartbeat cycle, as a real crash would.
            await asyncio.sleep(
                0.5 + (time.monotonic() % 1.0) * float(env["MULTISTREAM_LEASE_HEARTBEAT"])
            )
            t0 = time.monotonic()
            if mode == "kill":
                a_proc.proc.kill()
            else:
                a_proc.signal(signal.SIGTERM)
            back = await viewer.wait_connection(2, frames=True, timeout=120)
            return back - t0
        finally:
            await viewer.close()
            await publisher.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=("kill", "drain", "both"), default="both")
    parser.add_argument("--lease-ttl", type=float, default=Settings.lease_ttl_s)
    parser.add_argument("--heartbeat", type=float, default=Settings.lease_heartbeat_s)
    parser.add_argument("--store", default=None, help="a MongoDB URI (default: one SQLite file)")
    args = parser.parse_args()
    env = {
        "MULTISTREAM_LEASE_TTL": str(args.lease_ttl),
        "MULTISTREAM_LEASE_HEARTBEAT": str(args.heartbeat),
    }
    modes = ("kill", "drain") if args.mode == "both" else (args.mode,)
    results: dict[str, list[float]] = {}
    for mode in modes:
        for i in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
                ttv = await one_round(Path(tmp), args.store, mode, env)
            results.setdefault(mode, []).append(round(ttv, 3))
            print(f"{mode} round {i + 1}: viewer video back after {ttv:.3f} s", flush=True)
    summary = {
        "lease_ttl_s": args.lease_ttl,
        "heartbeat_s": args.heartbeat,
        **{
            mode: {"runs": v, "median": statistics.median(v), "max": max(v)}
            for mode, v in results.items()
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
