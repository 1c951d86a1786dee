"""The multi-stream session API walked through end to end over real HTTP on SQLite."""

from __future__ import annotations

import pytest

from tests.api_helpers import FREE_BODY, PREFIX, START_BODY, assert_error

# The whole module runs on SQLite and on MongoDB (the wire server started by conftest).
pytestmark = pytest.mark.store_backends


async def test_walkthrough(api) -> None:
    # start
    r = await api.post(f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token)
    assert r.status == 201, r.body
    started = r.json
    session = started["session"]
    assert session["status"] == "live" and session["title"] == "Refactoring live"
    assert [s["kind"] for s in session["streams"]] == ["screen", "camera"]
    assert all(s["status"] == "pending" for s in session["streams"])
    screen = session["streams"][0]
    assert screen["quality"] == {
        "preset": "1080p",
        "width": 1920,
        "height": 1080,
        "fps": 15,
        "content_hint": "text",
    }
    assert session["streams"][1]["quality"]["content_hint"] == "motion"
    assert session["pricing"]["addons"] == {"screen": 1000, "camera": 700}
    btoken = started["broadcaster_token"]
    sid = session["id"]

    # status
    r = await api.get(f"{PREFIX}/session/{sid}/status")
    assert r.status == 200
    st = r.json
    assert st["viewer_count"] == 0 and len(st["streams"]) == 2
    assert st["price_list"]["bundle_centavos"] == 1945

    # join: defaults are every open stream, separate, bottom-right, 25 %
    r = await api.post(f"{PREFIX}/session/{sid}/join")
    assert r.status == 200, r.body
    joined = r.json
    vtoken, vid = joined["viewer_token"], joined["viewer_id"]
    prefs = joined["preferences"]
    assert prefs["enabled_streams"] == ["screen", "camera"]
    assert prefs["mode"] == "separate" and prefs["pip"] == {
        "corner": "bottom-right",
        "size_pct": 25,
    }
    assert joined["quote"]["amount_centavos"] == 1945 and joined["quote"]["currency"] == "BRL"

    # preferences: PUT validates, saves, re-quotes
    r = await api.put(
        f"{PREFIX}/session/{sid}/preferences",
        {
            "enabled_streams": ["screen"],
            "mode": "composite",
            "pip": {"corner": "top-left", "size_pct": 30},
        },
        token=vtoken,
    )
    assert r.status == 200, r.body
    assert r.json["quote"]["amount_centavos"] == 1500
    assert r.json["preferences"]["pip"] == {"corner": "top-left", "size_pct": 30}
    r = await api.get(f"{PREFIX}/session/{sid}/preferences", token=vtoken)
    assert r.json["preferences"]["mode"] == "composite"

    # a later join by the same viewer gets its layout back
    r = await api.post(f"{PREFIX}/session/{sid}/join", token=vtoken)
    assert r.json["viewer_id"] == vid
    assert r.json["preferences"]["enabled_streams"] == ["screen"]
    assert r.json["preferences"]["pip"]["corner"] == "top-left"

    # stop one stream, the other goes on
    r = await api.post(f"{PREFIX}/session/{sid}/streams/camera/stop", token=btoken)
    assert r.status == 200 and r.json["stream"]["status"] == "stopped"
    st = (await api.get(f"{PREFIX}/session/{sid}/status")).json
    assert {s["kind"]: s["status"] for s in st["streams"]} == {
        "screen": "pending",
        "camera": "stopped",
    }
    # ... and start it again
    r = await api.post(f"{PREFIX}/session/{sid}/streams/camera/start", token=btoken)
    assert r.status == 200 and r.json["stream"]["status"] == "pending"

    # the stream list shows the multi-stream session
    listed = (await api.get(f"{PREFIX}/sessions")).json["sessions"]
    mine = next(s for s in listed if s["id"] == sid)
    assert sorted(s["kind"] for s in mine["streams"]) == ["camera", "screen"]

    # end
    r = await api.post(f"{PREFIX}/session/{sid}/end", token=btoken)
    assert r.status == 200 and r.json["session"]["status"] == "ended"
    assert all(s["status"] == "stopped" for s in r.json["session"]["streams"])
    assert sid not in [s["id"] for s in (await api.get(f"{PREFIX}/sessions")).json["sessions"]]
    # ending again is harmless; joining an ended session is a conflict
    assert (await api.post(f"{PREFIX}/session/{sid}/end", token=btoken)).status == 200
    assert_error(await api.post(f"{PREFIX}/session/{sid}/join"), 409, "session_ended")


async def test_subset_of_streams_and_adding_one_later(api) -> None:
    r = await api.post(
        f"{PREFIX}/session/start",
        {"title": "cam only", "streams": ["camera"]},
        token=api.broadcaster_token,
    )
    assert r.status == 201
    sid, btoken = r.json["session"]["id"], r.json["broadcaster_token"]
    assert [s["kind"] for s in r.json["session"]["streams"]] == ["camera"]
    r = await api.post(f"{PREFIX}/session/{sid}/streams/screen/start", token=btoken)
    assert r.status == 200 and r.json["stream"]["kind"] == "screen"
    kinds = [s["kind"] for s in (await api.get(f"{PREFIX}/session/{sid}/status")).json["streams"]]
    assert kinds == ["screen", "camera"]


async def test_free_session_defaults(api) -> None:
    r = await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
    assert r.status == 201
    sid = r.json["session"]["id"]
    joined = (await api.post(f"{PREFIX}/session/{sid}/join")).json
    assert joined["quote"]["amount_centavos"] == 0
    assert "payment" not in joined


async def test_viewer_token_of_another_session_is_a_new_viewer(api) -> None:
    a = (await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)).json[
        "session"
    ]["id"]
    b = (await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)).json[
        "session"
    ]["id"]
    ja = (await api.post(f"{PREFIX}/session/{a}/join")).json
    jb = (await api.post(f"{PREFIX}/session/{b}/join", token=ja["viewer_token"])).json
    assert jb["viewer_id"] != ja["viewer_id"]
