"""The broadcaster's picture-in-picture is the session default: viewers without a layout of their
own get it on joining, and their composites move when the broadcaster moves it live."""

from __future__ import annotations

import pytest

from tests.api_helpers import assert_error
from tests.media_helpers import PREFIX, join
from tests.test_media_composite import (
    BOTTOM_RIGHT,
    TOP_LEFT,
    broadcast,
    settle,
    shows_camera_at,
    shows_screen_at,
)


async def _start(api, body: dict) -> dict:
    resp = await api.post(f"{PREFIX}/session/start", body, token=api.broadcaster_token)
    assert resp.status == 201, resp.body
    return resp.json


@pytest.mark.store_backends
async def test_new_viewers_get_the_broadcasters_layout_until_they_choose(api) -> None:
    started = await _start(api, {"default_pip": {"corner": "top-left", "size_pct": 40}})
    sid, token = started["session"]["id"], started["broadcaster_token"]
    assert started["session"]["default_pip"] == {"corner": "top-left", "size_pct": 40}
    follower = await join(api, sid)
    assert follower["preferences"]["pip"] == {"corner": "top-left", "size_pct": 40}
    assert follower["preferences"]["pip_custom"] is False
    chooser = await join(api, sid, {"pip": {"corner": "bottom-left", "size_pct": 20}})
    mode_only = await join(api, sid, {"mode": "composite"})

    # The broadcaster moves its PiP while live: followers move, a viewer's own choice stays.
    resp = await api.put(
        f"{PREFIX}/session/{sid}/layout",
        {"pip": {"corner": "top-right", "size_pct": 30}},
        token=token,
    )
    assert resp.status == 200, resp.body
    assert resp.json == {"default_pip": {"corner": "top-right", "size_pct": 30}}

    async def pip_of(joined: dict) -> dict:
        r = await api.get(f"{PREFIX}/session/{sid}/preferences", token=joined["viewer_token"])
        return r.json["preferences"]["pip"]

    assert await pip_of(follower) == {"corner": "top-right", "size_pct": 30}
    assert await pip_of(mode_only) == {"corner": "top-right", "size_pct": 30}
    assert await pip_of(chooser) == {"corner": "bottom-left", "size_pct": 20}
    # New viewers and the status see the new default.
    assert (await join(api, sid))["preferences"]["pip"] == {"corner": "top-right", "size_pct": 30}
    status = (await api.get(f"{PREFIX}/session/{sid}/status")).json
    assert status["session"]["default_pip"] == {"corner": "top-right", "size_pct": 30}

    # A viewer may go back to following the broadcaster.
    back = await api.put(
        f"{PREFIX}/session/{sid}/preferences", {"pip_custom": False}, token=chooser["viewer_token"]
    )
    assert back.json["preferences"]["pip"] == {"corner": "top-right", "size_pct": 30}
    assert back.json["preferences"]["pip_custom"] is False


@pytest.mark.store_backends
async def test_only_the_broadcaster_sets_the_default_layout(api, server) -> None:
    started = await _start(api, {})
    sid, token = started["session"]["id"], started["broadcaster_token"]
    viewer = await join(api, sid)
    url = f"{PREFIX}/session/{sid}/layout"
    body = {"pip": {"corner": "top-left", "size_pct": 30}}
    assert_error(await api.put(url, body), 401)
    assert_error(await api.put(url, body, token=viewer["viewer_token"]), 403, "forbidden")
    assert_error(await api.put(url, {"pip": {"size_pct": 90}}, token=token), 400, "invalid")
    assert_error(await api.put(url, {"pip": {}, "x": 1}, token=token), 400, "invalid")
    bad_start = await api.post(
        f"{PREFIX}/session/start",
        {"default_pip": {"corner": "middle"}},
        token=api.broadcaster_token,
    )
    assert_error(bad_start, 400, "invalid")
    await api.post(f"{PREFIX}/session/{sid}/end", token=token)
    assert_error(await api.put(url, body, token=token), 409, "session_ended")


async def test_moving_the_default_moves_a_default_layout_composite_live(server, api) -> None:
    started, pubs = await broadcast(api)
    sid, token = started["session"]["id"], started["broadcaster_token"]
    from tests.media_helpers import view

    joined = await join(api, sid, {"enabled_streams": ["screen", "camera"], "mode": "composite"})
    viewer, resp = await view(
        api, joined["viewer_token"], f"{PREFIX}/session/{sid}/composite/signal/offer"
    )
    assert resp.status == 200, resp.body
    try:
        # The product default first (bottom-right), then wherever the broadcaster puts it.
        await settle(viewer, shows_camera_at(BOTTOM_RIGHT))
        put = await api.put(
            f"{PREFIX}/session/{sid}/layout",
            {"pip": {"corner": "top-left", "size_pct": 30}},
            token=token,
        )
        assert put.status == 200, put.body
        await settle(
            viewer, lambda f: shows_camera_at(TOP_LEFT)(f) and shows_screen_at(BOTTOM_RIGHT)(f)
        )
        assert viewer.pc.connectionState == "connected"
    finally:
        await viewer.close()
        for pub in pubs:
            await pub.pc.close()
