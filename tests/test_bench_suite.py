"""The benchmark suite is runnable as the README promises (``make bench``), and RESULTS.md is generated.

Before ``bench/conftest.py``, ``pytest bench --benchmark-only`` collected nothing: pytest's default
``test_*.py`` pattern skips ``bench_*.py``. These tests collect (not run) the suite, run one tiny
real benchmark through the report, and check the committed RESULTS.md is exactly what the report
renders from the committed JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import machine, report

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_every_benchmark_module_is_collected() -> None:
    done = _pytest("bench", "--benchmark-only", "--collect-only", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    files = {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}
    expected = {f"bench/{p.name}" for p in BENCH.glob("bench_*.py")}
    assert len(expected) >= 4
    assert files == expected


def test_naming_one_module_does_not_collect_it_twice() -> None:
    done = _pytest("bench/bench_store.py", "--benchmark-only", "--collect-only", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(ids) == len(set(ids)) == 2


def test_the_test_run_collects_no_benchmark() -> None:
    done = _pytest("--collect-only", "-q", "tests/test_pricing.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bench/" not in done.stdout


def test_a_real_run_renders_with_its_machine(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    done = _pytest(
        "bench/bench_compositor.py",
        "--benchmark-only",
        "-k",
        "pip-20pct-opaque and (ours or copy-floor or swscale)",
        "--benchmark-max-time=0.02",
        "--benchmark-min-rounds=3",
        f"--benchmark-json={out}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert all("data" not in b["stats"] for b in data["benchmarks"])  # samples dropped
    text = report.render(data, "run.json")
    assert machine.cpu_model() in text
    assert f"av {data['machine_info']['versions']['av']}" in text
    assert "aiortc" in text and "suite wall time" in text
    assert "| pip-20pct-opaque | ours |" in text


def test_results_md_is_generated_from_the_committed_json() -> None:
    results = BENCH / "results.json"
    if not results.exists():
        pytest.fail("bench/results.json is missing: run `make bench` and commit both files")
    rendered = report.render(json.loads(results.read_text()), "bench/results.json")
    assert (BENCH / "RESULTS.md").read_text() == rendered, (
        "RESULTS.md differs from what bench.report renders from bench/results.json: it was edited "
        "by hand or the report changed (re-render: python -m bench.report bench/results.json "
        "--out bench/RESULTS.md)"
    )
