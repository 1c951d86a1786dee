"""The composite as pytest-benchmarks: text readability per rung end to end, and the output budget.

    .venv/bin/python -m pytest bench/bench_composite.py --benchmark-only

Short runs of `bench.composite_e2e` (text PSNR per composite rung and the latency the composite
adds over passthrough, through a server process) and `bench.composite_budget` (N composite viewers
with random layouts, server CPU and encoders with the default budget vs unbounded). The timed call
is the whole run; the figures are in `extra_info` (and in RESULTS.md, `python -m bench.report`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench import bench_fanout as fan
from bench import composite_budget, composite_e2e


def test_composite_text_e2e(benchmark: Any) -> None:
    def run() -> list[composite_e2e.Row]:
        server = fan.start_server("ours", "H264,VP8", 2_500_000)
        try:
            return asyncio.run(composite_e2e.measure(server.base, settle_s=5.0, window_s=10.0))
        finally:
            server.stop()

    rows = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.group = "composite: text PSNR per rung and added latency, end to end"
    benchmark.extra_info["rows"] = [r.__dict__ for r in rows]
    assert all(r.fps > 0 for r in rows), rows


def test_composite_budget(benchmark: Any) -> None:
    rows = benchmark.pedantic(
        lambda: asyncio.run(composite_budget.run([5, 10, 20], 3.0, 4.0, seed=7)),
        rounds=1,
        iterations=1,
    )
    benchmark.group = "composite: output budget with random layouts"
    benchmark.extra_info["rows"] = [r.__dict__ for r in rows]
    assert all(r.fps_median > 0 for r in rows), rows
