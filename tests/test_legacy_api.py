"""The pre-multistream single-stream API keeps working on the same sessions, and on the documents
`multistream migrate` converts from the old server's collection (SQLite and MongoDB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from store.mongo import MongoStore
from tests.api_helpers import PREFIX, assert_error

BIN = Path(sys.executable).parent / "multistream"

# The whole module runs on SQLite and on MongoDB (the wire server started by conftest).
pytestmark = pytest.mark.store_backends


async def test_legacy_start_status_stop(api) -> None:
    r = await api.post(f"{PREFIX}/start", {"title": "old client"}, token=api.broadcaster_token)
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
    assert_error(
        await api.post(f"{PREFIX}/start", {"price_centavos": -5}, token=api.broadcaster_token), 400
    )
    assert_error(
        await api.post(f"{PREFIX}/start", {"stream": "x"}, token=api.broadcaster_token), 400
    )
    assert_error(await api.get(f"{PREFIX}/ses_nope"), 404)


# Documents as the pre-multistream server wrote them: on MongoDB keyed by `_id` only, times in
# several shapes, statuses in its own words.
LEGACY_DOCS: list[dict[str, Any]] = [
    {
        "_id": "old-live-1",
        "title": "Aula antiga",
        "status": "streaming",
        "created_at": "2025-03-01T12:00:00Z",
    },
    {
        "_id": "old-ended-1",
        "status": "finished",
        "created_at": 1735689600,
        "ended_at": 1735693200000,
    },
    {"_id": "old broken", "status": "exploded"},
]


async def _seed_legacy(server: Any) -> None:
    backend = server.services.store.inner  # the metrics wrapper's backend
    if isinstance(backend, MongoStore):
        await backend.database.livestreams.insert_many([dict(d) for d in LEGACY_DOCS])
        return
    for doc in LEGACY_DOCS:  # SQLite has no `_id`: the same documents with `id`
        await backend.insert(
            "livestreams", {"id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}
        )


def _migrate_cli(server: Any) -> subprocess.CompletedProcess[str]:
    settings = server.services.settings
    store = ["--store", settings.store_url] if settings.store_url else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTISTREAM_")}
    return subprocess.run(
        [str(BIN), "migrate", "--data-dir", str(settings.data_dir), *store],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_cli_migrate_then_the_legacy_api_serves_the_old_documents(server, api) -> None:
    await _seed_legacy(server)
    done = _migrate_cli(server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 converted, 0 already migrated, 1 skipped" in done.stdout, done.stdout

    r = await api.get(f"{PREFIX}/old-live-1")
    assert r.status == 200, r.body
    live = r.json["livestream"]
    assert (live["id"], live["title"], live["status"]) == ("old-live-1", "Aula antiga", "live")
    ended = (await api.get(f"{PREFIX}/old-ended-1")).json["livestream"]
    assert ended["status"] == "ended"
    status = (await api.get(f"{PREFIX}/session/old-ended-1/status")).json
    assert status["session"]["ended_at"] == "2025-01-01T01:00:00.000+00:00"
    assert [s["kind"] for s in status["streams"]] == ["camera"]
    assert_error(await api.get(f"{PREFIX}/old%20broken"), 404)  # skipped: unknown status
    assert status["session"]["legacy"] is True

    again = _migrate_cli(server)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 converted, 2 already migrated, 1 skipped" in again.stdout, again.stdout
