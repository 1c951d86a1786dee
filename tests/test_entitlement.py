"""One media authorisation rule on every route that returns media or its metadata (issue 10.1).

A real recording of a priced session's camera, then each route — live signaling, the recordings
list, the download and a Range download — asked by an unpaid viewer (402), a paid viewer (200/206),
the broadcaster (200/206) and a token of another session (403), while live and after the end.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api_helpers import PREFIX, START_BODY, assert_error, snapshot
from tests.media_helpers import PatternTrack, publish, view
from tests.test_payments import join, pay, set_enabled

CAMERA_ONLY: dict[str, Any] = {
    **START_BODY,
    "streams": ["camera"],
    "quality": {"camera": START_BODY["quality"]["camera"]},
}


def _valor(centavos: int) -> str:
    return f"{centavos // 100}.{centavos % 100:02d}"


async def _recording(api: Any, token: str, sid: str) -> dict[str, Any]:
    for _ in range(300):
        listing = await api.get(f"{PREFIX}/session/{sid}/recordings", token=token)
        assert listing.status == 200, listing.body
        if listing.json["recordings"]:
            return dict(listing.json["recordings"][0])
        await asyncio.sleep(0.02)
    raise AssertionError("no recording appeared")


async def _check_media_routes(
    api: Any, sid: str, rec: dict, tokens: dict[str, str], *, live: bool
) -> None:
    """`live`: the muxer has not flushed the file yet (it may be empty), so no range exists."""
    listing = f"{PREFIX}/session/{sid}/recordings"
    download = f"{listing}/{rec['id']}"
    rng = {"Range": "bytes=0-99"}
    for who in ("broadcaster", "paid"):
        got = await api.get(listing, token=tokens[who])
        assert got.status == 200, (who, got.body)
        assert [r["id"] for r in got.json["recordings"]] == [rec["id"]], who
        whole = await api.get(download, token=tokens[who])
        assert whole.status == 200, (who, whole.status)
        if live:
            continue
        assert len(whole.body) > 100
        part = await api.get(download, token=tokens[who], headers=rng)
        assert part.status == 206 and part.body == whole.body[:100], (who, part.status)
        # A <video src> sends the token as a query parameter: same rule.
        q = await api.get(f"{download}?access_token={tokens[who]}", headers=rng)
        assert q.status == 206, (who, q.status)
    for who, status, code in (("unpaid", 402, "payment_required"), ("other", 403, "forbidden")):
        assert_error(await api.get(listing, token=tokens[who]), status, code)
        assert_error(await api.get(download, token=tokens[who]), status, code)
        assert_error(await api.get(download, token=tokens[who], headers=rng), status, code)
        assert_error(await api.get(f"{download}?access_token={tokens[who]}"), status, code)


async def test_recordings_follow_the_signaling_rule_live_and_after_the_end(api, server) -> None:
    started = (
        await api.post(f"{PREFIX}/session/start", CAMERA_ONLY, token=api.broadcaster_token)
    ).json
    sid, btoken = started["session"]["id"], started["broadcaster_token"]
    camera = started["session"]["streams"][0]["id"]
    other = (
        await api.post(f"{PREFIX}/session/start", CAMERA_ONLY, token=api.broadcaster_token)
    ).json
    other_viewer = await join(api, other["session"]["id"])

    unpaid = await join(api, sid)  # the camera is enabled by default, never paid
    paid = await join(api, sid)
    assert paid["preferences"]["enabled_streams"] == ["camera"]
    await pay(api, paid["payment"]["txid"], _valor(paid["payment"]["amount_centavos"]))
    tokens = {
        "broadcaster": btoken,
        "paid": paid["viewer_token"],
        "unpaid": unpaid["viewer_token"],
        "other": other_viewer["viewer_token"],
    }

    pub = await publish(api, btoken, camera, PatternTrack("camera", 160, 120, 15))
    viewers = []
    try:
        rec = await _recording(api, btoken, sid)

        # Live signaling: the same rule (402 unpaid, 403 other session, 200 paid).
        offer_path = f"{PREFIX}/stream/{camera}/signal/offer"
        before = await snapshot(server.services.store)
        v, resp = await view(api, tokens["unpaid"], offer_path)
        assert_error(resp, 402, "payment_required")
        v, resp = await view(api, tokens["other"], offer_path)
        assert_error(resp, 403, "forbidden")
        assert await snapshot(server.services.store) == before
        v, resp = await view(api, tokens["paid"], offer_path)
        assert resp.status == 200, resp.body
        viewers.append(v)

        await _check_media_routes(api, sid, rec, tokens, live=True)
    finally:
        for v in viewers:
            await v.close()
        await pub.pc.close()

    ended = await api.post(f"{PREFIX}/session/{sid}/end", token=btoken)
    assert ended.status == 200
    await _check_media_routes(api, sid, rec, tokens, live=False)


async def test_viewer_that_paid_for_one_stream_lists_only_that_one(api, server) -> None:
    """Recordings of an enabled-but-unpaid stream stay hidden: enabling it makes the list 402."""
    started = (
        await api.post(f"{PREFIX}/session/start", START_BODY, token=api.broadcaster_token)
    ).json
    sid = started["session"]["id"]
    joined = await join(api, sid)
    token = joined["viewer_token"]
    order = (await set_enabled(api, sid, token, ["screen"]))["payment"]
    await pay(api, order["txid"], _valor(order["amount_centavos"]))
    store = server.services.store
    for kind, stream in ((s["kind"], s["id"]) for s in started["session"]["streams"]):
        await store.insert(
            "recordings",
            {
                "id": f"rec_{kind}",
                "session_id": sid,
                "stream_id": stream,
                "kind": kind,
                "status": "complete",
                "file": f"{sid}/{kind}.mkv",
                "started_at": "2026-11-29T00:00:00Z",
            },
        )
    listing = await api.get(f"{PREFIX}/session/{sid}/recordings", token=token)
    assert listing.status == 200, listing.body
    assert [r["kind"] for r in listing.json["recordings"]] == ["screen"]
    await set_enabled(api, sid, token, ["screen", "camera"])
    err = assert_error(
        await api.get(f"{PREFIX}/session/{sid}/recordings", token=token), 402, "payment_required"
    )
    assert "camera" in err["message"]
    assert_error(
        await api.get(f"{PREFIX}/session/{sid}/recordings/rec_camera", token=token),
        402,
        "payment_required",
    )
