"""Helpers for API tests: a standard session body and a snapshot of everything stored."""

from __future__ import annotations

import json
from typing import Any

from store.protocol import QUERY_FIELDS, Store

PREFIX = "/api/v1/livestream"

START_BODY: dict[str, Any] = {
    "title": "Refactoring live",
    "streams": ["screen", "camera"],
    "pricing": {"base": 500, "addons": {"screen": 1000, "camera": 700}, "bundle_discount_pct": 15},
    "quality": {
        "screen": {"preset": "1080p", "fps": 15, "content_hint": "text"},
        "camera": {"preset": "720p", "fps": 30},
    },
    "pix": {"key": "dev@example.com", "merchant_name": "Ana Dev", "merchant_city": "Sao Paulo"},
}

FREE_BODY: dict[str, Any] = {"title": "Free session", "streams": ["screen", "camera"]}


async def snapshot(store: Store) -> str:
    """Every document of every collection, canonically serialised: equal snapshots = nothing written."""
    out = {}
    for collection in QUERY_FIELDS:
        docs = await store.find(collection, limit=100_000)  # type: ignore[arg-type]
        out[collection] = sorted(json.dumps(d, sort_keys=True) for d in docs)
    return json.dumps(out, sort_keys=True)


def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The status and the JSON error body, both."""
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json
    assert set(body) == {"error"}
    err = body["error"]
    assert err["status"] == status
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err
