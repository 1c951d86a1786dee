"""One vocabulary (issue 12.2): kinds, presets, corners, PiP limits and defaults, modes.

`server.domain` (re-exporting the compositor's PiP geometry rules) is the one source. These tests hold
the readers to it: the OpenAPI document's enums and limits, the JSON and ES module the web client
loads, the pages' controls, and a scan of the sources that finds each default or limit written once.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from compositor import layout as geometry
from handlers.openapi import build_document
from handlers.vocabulary import vocabulary_module
from multistream.app import ROUTE_MODULES
from server import domain
from server.domain import (
    DEFAULT_VIEW_MODE,
    KIND_RULES,
    PIP_CORNERS,
    PIP_FIXED_CORNERS,
    PIP_SIZE_MAX,
    PIP_SIZE_MIN,
    STREAM_KINDS,
    VIEW_MODES,
    vocabulary,
)
from server.errors import Invalid
from server.schemas import ALL
from server.whip import pip_from_query

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "handlers" / "static"
SOURCES = ("multistream", "server", "handlers", "store", "compositor")
PRESET_NAMES = {name for rules in KIND_RULES.values() for name in rules.presets}


def _document() -> dict[str, Any]:
    return build_document(["handlers.openapi", *ROUTE_MODULES])


def _schema(name: str) -> dict[str, Any]:
    return ALL[name]


def _resolved(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or the shared component its `$ref` names."""
    ref = schema.get("$ref")
    return _schema(ref.rsplit("/", 1)[-1]) if isinstance(ref, str) else schema


# -- the OpenAPI document reads the vocabulary --------------------------------------------------


def test_openapi_preferences_enums_and_limits_are_the_vocabulary() -> None:
    prefs = _schema("Preferences")["properties"]
    assert prefs["mode"]["enum"] == list(VIEW_MODES)
    assert prefs["enabled_streams"]["items"]["enum"] == list(STREAM_KINDS)
    # The viewer's and the broadcaster's default picture-in-picture share one schema.
    assert prefs["pip"] == {"$ref": "#/components/schemas/Pip"}
    assert _schema("DefaultLayout")["properties"]["pip"] == prefs["pip"]
    assert _schema("StartSession")["properties"]["default_pip"]["$ref"] == prefs["pip"]["$ref"]
    pip = _schema("Pip")["properties"]
    assert pip["corner"]["enum"] == list(PIP_CORNERS)
    assert (pip["size_pct"]["minimum"], pip["size_pct"]["maximum"]) == (PIP_SIZE_MIN, PIP_SIZE_MAX)
    saved = _schema("ViewerPreferences")["properties"]
    assert saved["mode"]["enum"] == list(VIEW_MODES)
    assert saved["pip"]["properties"]["corner"]["enum"] == list(PIP_CORNERS)


def test_openapi_quality_enums_are_each_kinds_presets() -> None:
    for kind, rules in KIND_RULES.items():
        props = _schema(f"Quality_{kind}")["properties"]
        assert props["preset"]["enum"] == list(rules.presets), kind
        assert (props["fps"]["minimum"], props["fps"]["maximum"]) == (rules.fps_min, rules.fps_max)
        assert props["content_hint"]["enum"] == list(rules.content_hints), kind
    assert _schema("Stream")["properties"]["kind"]["enum"] == list(STREAM_KINDS)


def test_openapi_whep_layout_query_is_the_pip_vocabulary() -> None:
    post = _document()["paths"]["/api/v1/whep/{session_id}/composite"]["post"]
    params = {p["name"]: p["schema"] for p in post["parameters"]}
    assert params["corner"]["enum"] == list(PIP_FIXED_CORNERS)
    assert (params["size"]["minimum"], params["size"]["maximum"]) == (PIP_SIZE_MIN, PIP_SIZE_MAX)


def test_openapi_documents_the_vocabulary_route() -> None:
    get = _document()["paths"]["/api/v1/vocabulary"]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Vocabulary"
    )


# -- the WHEP query takes the same limits as the saved preferences ------------------------------


def test_whep_size_query_is_held_to_the_pip_limits() -> None:
    """It took 10..50 while the compositor refuses more than 40 (defect found by this issue)."""
    assert pip_from_query(None, str(PIP_SIZE_MAX)) == {"size_pct": PIP_SIZE_MAX}
    for size in (PIP_SIZE_MIN - 1, PIP_SIZE_MAX + 1, 50):
        with pytest.raises(Invalid):
            pip_from_query(None, str(size))
    with pytest.raises(Invalid):
        pip_from_query("auto", None)  # a WHEP composite needs a fixed corner


# -- what the web client loads ------------------------------------------------------------------


def _module_data(text: str) -> Any:
    match = re.search(r"export const VOCABULARY = deepFreeze\((\{.*\})\);\s*$", text, re.S)
    assert match, text[:200]
    return json.loads(match.group(1))


def test_vocabulary_json_carries_every_fact() -> None:
    v = vocabulary()
    assert v["stream_kinds"] == list(STREAM_KINDS)
    assert v["view_modes"] == list(VIEW_MODES)
    assert v["default_view_mode"] == DEFAULT_VIEW_MODE
    assert v["pip"] == {
        "corners": list(PIP_CORNERS),
        "fixed_corners": list(PIP_FIXED_CORNERS),
        "size_min": geometry.MIN_SIZE_PCT,
        "size_max": geometry.MAX_SIZE_PCT,
        "default": {"corner": geometry.DEFAULT_CORNER, "size_pct": geometry.DEFAULT_SIZE_PCT},
    }
    for kind, rules in KIND_RULES.items():
        q = v["quality"][kind]
        assert {n: (p["width"], p["height"]) for n, p in q["presets"].items()} == {
            n: (p.width, p.height) for n, p in rules.presets.items()
        }
        assert (q["fps_min"], q["fps_max"], q["default_fps"]) == (
            rules.fps_min,
            rules.fps_max,
            rules.default_fps,
        )
        assert q["default_preset"] in q["presets"]
        assert all(rules.fps_min <= f <= rules.fps_max for f in q["fps_steps"])
        assert rules.default_fps in q["fps_steps"]
        assert q["content_hints"] == list(rules.content_hints)
    # The compositor's own default layout is the vocabulary's.
    layout = geometry.Layout()
    assert (layout.corner, layout.size_pct) == (geometry.DEFAULT_CORNER, geometry.DEFAULT_SIZE_PCT)


async def test_server_serves_the_vocabulary_as_json_and_as_the_clients_module(server, api) -> None:
    r = await api.get("/api/v1/vocabulary")
    assert r.status == 200, r.body
    assert r.json == vocabulary()
    r = await api.get("/static/js/vocabulary.js")
    assert r.status == 200, r.body
    assert r.headers["Content-Type"].startswith("text/javascript")
    assert _module_data(r.body.decode()) == vocabulary()
    assert _module_data(vocabulary_module()) == vocabulary()


def test_the_pages_read_the_vocabulary_module() -> None:
    """The scripts that need kinds, presets or PiP values import the served module."""
    assert not (STATIC / "js" / "vocabulary.js").exists(), "served by handlers/vocabulary.py only"
    for script in ("layout.js", "studio.js", "watch.js"):
        text = (STATIC / "js" / script).read_text()
        assert 'from "./vocabulary.js"' in text, script


def test_watch_page_mode_radios_are_the_view_modes() -> None:
    html = (STATIC / "watch.html").read_text()
    radios = re.findall(
        r'<input type="radio" name="mode" id="mode-([a-z]+)" value="([a-z]+)"', html
    )
    assert [value for _, value in radios] == list(VIEW_MODES)
    assert all(i == v for i, v in radios)
    checked = re.findall(r'name="mode" id="mode-[a-z]+" value="([a-z]+)" checked', html)
    assert checked == [DEFAULT_VIEW_MODE]


# -- each fact written once ---------------------------------------------------------------------


def test_the_client_retypes_no_corner_preset_or_pip_value() -> None:
    """No page or script writes a corner, preset name or size, or a PiP limit/default (comments
    may name them). The stylesheet positions each fixed corner, checked against the vocabulary next."""
    corners = "|".join(re.escape(c) for c in PIP_CORNERS)
    widths = {p.width for r in KIND_RULES.values() for p in r.presets.values()}
    forbidden = [
        re.compile(rf"[\"'`]({corners})[\"'`]"),
        re.compile(r"\b(" + "|".join(sorted(PRESET_NAMES)) + r")\b"),
        re.compile(r"\b(" + "|".join(map(str, sorted(widths))) + r")\b\s*[,x×]"),
        re.compile(r"(pip-size|size_pct|sizePct)[\"']?\s*[:=(,]\s*[\"']?\d"),  # size_pct: 25
        re.compile(r"id=\"(pip|preview)-size\"[^>]*\b(min|max|value)="),
        re.compile(r"\b(min|max|value)=\"\d+\"[^>]*id=\"(pip|preview)-size\""),
        re.compile(r"\|\|\s*" + str(geometry.DEFAULT_SIZE_PCT) + r"\b"),
    ]
    hits = []
    for path in sorted(STATIC.rglob("*")):
        if path.suffix not in (".js", ".html"):
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//")[0] if path.suffix == ".js" else line
            for pattern in forbidden:
                if pattern.search(code):
                    hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not hits, "hand copies of the vocabulary in the web client:\n" + "\n".join(hits)


def test_the_stylesheet_positions_exactly_the_fixed_corners() -> None:
    css = (STATIC / "css" / "app.css").read_text()
    assert re.findall(r'\.stage\[data-corner="([a-z-]+)"\]', css) == list(PIP_FIXED_CORNERS)
    assert "--pip-size:" not in css  # its default is set by layout.js from the vocabulary


def _string_constants(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals that are values (docstrings excluded)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _pip_size_literals(tree: ast.AST) -> list[int]:
    """Lines where a number is given as a PiP size: `size_pct=N`, `{"size_pct": N}`,
    `.get("size_pct", N)`, `size_pct: int = N`."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "size_pct":
            if isinstance(node.value, ast.Constant):
                lines.append(node.value.lineno)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "size_pct"
                    and isinstance(value, ast.Constant)
                ):
                    lines.append(value.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            args = node.args
            if (
                node.func.attr == "get"
                and len(args) == 2
                and isinstance(args[0], ast.Constant)
                and args[0].value in ("size_pct", "corner")
                and isinstance(args[1], ast.Constant)
            ):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "size_pct"
            and isinstance(node.value, ast.Constant)
        ):
            lines.append(node.lineno)
    return lines


# Files allowed to write a corner name: the definition, the placement's tie-break order (typed
# `Corner`, so mypy holds it to the definition), and the demo picture's examples.
CORNER_WRITERS = {"compositor/layout.py", "compositor/placement.py", "compositor/demo.py"}


def test_each_corner_preset_and_pip_default_is_written_once_in_python() -> None:
    corners = set(geometry.CORNERS)
    bad = []
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text())
            for lineno, value in _string_constants(tree):
                if value in corners and rel not in CORNER_WRITERS:
                    bad.append(f"{rel}:{lineno}: corner {value!r}")
                if value in PRESET_NAMES and rel != "server/domain.py":
                    bad.append(f"{rel}:{lineno}: preset {value!r}")
            if rel != "compositor/demo.py":
                bad += [f"{rel}:{n}: a PiP size/corner literal" for n in _pip_size_literals(tree)]
    assert not bad, "written outside the vocabulary:\n" + "\n".join(bad)


def test_the_pip_defaults_and_limits_have_one_definition() -> None:
    """The compositor defines them; the vocabulary re-exports the very objects."""
    assert domain.PIP_SIZE_MIN is geometry.MIN_SIZE_PCT
    assert domain.PIP_SIZE_MAX is geometry.MAX_SIZE_PCT
    assert domain.PIP_CORNERS is geometry.CORNER_CHOICES
    assert domain.PIP_FIXED_CORNERS is geometry.CORNERS
    assert domain.default_pip() == {
        "corner": geometry.DEFAULT_CORNER,
        "size_pct": geometry.DEFAULT_SIZE_PCT,
    }
    definitions = []
    for package in SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if re.match(
                    r"\s*(MIN_SIZE_PCT|MAX_SIZE_PCT|DEFAULT_CORNER|DEFAULT_SIZE_PCT)\b.*=", line
                ):
                    definitions.append(f"{path.relative_to(ROOT)}:{lineno}")
    assert definitions == [f"compositor/layout.py:{n}" for n in _definition_lines()], definitions


def _definition_lines() -> list[int]:
    lines = (ROOT / "compositor" / "layout.py").read_text().splitlines()
    return [
        i
        for i, line in enumerate(lines, 1)
        if re.match(r"(MIN_SIZE_PCT|MAX_SIZE_PCT|DEFAULT_CORNER|DEFAULT_SIZE_PCT)\b.*=", line)
    ]
