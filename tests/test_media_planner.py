"""The composite output budget (issue 13, item 6): snapped sizes, `auto` resolved, the nearest
running layout over budget, and the viewer told so."""

from __future__ import annotations

import asyncio
import random

import av
import numpy as np
import pytest

from compositor import plane_views
from server.media.composite import LayoutKey
from server.media.planner import (
    AUTO_HOLD_S,
    Output,
    OutputPlanner,
    best_corner,
    corner_distance,
    snap_size,
)
from server.settings import Settings
from tests.conftest import make_settings
from tests.media_helpers import PREFIX, publish_both, view_composite

KINDS = ("screen", "camera")


def out(corner: str, size: int, codec: str = "H264", rung: str = "source", session: str = "s1"):
    return Output(LayoutKey(session, corner, size, KINDS), codec, rung)


@pytest.mark.parametrize(
    ("size", "snapped"), [(10, 10), (12, 10), (13, 15), (22, 20), (23, 25), (38, 40), (40, 40)]
)
def test_sizes_snap_to_five_percent_steps(size: int, snapped: int) -> None:
    assert snap_size(size) == snapped


def test_corner_distance() -> None:
    assert corner_distance("top-left", "top-left") == 0
    assert corner_distance("top-left", "top-right") == 1
    assert corner_distance("top-left", "bottom-left") == 1
    assert corner_distance("top-left", "bottom-right") == 2


def test_within_budget_every_layout_is_exact() -> None:
    planner = OutputPlanner(instance_budget=3, session_budget=3)
    for i, o in enumerate([out("top-left", 20), out("top-right", 25), out("bottom-left", 30)]):
        grant = planner.plan(o)
        assert (grant.output, grant.substitute, grant.start) == (o, False, True)
        planner.track(i, o)
    # Running already: shared, not started again.
    again = planner.plan(out("top-right", 25))
    assert (again.substitute, again.start) == (False, False)


def test_over_budget_the_nearest_corner_then_size_is_given() -> None:
    planner = OutputPlanner(instance_budget=3, session_budget=3)
    for i, o in enumerate([out("top-left", 40), out("bottom-right", 20), out("bottom-left", 10)]):
        planner.track(i, o)
    grant = planner.plan(out("top-left", 10))
    # The same corner beats the same size elsewhere.
    assert grant.substitute and grant.output == out("top-left", 40) and not grant.start
    grant = planner.plan(out("bottom-right", 35))
    assert grant.output == out("bottom-right", 20)
    # A neighbour corner: bottom-left and bottom-right are both one away from... the size decides.
    grant = planner.plan(out("top-right", 15))
    assert grant.output in (out("bottom-right", 20), out("top-left", 40))
    assert grant.output == out("bottom-right", 20)  # |15-20| < |15-40|
    assert planner.substitutions == 3


def test_nothing_compatible_starts_anyway_and_is_counted() -> None:
    """Another codec, rung, session or set of streams is never handed out: the first output of
    its kind starts over budget (a viewer always gets a picture), and that is counted."""
    planner = OutputPlanner(instance_budget=1, session_budget=1)
    planner.track(0, out("top-left", 20))
    for want in (
        out("top-left", 20, codec="VP8"),
        out("top-left", 20, rung="full15"),
        out("top-left", 20, session="s2"),
        Output(LayoutKey("s1", "top-left", 20, ("screen",)), "H264", "source"),
    ):
        grant = planner.plan(want)
        assert (grant.output, grant.start, grant.over_budget) == (want, True, True)
    assert planner.over_budget_starts == 4


def test_the_session_share_holds_while_the_instance_has_room() -> None:
    planner = OutputPlanner(instance_budget=10, session_budget=2)
    planner.track(0, out("top-left", 20))
    planner.track(1, out("top-right", 20))
    assert planner.plan(out("bottom-left", 20)).substitute
    assert not planner.plan(out("bottom-left", 20, session="s2")).substitute
    planner.release(1)
    assert not planner.plan(out("bottom-left", 20)).substitute


def _screen_busy_except(corner: str) -> av.VideoFrame:
    """A 640x360 'page' full of edges except one quiet corner."""
    frame = av.VideoFrame(640, 360, "yuv420p")
    y, u, v = plane_views(frame)
    y[...] = np.tile(np.array([20, 230], np.uint8), (360, 320))
    h, w = (
        slice(0, 180) if "top" in corner else slice(180, 360),
        (slice(0, 320) if "left" in corner else slice(320, 640)),
    )
    y[h, w] = 128
    u[...] = v[...] = 128
    return frame


@pytest.mark.parametrize("quiet", ["top-left", "top-right", "bottom-left", "bottom-right"])
def test_auto_resolves_to_the_quiet_corner(quiet: str) -> None:
    assert best_corner(_screen_busy_except(quiet), 25) == quiet


def test_auto_is_held_per_session_so_auto_viewers_share() -> None:
    now = [0.0]
    planner = OutputPlanner(4, 4, clock=lambda: now[0])
    screen = [_screen_busy_except("top-left")]
    first = planner.layout("s1", "auto", 23, KINDS, lambda: screen[0])
    assert (first.corner, first.size_pct) == ("top-left", 25)
    screen[0] = _screen_busy_except("bottom-right")
    assert planner.layout("s1", "auto", 25, KINDS, lambda: screen[0]) == first
    now[0] = AUTO_HOLD_S + 1
    assert planner.layout("s1", "auto", 25, KINDS, lambda: screen[0]).corner == "bottom-right"
    # No screen in the layout: the conventional corner.
    assert planner.layout("s2", "auto", 25, ("camera",), lambda: None).corner == "bottom-right"


def test_default_budget_follows_the_cores(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert Settings().composite_budget == 12
    assert Settings(composite_budget=7).session_composite_budget == 3
    env = {"MULTISTREAM_COMPOSITE_BUDGET": "5", "MULTISTREAM_COMPOSITE_BUDGET_SESSION": "4"}
    configured = Settings.from_env(env)
    assert (configured.composite_budget, configured.session_composite_budget) == (5, 4)


BUDGET = 3


@pytest.fixture
def settings(tmp_path, request):
    # Adaptation off: every viewer stays on the top rung, so the count is the layouts' alone.
    budget, session_budget = getattr(request, "param", (BUDGET, BUDGET))
    return make_settings(
        tmp_path / "data",
        composite_budget=budget,
        composite_budget_session=session_budget,
        adaptive=False,
        record=False,
    )


async def test_viewers_with_random_layouts_over_budget_share_the_nearest_outputs(server, api):
    session_id, _, pubs = await publish_both(api)
    rng = random.Random(13)
    corners = ["top-left", "top-right", "bottom-left", "bottom-right", "auto"]
    layouts = [{"corner": rng.choice(corners), "size_pct": rng.randint(10, 40)} for _ in range(8)]
    media = server.services.media
    viewers = []
    try:
        for pip in layouts:
            viewer, joined = await view_composite(api, session_id, pip)
            viewers.append((viewer, joined["viewer_token"], pip))
            assert media.counters()["composite_encoders"] <= BUDGET
        await asyncio.gather(*(v.wait_frames(3, 20) for v, _, _ in viewers))
        counters = media.counters()
        # The budget is spent, not more: as many outputs as it allows run.
        assert counters["composite_encoders"] == BUDGET
        assert counters["composite_layouts"] == BUDGET
        assert counters["composite_over_budget"] == 0
        running = {(f.key.corner, f.key.size_pct) for f in media.composite_feeds()}
        asked = set()
        for viewer, viewer_token, pip in viewers:
            resp = await api.get(
                f"{PREFIX}/session/{session_id}/quality?pc_id={viewer.pc_id}", token=viewer_token
            )
            assert resp.status == 200, resp.body
            layout = resp.json["layout"]
            requested, delivered = layout["requested"], layout["delivered"]
            assert requested["size_pct"] % 5 == 0 and requested["corner"] != "auto"
            if pip["corner"] != "auto":
                assert requested["corner"] == pip["corner"]
            assert (delivered["corner"], delivered["size_pct"]) in running
            wanted = (requested["corner"], requested["size_pct"])
            asked.add(wanted)
            # Its own layout when that one runs; the nearest running one (and told so) if not.
            assert layout["substitute"] == (wanted not in running)
            assert layout["substitute"] == (requested != delivered)
        assert len(asked) > BUDGET  # the budget was exceeded, so some viewers were given another
    finally:
        for viewer, _, _ in viewers:
            await viewer.close()
        for pub in pubs:
            await pub.pc.close()


async def _layout_state(api, session_id: str, viewer, token: str) -> dict:
    resp = await api.get(f"{PREFIX}/session/{session_id}/quality?pc_id={viewer.pc_id}", token=token)
    assert resp.status == 200, resp.body
    return resp.json["layout"]


@pytest.mark.parametrize("settings", [(2, 2)], indirect=True)
async def test_a_substitute_gets_its_own_layout_when_the_budget_frees(server, api):
    session_id, _, pubs = await publish_both(api)
    a, _ = await view_composite(api, session_id, {"corner": "top-left", "size_pct": 20})
    c, _ = await view_composite(api, session_id, {"corner": "bottom-right", "size_pct": 40})
    b, joined = await view_composite(api, session_id, {"corner": "top-left", "size_pct": 30})
    viewers = [a, b, c]
    try:
        await asyncio.gather(*(v.wait_frames(2, 20) for v in viewers))
        state = await _layout_state(api, session_id, b, joined["viewer_token"])
        assert state["substitute"] and state["delivered"] == {"corner": "top-left", "size_pct": 20}
        # C leaves: its output stops, the budget has room, B gets the layout it chose.
        await c.close()
        viewers.remove(c)
        for _ in range(200):
            state = await _layout_state(api, session_id, b, joined["viewer_token"])
            if not state["substitute"]:
                break
            await asyncio.sleep(0.05)
        assert state == {
            "requested": {"corner": "top-left", "size_pct": 30},
            "delivered": {"corner": "top-left", "size_pct": 30},
            "substitute": False,
        }
        await b.wait_frames(3, 20)
        assert server.services.media.counters()["composite_encoders"] <= 2
    finally:
        for v in viewers:
            await v.close()
        for pub in pubs:
            await pub.pc.close()
