"""The SQLite store's write tail as a pytest-benchmark: one short run of `bench.store_tail` each way.

    .venv/bin/python -m pytest bench/bench_store.py --benchmark-only

The timed call is a whole run of paced upserts; the figures that matter (p50/p99/p99.9 of the
per-call latency) are in `extra_info`. The longer, alternating comparison is
`python -m bench.store_tail`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import store_tail

WRITES = 1500
PAUSE_S = 0.0005


@pytest.mark.parametrize("checkpoints", ["background", "inline"])
def test_store_write_tail(benchmark: Any, checkpoints: str) -> None:
    latencies: list[float] = []

    def measure() -> None:
        latencies[:] = asyncio.run(
            store_tail.write_latencies(checkpoints == "background", WRITES, PAUSE_S)
        )

    benchmark.group = "SQLite store write tail"
    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "checkpoints": checkpoints,
            "writes": len(latencies),
            "p50_ms": round(store_tail.pct(latencies, 0.5), 3),
            "p99_ms": round(store_tail.pct(latencies, 0.99), 3),
            "p999_ms": round(store_tail.pct(latencies, 0.999), 2),
            "max_ms": round(max(latencies) * 1000, 2),
        }
    )
    assert len(latencies) == WRITES
