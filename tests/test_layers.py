"""The arrows between the packages point down only: multistream -> handlers -> server -> store/compositor.

`multistream/` is the composition root (CLI, app factory) and may import everything; nothing below it
imports upward. Every import statement is read from the source (including ones inside functions and
`importlib.import_module("...")` with a literal name), so a lazy import cannot slip past the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("multistream", "handlers", "server", "store", "compositor")
# What each package may import from the project, besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    "multistream": frozenset({"handlers", "server", "store", "compositor"}),
    "handlers": frozenset({"server", "store", "compositor"}),
    "server": frozenset({"store", "compositor"}),
    "store": frozenset(),
    "compositor": frozenset(),
}


def imported_packages(source: str, module: str) -> set[tuple[int, str]]:
    """(line, top-level project package) for every import in `source` of dotted name `module`."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolves inside the module's own package
                names = [module.split(".")[0]]
            elif node.module:
                names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                found.add((node.lineno, top))
    return found


def violations(package: str, source: str, module: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    return [
        f"{module}:{line} imports {top}"
        for line, top in sorted(imported_packages(source, module))
        if top not in allowed
    ]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out.append((package, path))
    return out


def test_every_package_is_scanned() -> None:
    scanned = {package for package, _ in _modules()}
    assert scanned == set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down_only(package: str) -> None:
    bad: list[str] = []
    for pkg, path in _modules():
        if pkg != package:
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        bad += violations(package, path.read_text(), module)
    assert not bad, "imports against the layer rule:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("server", "from handlers.base import BaseHandler"),
        ("server", "def f():\n    import multistream.app\n"),
        ("server", "import importlib\nimportlib.import_module('handlers.sessions')"),
        ("store", "from server.clock import now_iso"),
        ("compositor", "import store.protocol"),
        ("compositor", "from server import domain"),
        ("handlers", "from multistream.app import make_app"),
    ],
)
def test_the_scanner_catches_an_upward_import(package: str, source: str) -> None:
    """The rule can fail: each of these would break it."""
    assert violations(package, source, f"{package}.example")


def test_the_scanner_allows_downward_imports() -> None:
    assert not violations(
        "handlers", "from server.errors import Invalid\nimport store", "handlers.x"
    )
    assert not violations("server", "from compositor.layout import Layout", "server.x")
    assert not violations("store", "from . import protocol", "store.x")
