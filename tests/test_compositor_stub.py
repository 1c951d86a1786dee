"""The compiled kernels' type stub (``compositor/_fast.pyi``) matches the module and mypy uses it.

Without the stub mypy sees ``compositor._fast`` as an untyped import (``ignore_missing_imports``)
and checks nothing about how the frames API calls the kernels.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWLIST = Path(__file__).with_name("compositor_stubtest_allowlist.txt")


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_stub_matches_the_compiled_module() -> None:
    pytest.importorskip("compositor._fast", reason="compositor._fast is not built")
    done = _run("mypy.stubtest", "compositor._fast", "--allowlist", str(ALLOWLIST))
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_checks_calls_into_the_extension_through_the_stub(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "import numpy as np\n"
        "from compositor import _fast\n"
        "_fast.corner_scores(np.zeros((4, 4), np.uint8), np.zeros((1, 4), np.int32))\n"
    )
    done = _run("mypy", "--no-incremental", str(wrong), cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'Missing positional argument "step"' in done.stdout, done.stdout
