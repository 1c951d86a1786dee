"""The control-plane load benchmark as a pytest-benchmark: one short round of `bench.api_load`.

    .venv/bin/python -m pytest bench/bench_api.py --benchmark-json=api.json

A load test is not a micro-benchmark: the timed call is a whole measured window (closed loop, then
open loop at half the rate the closed loop sustained), and the figures that matter -- requests/s,
p50/p99, server CPU per request and the ratios to the bare Tornado handler measured in the same
run -- are in each benchmark's `extra_info`. The full table with repeats is
`python -m bench.api_load`.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from bench import api_load
from bench.broadcaster import cli_token

WARMUP_S = 0.3
DURATION_S = 1.5
CONNS = 16


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, api_load.Target]]:
    """The real app and the bare handler, pinned to CPU 0; this process moves to CPU 1."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="multistream-bench-")))
        app = stack.enter_context(api_load.app_server(tmp / "app"))
        bare = stack.enter_context(api_load.bare_server(tmp / "bare"))
        fixture = api_load.make_fixture(app.port, cli_token(tmp / "app" / "data"))
        found = {t.name: t for t in [api_load.bare_target(bare, fixture)]}
        found.update({t.name: t for t in api_load.app_targets(app, fixture)})
        previous = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        api_load._pin(api_load.CLIENT_CPU)
        try:
            yield found
        finally:
            if previous is not None:
                os.sched_setaffinity(0, previous)


@pytest.fixture(scope="module")
def bare_phase(targets: dict[str, api_load.Target]) -> api_load.Phase:
    """The yardstick, measured once at the start of the module's run."""
    return _closed(targets["bare"])


def _closed(target: api_load.Target) -> api_load.Phase:
    return asyncio.run(
        api_load.closed_loop(
            target.server.port,
            target.requests,
            conns=CONNS,
            warmup_s=WARMUP_S,
            duration_s=DURATION_S,
            server=target.server,
        )
    )


def _opened(target: api_load.Target, rate: float) -> api_load.Phase:
    return asyncio.run(
        api_load.open_loop(
            target.server.port,
            target.requests,
            rate=rate,
            conns=CONNS,
            warmup_s=WARMUP_S,
            duration_s=DURATION_S,
            server=target.server,
        )
    )


@pytest.mark.parametrize("name", ["bare", "status", "prefs PUT", "join"])
def test_api_load(
    benchmark: Any,
    targets: dict[str, api_load.Target],
    bare_phase: api_load.Phase,
    name: str,
) -> None:
    target = targets[name]
    phases: dict[str, api_load.Phase] = {}

    def measure() -> None:
        phases["closed"] = bare_phase if name == "bare" else _closed(target)
        phases["open"] = _opened(target, max(20.0, phases["closed"].rps / 2))

    benchmark.group = "control plane under load (SQLite)"
    benchmark.pedantic(measure, rounds=1, iterations=1)
    closed, opened = phases["closed"], phases["open"]
    rate = max(20.0, closed.rps / 2)
    benchmark.extra_info.update(
        {
            "conns": CONNS,
            "rps": round(closed.rps, 1),
            "ratio_vs_bare": round(closed.rps / bare_phase.rps, 3),
            "p50_ms": round(closed.percentile(0.50), 2),
            "p99_ms": round(closed.percentile(0.99), 2),
            "open_rate": round(rate, 1),
            "open_p50_ms": round(opened.percentile(0.50), 2),
            "open_p99_ms": round(opened.percentile(0.99), 2),
            "open_saturated": opened.saturated,
            "server_cpu_us_per_req": round(closed.cpu_us_per_request, 1),
            "cpu_ratio_vs_bare": round(
                bare_phase.cpu_us_per_request / closed.cpu_us_per_request, 3
            ),
        }
    )
    # Every answer was a 2xx: the load measured real work, not fast error paths.
    assert closed.requests > 0 and closed.errors == 0
    assert opened.errors == 0
