"""The request schemas are data the validator reads and the OpenAPI document publishes; this checks
that our small validator (`server.schema_check`) judges exactly as a full JSON Schema 2020-12
implementation (`jsonschema`) does, on valid examples and on thousands of mutations of them, and
that every `$ref` in the published document resolves."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.openapi import build_document
from multistream.app import ROUTE_MODULES
from server.errors import Invalid
from server.schemas import ALL, REQUESTS, validate
from tests.api_helpers import FREE_BODY, START_BODY

PIX = START_BODY["pix"]
VALID: dict[str, list[Any]] = {
    "StartSession": [
        START_BODY,
        FREE_BODY,
        {},
        {"title": "  padded  ", "streams": ["camera"]},
        {"default_pip": {"corner": "top-left", "size_pct": 40}, "broadcaster_name": "Ana"},
    ],
    "DefaultLayout": [{"pip": {"corner": "top-left", "size_pct": 40}}, {"pip": {}}],
    "PixReceiverDraft": [{}, {"key": "(11) 91234-5678"}, {"merchant_city": "São José"}, PIX],
    "Preferences": [
        {},
        {"enabled_streams": ["screen"], "mode": "composite", "pip": {"corner": "auto"}},
        {"pip": {"size_pct": 35.0}},
        {"pip_custom": False, "mode": "separate"},
    ],
    "NoFields": [{}],
    "Offer": [{"sdp": "v=0\r\n", "type": "offer", "max_height": 720}, {"sdp": "x"}],
    "Candidate": [
        {"pc_id": "pc_1", "candidate": {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}}
    ],
    "LegacyStart": [{"title": "old", "price_centavos": 500, "pix": PIX}, {}],
    "Signup": [
        {"username": "ana.dev", "password": "correct horse"},
        {"username": "Ana_2", "password": "x" * 8, "display_name": "Ana Dev"},
    ],
    "Login": [{"username": "ana", "password": "whatever"}],
    "TokenCreate": [{}, {"name": "OBS on the laptop"}],
    "AccountPix": [{"pix": PIX}, {"pix": None}],
    "PixCallback": [
        {"pix": [{"endToEndId": "E1", "txid": "abc", "valor": "1.00", "infoPagador": "oi"}]}
    ],
}
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["screen", "camera", "composite", "offer", "720p", "", " ", "\u202e"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@functools.cache
def _reference(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**ALL[name], "components": {"schemas": ALL}})


def reference_valid(name: str, value: Any) -> bool:
    return bool(_reference(name).is_valid(value))


def ours_valid(name: str, value: Any) -> bool:
    try:
        validate(value, name)
    except Invalid:
        return False
    return True


@st.composite
def mutated(draw: st.DrawFn, name: str) -> Any:
    value = copy.deepcopy(draw(st.sampled_from(VALID[name])))
    for _ in range(draw(st.integers(1, 3))):
        target = value
        # Walk down into a random nested object, then change one of its fields.
        while isinstance(target, dict) and target and draw(st.booleans()):
            inner = [v for v in target.values() if isinstance(v, dict | list) and v]
            if not inner:
                break
            target = draw(st.sampled_from(inner))
            if isinstance(target, list):
                target = draw(st.sampled_from(target))
        if not isinstance(target, dict):
            continue
        op = draw(st.sampled_from(["set", "drop", "add"]))
        keys = sorted(target)
        if op == "drop" and keys:
            del target[draw(st.sampled_from(keys))]
        elif op == "set" and keys:
            target[draw(st.sampled_from(keys))] = draw(JSON)
        else:
            target[draw(st.sampled_from([*keys, "extra", "admin"]))] = draw(JSON)
    return value


@pytest.mark.parametrize("name", sorted(VALID))
def test_examples_are_valid(name: str) -> None:
    for value in VALID[name]:
        assert reference_valid(name, value), value
        assert ours_valid(name, value), value


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_validator_agrees_with_jsonschema(name: str) -> None:
    assert name in VALID, f"add valid examples for {name}"

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
    )
    @given(value=mutated(name) | JSON)
    def agree(value: Any) -> None:
        assert ours_valid(name, value) == reference_valid(name, value), json.dumps(value)

    agree()


def test_every_ref_in_the_document_resolves() -> None:
    document = build_document(["handlers.openapi", *ROUTE_MODULES])
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(document["paths"])
    walk(document["components"])
    assert refs
    for ref in refs:
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], ref
    # Every JSON request body and every JSON response references a named schema.
    for path, item in document["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                assert "$ref" in body["schema"], (method, path)
            for status, response in op["responses"].items():
                content = response.get("content", {}).get("application/json")
                if content is not None:
                    assert "$ref" in content["schema"], (method, path, status)
