"""The pre-multistream single-stream API keeps working on the same sessions."""

from __future__ import annotations

import pytest

from tests.api_helpers import PREFIX, assert_error

# The whole module runs on SQLite and on MongoDB (the wire server started by conftest).
pytestmark = pytest.mark.store_backends


async def test_legacy_start_status_stop(api) -> None:
    r = await api.post(f"{PREFIX}/start", {"title": "old client"})
    assert r.status == 201, r.body
    ls, token = r.json["livestream"], r.json["token"]
    assert ls["status"] == "live" and ls["stream_id"] and ls["price_centavos"] == 0
    r = await api.get(f"{PREFIX}/{ls['id']}")
    assert r.status == 200 and r.json["livestream"]["id"] == ls["id"]
    # the same session is visible to the multi-stream API, with one camera stream
    st = (await api.get(f"{PREFIX}/session/{ls['id']}/status")).json
    assert [s["kind"] for s in st["streams"]] == ["camera"]
    assert st["session"]["legacy"] is True
    assert_error(await api.post(f"{PREFIX}/{ls['id']}/stop"), 401)
    r = await api.post(f"{PREFIX}/{ls['id']}/stop", token=token)
    assert r.status == 200 and r.json["livestream"]["status"] == "ended"
    assert (await api.get(f"{PREFIX}/{ls['id']}")).json["livestream"]["status"] == "ended"


async def test_legacy_bad_input(api) -> None:
    assert_error(await api.post(f"{PREFIX}/start", {"price_centavos": -5}), 400)
    assert_error(await api.post(f"{PREFIX}/start", {"stream": "x"}), 400)
    assert_error(await api.get(f"{PREFIX}/ses_nope"), 404)
