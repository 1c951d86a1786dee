"""pytest configuration of the benchmark suite (``make bench``; ``pytest bench --benchmark-only``).

Benchmark modules are named ``bench_*.py`` so the test run (``testpaths = ["tests"]``, default
``test_*.py`` pattern) never collects them; this hook collects them when pytest is pointed at
``bench/``. Every run also records the machine it ran on (CPU model, cores, library versions,
load) in the JSON's ``machine_info``, which ``python -m bench.report`` turns into RESULTS.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bench import machine

_STARTED = time.time()
_LOAD_AT_START = machine.load_average()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # Paths named on the command line are collected by pytest itself, whatever their name.
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    machine_info.update(machine.describe())
    machine_info["load_avg_start"] = [round(x, 2) for x in _LOAD_AT_START]


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    # Keep the file small enough to commit: the per-round samples go, the statistics stay (all
    # that `pytest-benchmark compare` and bench.report read).
    for bench in output_json["benchmarks"]:
        bench["stats"].pop("data", None)
    output_json["suite"] = {
        "wall_s": round(time.time() - _STARTED, 1),
        "load_avg_end": [round(x, 2) for x in machine.load_average()],
        "args": list(config.invocation_params.args),
    }
