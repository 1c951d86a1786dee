"""Run the compositor benchmark once and print one table of medians and ratios.

    .venv/bin/python -m bench.compositor_table            # ~1-2 minutes
    .venv/bin/python -m bench.compositor_table --rounds 3 # repeat the run, quote median of medians

For every case: each implementation's median, its ratio to the copy floor, its PSNR against an
exact box filter and whether it equals the reference bit for bit; then ``ours`` against the floor
and against the fastest *area-quality* library path (PSNR >= 45 dB, the quality swscale AREA
reaches; OpenCV INTER_LINEAR aliases and is listed but not counted as a peer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

LIBRARIES = ("swscale-area", "ffmpeg-graph", "opencv-area", "opencv-linear")
AREA_QUALITY_DB = 45.0


def run_once(json_path: Path, max_time: float) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(Path(__file__).with_name("bench_compositor.py")),
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-only",
        f"--benchmark-max-time={max_time}",
        "--benchmark-min-rounds=5",
        "--benchmark-warmup=on",
        "--benchmark-warmup-iterations=3",
        "--benchmark-disable-gc",
        f"--benchmark-json={json_path}",
    ]
    # One BLAS thread: numpy's OpenBLAS workers spin after the quality checks' matrix products
    # and would steal the second core from every implementation alike.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(done.returncode)


def collect(paths: list[Path]) -> dict[str, dict[str, dict[str, object]]]:
    """group -> impl -> {median_ms (median over runs), psnr, match}."""
    return collect_runs([json.loads(path.read_text())["benchmarks"] for path in paths])


def collect_runs(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, object]]]:
    """``collect`` over already-loaded runs; benchmarks of other modules are skipped."""
    medians: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    info: dict[str, dict[str, dict[str, object]]] = defaultdict(dict)
    for benchmarks in runs:
        for bench in benchmarks:
            if "bench_compositor.py::" not in bench["fullname"]:
                continue
            group, extra = bench["group"], bench["extra_info"]
            impl = extra["impl"]
            medians[group][impl].append(bench["stats"]["median"] * 1e3)
            info[group][impl] = extra
    table: dict[str, dict[str, dict[str, object]]] = {}
    for group, impls in medians.items():
        table[group] = {
            impl: {"median_ms": statistics.median(values), **info[group][impl]}
            for impl, values in impls.items()
        }
    return table


def render(table: dict[str, dict[str, dict[str, object]]], runs: int) -> str:
    lines = [
        f"compositor benchmark: medians over {runs} run(s), single thread, ms per frame",
        "",
        "| case | impl | median ms | x floor | PSNR vs box (dB) | = reference |",
        "| --- | --- | ---: | ---: | ---: | :---: |",
    ]
    summary = [
        "",
        "| case | ours ms | floor ms | ours / floor | best area library | its ms | library / ours |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for group in sorted(table):
        rows = table[group]
        floor = float(rows["copy-floor"]["median_ms"])  # type: ignore[arg-type]
        order = sorted(rows, key=lambda i: float(rows[i]["median_ms"]))  # type: ignore[arg-type]
        for impl in order:
            row = rows[impl]
            ms = float(row["median_ms"])  # type: ignore[arg-type]
            psnr = row.get("psnr_vs_box_db", "")
            match = row.get("matches_reference", "")
            match_s = "" if match == "" else ("yes" if match else "no")
            lines.append(f"| {group} | {impl} | {ms:.3f} | {ms / floor:.2f} | {psnr} | {match_s} |")
        ours = float(rows["ours"]["median_ms"])  # type: ignore[arg-type]
        peers = [
            i
            for i in LIBRARIES
            if i in rows and float(rows[i].get("psnr_vs_box_db", 0)) >= AREA_QUALITY_DB  # type: ignore[arg-type]
        ]
        best = min(peers, key=lambda i: float(rows[i]["median_ms"])) if peers else None  # type: ignore[arg-type]
        best_ms = float(rows[best]["median_ms"]) if best else float("nan")  # type: ignore[arg-type]
        summary.append(
            f"| {group} | {ours:.3f} | {floor:.3f} | {ours / floor:.2f} | {best} | "
            f"{best_ms:.3f} | {best_ms / ours:.2f} |"
        )
    return "\n".join(lines + summary)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="benchmark runs to take medians over")
    parser.add_argument("--max-time", type=float, default=0.15, help="seconds per benchmark")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.rounds):
            path = Path(tmp) / f"run{i}.json"
            run_once(path, args.max_time)
            paths.append(path)
        print(render(collect(paths), args.rounds))


if __name__ == "__main__":
    main()
