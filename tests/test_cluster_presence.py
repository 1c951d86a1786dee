"""Viewer counts across instances (`server.cluster_presence`): two `PresenceSync`s standing for two
instances on one real SQLite store; each instance's count of a session includes the other's
viewers, a viewer that leaves stops counting, and a silent (crashed) instance's viewers expire."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server.cluster_presence import PresenceSync
from server.presence import Presence
from server.settings import Settings
from store.sqlite import SqliteStore


async def test_counts_add_up_across_instances_and_expire(tmp_path: Path) -> None:
    stores = [SqliteStore(tmp_path / "shared.sqlite3") for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        presences = [Presence(), Presence()]
        a, b = (
            PresenceSync(
                store, presence, Settings(instance_id=name, lease_ttl_s=0.6, lease_heartbeat_s=0.2)
            )
            for store, presence, name in zip(stores, presences, ("inst-a", "inst-b"), strict=True)
        )
        pa, pb = presences
        pa.add("ses1", "v1", "pc1")
        pa.add("ses1", "v1", "pc2")  # one viewer, two connections: counts once
        pa.add("ses1", "v2", "pc3")
        pb.add("ses1", "v3", "pc4")
        pb.add("ses2", "v4", "pc5")
        for sync in (a, b, a):
            await sync.sync()
        assert (pa.count("ses1"), pb.count("ses1")) == (3, 3)
        assert (pa.count("ses2"), pb.count("ses2")) == (1, 1)
        assert (pa.total(), pb.total()) == (2, 2)  # each instance's own load

        # B's viewer of ses1 leaves: A stops counting it after both heartbeats.
        pb.remove("ses1", "pc4")
        await b.sync()
        await a.sync()
        assert (pa.count("ses1"), pb.count("ses1")) == (2, 2)

        # B goes silent (a crash: no more heartbeats): its viewers expire with its documents.
        await asyncio.sleep(0.7)
        await a.sync()
        assert (pa.count("ses1"), pa.count("ses2")) == (2, 0)

        # A leaves cleanly: its documents go at once.
        await a.close()
        await b.sync()
        assert pb.count("ses1") == 0 and pb.count("ses2") == 1
    finally:
        for store in stores:
            await store.close()
