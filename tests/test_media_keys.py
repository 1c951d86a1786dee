"""The media plane's registry keys (`server.media.keys`) and the one writer of stream status.

Keys replaced names built as strings and parsed back (`"stream:<id>@360p#<rung>"`, split on `@`
and `#`): these tests hold that the readable names stay what the logs always said, that the fields,
not the text, decide identity, and that a layout's missing picture-in-picture fields come from the
domain's defaults rather than a second copy of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from server.domain import DEFAULT_VIEW_MODE, default_pip
from server.media.composite import LayoutKey
from server.media.keys import EncoderKey, FeedKey, Rendition, SourceKey, layout_of

ROOT = Path(__file__).resolve().parent.parent


def test_names_read_as_the_logs_always_did() -> None:
    stream = SourceKey.of_stream("str_1")
    layout = LayoutKey("ses_1", "top-left", 30, ("screen", "camera"))
    assert str(Rendition(stream)) == "stream:str_1"
    assert str(Rendition(stream, 360)) == "stream:str_1@360p"
    assert str(Rendition(stream, None, "r1")) == "stream:str_1@full#r1"
    assert str(Rendition(stream, 360, "r2")) == "stream:str_1@360p#r2"
    assert str(FeedKey(stream, 360)) == "stream:str_1@360p"
    assert str(EncoderKey(Rendition(SourceKey.of_layout(layout)), "VP8")) == (
        f"composite:{layout.name} codec=VP8"
    )


def test_identity_is_the_fields_not_the_text() -> None:
    # Ids a client cannot choose today, but a name-parsing registry would have split wrongly.
    odd = SourceKey.of_stream("a@360p#r")
    plain = SourceKey.of_stream("a")
    assert Rendition(odd) != Rendition(plain, 360, "r")
    assert Rendition(odd).source == odd and Rendition(plain, 360, "r").source == plain
    # A rung's encoder and an explicitly sized variant read the same scaled feed.
    assert Rendition(plain, 360, "r").feed == Rendition(plain, 360).feed == FeedKey(plain, 360)
    assert Rendition(plain, None, "r").feed != FeedKey(plain, 360)


def test_layout_defaults_come_from_the_domain() -> None:
    prefs = {
        "session_id": "ses_1",
        "enabled_streams": ["camera", "screen"],
        "mode": DEFAULT_VIEW_MODE,
    }
    key = layout_of(prefs)
    assert (key.corner, key.size_pct) == (default_pip()["corner"], default_pip()["size_pct"])
    assert key.kinds == ("screen", "camera")  # the vocabulary's order, whatever the client sent
    key = layout_of({**prefs, "pip": {"corner": "top-left"}, "enabled_streams": ["camera"]})
    assert (key.corner, key.size_pct, key.kinds) == (
        "top-left",
        default_pip()["size_pct"],
        ("camera",),
    )


def _stream_updates(path: Path) -> list[int]:
    """Lines of `<x>.update("broadcast_streams", ...)` calls in one module."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "broadcast_streams"
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_session_service_writes_stream_status() -> None:
    writers = {
        str(path.relative_to(ROOT))
        for package in ("multistream", "handlers", "server", "store")
        for path in (ROOT / package).rglob("*.py")
        if _stream_updates(path)
    }
    assert writers == {"server/sessions.py"}
