"""Picks the kernel implementation: the compiled ``_fast`` when built, else the numpy reference.

``MULTISTREAM_COMPOSITOR=reference`` (or ``fast``) forces one; ``auto`` (the default) prefers
``_fast``. Forcing ``fast`` when the extension is not built is an error rather than a silent
fallback, so a benchmark never measures the wrong thing.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, cast

from compositor.kernel_api import Kernels

if TYPE_CHECKING:
    # Static proof that both modules implement the interface (mypy reads _fast.pyi).
    from compositor import _fast, _reference

    _FAST: Kernels = _fast
    _REFERENCE: Kernels = _reference

ENV_VAR = "MULTISTREAM_COMPOSITOR"
CHOICES = ("auto", "fast", "reference")


def _load_fast() -> ModuleType | None:
    try:
        return importlib.import_module("compositor._fast")
    except ImportError:
        return None


def load_kernels(name: str | None = None) -> Kernels:
    """The kernel module to use: ``name``, else ``$MULTISTREAM_COMPOSITOR``, else ``auto``."""
    choice = (name or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "reference":
        return cast(Kernels, importlib.import_module("compositor._reference"))
    fast = _load_fast()
    if fast is not None:
        return cast(Kernels, fast)
    if choice == "fast":
        raise ImportError("compositor._fast is not built; run `pip install -e .`")
    return cast(Kernels, importlib.import_module("compositor._reference"))
