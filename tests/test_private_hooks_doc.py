"""docs/private-hooks.md lists every private hook with its guarding test, and nothing else reaches in.

The list is the answer to "what breaks if we lift the aiortc pin?": it must name every hook the
adapter modules define and only tests that exist; and outside those modules no code reads another
object's underscore attribute (where a dependency's internals would creep back in).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "private-hooks.md").read_text()
ADAPTERS = {
    "server/media/aiortc_hooks.py": "tests/test_media_aiortc_hooks.py",
    "server/media/aioice_hooks.py": "tests/test_media_aioice_hooks.py",
    "handlers/tornado_hooks.py": "tests/test_tornado_hooks.py",
}
# A hook module's public names that are helpers or errors, not hooks.
NOT_HOOKS = {"AiortcShapeError", "AioiceShapeError", "TornadoShapeError", "Gather"}
NOT_HOOKS |= {"rewrite_abs_send_time"}  # pure byte rewriting, no dependency internals
# `x._name` outside the adapters where `x` is our own object, not a dependency's.
OWN = {("server/media/fanout.py", "_wake"), ("server/settings.py", "_value")}  # Secret.__eq__


def _public_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and not node.name.startswith("_")
    }


def test_every_hook_is_listed_with_an_existing_test() -> None:
    for module in ADAPTERS:
        assert f"`{module}`" in DOC, f"{module} has no section"
        for name in sorted(_public_names(ROOT / module) - NOT_HOOKS):
            assert f"`{name}`" in DOC, f"docs/private-hooks.md does not list {module}:{name}"
    tests = {
        name
        for test_module in ADAPTERS.values()
        for name in re.findall(r"def (test_\w+)", (ROOT / test_module).read_text())
    }
    named = set(re.findall(r"`(test_\w+)`", DOC))
    assert named and named <= tests, f"named but not found: {sorted(named - tests)}"


def test_no_other_module_reads_another_objects_private_attribute() -> None:
    bad = []
    for package in ("multistream", "handlers", "server", "store", "compositor"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ADAPTERS:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                    and (rel, node.attr) not in OWN
                ):
                    bad.append(f"{rel}:{node.lineno}: .{node.attr}")
    assert not bad, "private access outside the adapter modules:\n" + "\n".join(bad)
