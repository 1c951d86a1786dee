"""The SQLite store's write tail, with WAL checkpoints on the checkpointer's thread vs in commits.

    .venv/bin/python -m bench.store_tail            # both, alternating, about 20 s

Each run upserts preference-sized documents through `SqliteStore` at a steady pace (a pause after
each write, as a server at part load leaves gaps) and records every call's latency as its awaiting
caller sees it. `inline` is SQLite's default: the commit that takes the WAL past 1000 pages copies
and fsyncs it while every call queued behind it waits. `background` is the store's default: PASSIVE
checkpoints on their own thread (`store._checkpointer`). Runs alternate, so a burst of other work on
this shared machine lands on both; compare the columns side by side, not with other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from store.sqlite import SqliteStore


async def write_latencies(background: bool, writes: int, pause_s: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="multistream-store-tail-") as tmp:
        store = SqliteStore(Path(tmp) / "s.sqlite3", background_checkpoints=background)
        await store.open()
        out = []
        try:
            for i in range(writes):
                doc = {
                    "id": f"ses:{i % 300}",
                    "session_id": "ses",
                    "viewer_id": f"vwr{i % 300}",
                    "enabled_streams": ["screen", "camera"][: 1 + i % 2],
                    "mode": "composite" if i % 2 else "separate",
                    "pip": {"corner": "top-left", "size_pct": 10 + i % 31},
                    "updated_at": f"2026-01-01T00:00:00.{i:06d}Z",
                    "replay_on": None,
                }
                t0 = time.perf_counter()
                await store.upsert("viewer_preferences", doc)
                out.append(time.perf_counter() - t0)
                await asyncio.sleep(pause_s)
        finally:
            await store.close()
        return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--pause", type=float, default=0.0005, help="seconds after each write")
    parser.add_argument("--runs", type=int, default=2, help="runs of each, alternating")
    args = parser.parse_args(argv)
    results: dict[str, list[list[float]]] = {"inline": [], "background": []}
    for _ in range(args.runs):
        for name in results:
            results[name].append(
                asyncio.run(write_latencies(name == "background", args.writes, args.pause))
            )
    print("| checkpoints | p50 ms | p99 ms | p99.9 ms | max ms | calls > 5 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, runs in results.items():
        med = statistics.median
        print(
            f"| {name} | {med(pct(r, 0.5) for r in runs):.3f} | {med(pct(r, 0.99) for r in runs):.3f}"
            f" | {med(pct(r, 0.999) for r in runs):.2f} | {med(max(r) * 1000 for r in runs):.2f}"
            f" | {med(sum(x > 0.005 for x in r) for r in runs):.0f} |"
        )
    print(f"\n{args.runs} run(s) of {args.writes} writes each, medians over runs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
