"""What a benchmark ran on: CPU model and cores, versions of what is measured, load, commit.

Timing on the shared 2-vCPU development machine swings with other work, so every result file says
where and under what load it was taken (``machine_info`` in the pytest-benchmark JSON).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(wanted: tuple[str, ...] = ("sse4_2", "avx2", "avx512f", "avx512bw")) -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3  # type: ignore[return-value]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _compositor_simd() -> str:
    try:
        from compositor import _fast

        return f"fast ({_fast.SIMD})"
    except ImportError:
        return "reference (extension not built)"


def describe() -> dict[str, Any]:
    import av

    ffmpeg = av.library_versions.get("libavcodec")
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in (
                "av",
                "aiortc",
                "numpy",
                "tornado",
                "opencv-python-headless",
                "pytest-benchmark",
            )
        },
        "libavcodec": ".".join(map(str, ffmpeg)) if ffmpeg else None,
        "compositor": _compositor_simd(),
        "commit": None if commit is None else commit + ("-dirty" if dirty else ""),
    }
