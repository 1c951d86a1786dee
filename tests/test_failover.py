"""Failover and hand-off between real server processes sharing one store (SQLite file, MongoDB
database): the owner of a live session is SIGKILLed (another instance takes the session once the
lease expires) or drained with SIGTERM (the lease is handed over at once); a publisher and a viewer
that reconnect by themselves (new offer over the signaling WebSocket, through whichever instance
answers) get video flowing again through the new owner. The time from the kill or the signal to
the viewer's first new frame is printed and written to `failover-timeline.json`; the numbers go
in DEPLOYMENT.md, bounds here are only generous timeouts."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.api_helpers import assert_error
from tests.cluster_helpers import (
    Resilient,
    cluster,
    live_session,
    peers,
    recordings,
    wait_peers,
)
from tests.conftest import Client
from tests.media_helpers import PREFIX, join

pytestmark = pytest.mark.store_backends


@pytest.mark.timeout(180)
async def test_owner_killed_another_instance_takes_over_after_the_lease(
    tmp_path: Path, store_url: str | None
) -> None:
    lease = {"MULTISTREAM_LEASE_TTL": "3", "MULTISTREAM_LEASE_HEARTBEAT": "1"}
    with cluster(tmp_path, store_url, extra=lease) as (a_proc, b_proc):
        a, b = Client(a_proc.base_url), Client(b_proc.base_url)
        sid, publisher, viewer = await live_session(a, b, a_proc.base_url, b_proc.base_url)
        # And a viewer of the server-side composite, which must resume on the new owner too.
        joined = await join(b, sid, {"enabled_streams": ["screen"], "mode": "composite"})
        composite = Resilient(
            [b_proc.base_url, a_proc.base_url],
            f"{PREFIX}/session/{sid}/composite/signal/ws",
            joined["viewer_token"],
        )
        composite.start()
        try:
            await composite.wait_connection(1, frames=True, timeout=20)
            before = (await b.get(f"{PREFIX}/session/{sid}/status")).json["owner"]
            assert (before["instance_id"], before["epoch"]) == ("inst-a", 1)
            assert await peers(a, "publisher") == 1.0

            t_kill = time.monotonic()
            a_proc.proc.kill()  # SIGKILL: no drain, no release; the lease just stops being renewed
            # While the dead owner's lease runs, B cannot reach it: a clear 503 the client retries.
            refused = await b.post(
                viewer.path.replace("/signal/ws", "/signal/offer"),
                {"sdp": "v=0", "type": "offer"},
                token=viewer.token,
            )
            assert_error(refused, 503, "owner_unavailable")
            back = await viewer.wait_connection(2, frames=True, timeout=60)
            ttv = back - t_kill
            republished = await publisher.wait_connection(2, frames=False, timeout=5) - t_kill
            composite_back = await composite.wait_connection(2, frames=True, timeout=30) - t_kill

            after = (await b.get(f"{PREFIX}/session/{sid}/status")).json
            assert (after["owner"]["instance_id"], after["owner"]["epoch"]) == ("inst-b", 2)
            assert after["signaling_url"] == "" and after["session"]["status"] == "live"
            await wait_peers(b, "publisher", 1.0)
            await wait_peers(b, "subscriber", 2.0)
            # The recording goes on in a new file, written by B.
            token = publisher.token
            recs = await recordings(b, sid, token, 2)
            assert len(recs) == 2, recs
            # A's, which nobody can finalise, is marked interrupted; B's is being written.
            assert sorted(r["status"] for r in recs) == ["interrupted", "recording"], recs
            timeline = {
                "lease_ttl_s": 3,
                "heartbeat_s": 1,
                "publisher_reconnected_s": round(republished, 3),
                "viewer_video_back_s": round(ttv, 3),
                "composite_viewer_video_back_s": round(composite_back, 3),
                "refusals_seen_by_viewer": len(viewer.refusals),
            }
            (tmp_path / "failover-timeline.json").write_text(json.dumps(timeline))
            print("failover after SIGKILL:", json.dumps(timeline))
        finally:
            await composite.close()
            await viewer.close()
            await publisher.close()


@pytest.mark.timeout(180)
async def test_drained_owner_hands_over_without_waiting_for_the_lease(
    tmp_path: Path, store_url: str | None
) -> None:
    # A lease far longer than the wait allowed below: only a hand-off can bring video back in time.
    lease = {"MULTISTREAM_LEASE_TTL": "120", "MULTISTREAM_LEASE_HEARTBEAT": "2"}
    with cluster(tmp_path, store_url, extra=lease) as (a_proc, b_proc):
        a, b = Client(a_proc.base_url), Client(b_proc.base_url)
        sid, publisher, viewer = await live_session(a, b, a_proc.base_url, b_proc.base_url)
        try:
            t_term = time.monotonic()
            a_proc.signal(signal.SIGTERM)
            back = await viewer.wait_connection(2, frames=True, timeout=30)
            ttv = back - t_term
            assert a_proc.proc.wait(30) == 0
            owner = (await b.get(f"{PREFIX}/session/{sid}/status")).json["owner"]
            assert (owner["instance_id"], owner["epoch"]) == ("inst-b", 2)
            await wait_peers(b, "publisher", 1.0)
            recs = await recordings(b, sid, publisher.token, 2)
            assert len(recs) == 2 and any(r["status"] == "complete" for r in recs), recs
            assert "drain step=leases_released" in a_proc.log_text()
            timeline = {"viewer_video_back_s": round(ttv, 3), "lease_ttl_s": 120}
            (tmp_path / "handoff-timeline.json").write_text(json.dumps(timeline))
            print("hand-off after SIGTERM:", json.dumps(timeline))
        finally:
            await viewer.close()
            await publisher.close()
