"""Tests that need something from the machine (Chromium, root for namespaces, the MongoDB wire
server): they skip with the reason on a developer's machine, but CI sets `MULTISTREAM_REQUIRE_*`
so a missing dependency fails the run instead of silently skipping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def required(env: str) -> bool:
    return os.environ.get(env, "").strip().lower() in {"1", "true", "yes", "on"}


def unavailable(env: str, what: str, reason: str) -> None:
    """Skip, or fail when `env` says these tests must run."""
    if required(env):
        pytest.fail(f"{what} required ({env}=1) but cannot run: {reason}")
    pytest.skip(reason)


def mark_folder(items: list[pytest.Item], folder: Path, marker: pytest.MarkDecorator) -> None:
    """Put `marker` on every collected test that lives under `folder`."""
    for item in items:
        if folder in Path(str(item.fspath)).parents:
            item.add_marker(marker)
