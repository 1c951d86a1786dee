"""One contract for every store backend: the services rely on exactly these behaviours."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from _store_backends import BACKENDS, Backend, backend_fixture

from store import DuplicateKey, Store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from backend_fixture(request, tmp_path)


def chat(i: int, session: str = "s1", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"m{i:03d}",
        "session_id": session,
        "created_at": f"2026-01-01T00:00:{i:02d}.000000Z",
        "seq": i,
        "text": f"message {i}",
        **extra,
    }


def ids(docs: list[dict[str, Any]]) -> list[str]:
    return [d["id"] for d in docs]


def test_is_a_store(backend: Backend) -> None:
    async def body(store: Store) -> None:
        assert isinstance(store, Store)
        await store.ping()

    backend.run(body)


def test_insert_get_round_trip(backend: Backend) -> None:
    doc = {
        "id": "sess-1",
        "title": "Aula",
        "status": "live",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "pricing": {"base": 500, "addons": {"screen": 200, "camera": 100}},
        "pix": None,
        "legacy": False,
        "tags": ["a", "b"],
    }

    async def body(store: Store) -> None:
        await store.insert("broadcast_sessions", doc)
        assert await store.get("broadcast_sessions", "sess-1") == doc
        assert await store.get("broadcast_sessions", "nope") is None
        assert await store.get("broadcast_streams", "sess-1") is None  # collections are separate

    backend.run(body)


def test_duplicate_id_is_refused(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.insert("broadcast_sessions", {"id": "x", "title": "first"})
        with pytest.raises(DuplicateKey):
            await store.insert("broadcast_sessions", {"id": "x", "title": "second"})
        assert await store.get("broadcast_sessions", "x") == {"id": "x", "title": "first"}
        assert await store.count("broadcast_sessions") == 1

    backend.run(body)


def test_duplicate_unique_field_is_refused(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.insert("orders", {"id": "o1", "txid": "TX1", "status": "pending"})
        with pytest.raises(DuplicateKey):
            await store.insert("orders", {"id": "o2", "txid": "TX1", "status": "pending"})
        with pytest.raises(DuplicateKey):
            await store.upsert("orders", {"id": "o3", "txid": "TX1"})
        # Orders without a txid yet (or a null one) do not collide with each other.
        await store.insert("orders", {"id": "o4", "status": "new"})
        await store.insert("orders", {"id": "o5", "status": "new"})
        await store.insert("orders", {"id": "o6", "txid": None})
        await store.insert("orders", {"id": "o7", "txid": None})
        assert sorted(ids(await store.find("orders"))) == ["o1", "o4", "o5", "o6", "o7"]
        # A CAS update that would duplicate the txid is refused too and changes nothing.
        with pytest.raises(DuplicateKey):
            await store.update("orders", "o4", {"txid": "TX1"})
        assert await store.get("orders", "o4") == {"id": "o4", "status": "new"}

    backend.run(body)


def test_find_filters_sorts_and_limits(backend: Backend) -> None:
    async def body(store: Store) -> None:
        for i in (3, 1, 4, 5, 2):
            await store.insert("chat_messages", chat(i))
        await store.insert("chat_messages", chat(6, session="s2"))
        await store.insert("chat_messages", chat(7, deleted=True))

        assert ids(await store.find("chat_messages", {"session_id": "s1"})) == [
            "m001",
            "m002",
            "m003",
            "m004",
            "m005",
            "m007",
        ]
        assert ids(
            await store.find(
                "chat_messages", {"session_id": "s1"}, order_by="created_at", descending=True
            )
        ) == ["m007", "m005", "m004", "m003", "m002", "m001"]
        assert ids(await store.find("chat_messages", order_by="seq", limit=2)) == ["m001", "m002"]
        assert ids(await store.find("chat_messages", {"session_id": "s1", "deleted": True})) == [
            "m007"
        ]
        assert await store.find("chat_messages", {"session_id": "nobody"}) == []
        assert await store.find("chat_messages", limit=0) == []
        # `None` matches a missing field as well as an explicit null.
        assert len(await store.find("chat_messages", {"deleted": None})) == 6
        assert ids(await store.find("chat_messages", {"id": "m004"})) == ["m004"]

    backend.run(body)


def test_paging_with_before_and_after_is_strict(backend: Backend) -> None:
    async def body(store: Store) -> None:
        for i in range(1, 11):
            await store.insert("chat_messages", chat(i))
        newest = await store.find(
            "chat_messages", {"session_id": "s1"}, order_by="created_at", descending=True, limit=3
        )
        assert ids(newest) == ["m010", "m009", "m008"]
        older = await store.find(
            "chat_messages",
            {"session_id": "s1"},
            order_by="created_at",
            descending=True,
            limit=3,
            before=("created_at", newest[-1]["created_at"]),
        )
        assert ids(older) == ["m007", "m006", "m005"]
        newer = await store.find("chat_messages", order_by="seq", after=("seq", 8), limit=10)
        assert ids(newer) == ["m009", "m010"]
        window = await store.find(
            "chat_messages", order_by="seq", after=("seq", 2), before=("seq", 5)
        )
        assert ids(window) == ["m003", "m004"]
        assert ids(await store.find("chat_messages", before=("id", "m003"))) == ["m001", "m002"]

    backend.run(body)


def test_ties_are_broken_by_id(backend: Backend) -> None:
    async def body(store: Store) -> None:
        for doc_id in ("b", "c", "a"):
            await store.insert("broadcast_streams", {"id": doc_id, "session_id": "s", "kind": "x"})
        found = await store.find("broadcast_streams", {"session_id": "s"}, order_by="kind")
        assert ids(found) == ["a", "b", "c"]
        found = await store.find(
            "broadcast_streams", {"session_id": "s"}, order_by="kind", descending=True
        )
        assert ids(found) == ["c", "b", "a"]

    backend.run(body)


def test_equality_is_type_strict(backend: Backend) -> None:
    """`true` is not `1` and `"1"` is not `1`, as in MongoDB."""

    async def body(store: Store) -> None:
        await store.insert("chat_messages", chat(1, deleted=True))
        await store.insert("chat_messages", {"id": "n", "session_id": "s1", "seq": 1, "deleted": 1})
        await store.insert("chat_messages", {"id": "t", "session_id": "s1", "seq": "1"})
        assert ids(await store.find("chat_messages", {"deleted": True})) == ["m001"]
        assert ids(await store.find("chat_messages", {"deleted": 1})) == ["n"]
        assert ids(await store.find("chat_messages", {"seq": 1})) == ["m001", "n"]
        assert ids(await store.find("chat_messages", {"seq": "1"})) == ["t"]
        # Range bounds compare within one type: no string sorts before a number.
        assert ids(await store.find("chat_messages", after=("seq", 0))) == ["m001", "n"]
        assert ids(await store.find("chat_messages", before=("seq", "2"))) == ["t"]

    backend.run(body)


def test_count(backend: Backend) -> None:
    async def body(store: Store) -> None:
        assert await store.count("chat_messages") == 0
        for i in range(1, 6):
            await store.insert("chat_messages", chat(i, session="s1" if i % 2 else "s2"))
        assert await store.count("chat_messages") == 5
        assert await store.count("chat_messages", {"session_id": "s1"}) == 3
        assert await store.count("chat_messages", {"session_id": "s2", "seq": 4}) == 1
        assert await store.count("chat_messages", {"session_id": "s3"}) == 0

    backend.run(body)


def test_update_sets_top_level_fields(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.insert(
            "broadcast_sessions",
            {"id": "s", "status": "live", "pricing": {"base": 1, "addons": {"screen": 2}}},
        )
        updated = await store.update(
            "broadcast_sessions",
            "s",
            {"status": "ended", "ended_at": "2026-01-01T01:00:00.000000Z", "pricing": {"base": 3}},
        )
        expected = {
            "id": "s",
            "status": "ended",
            "pricing": {"base": 3},  # replaced, not merged
            "ended_at": "2026-01-01T01:00:00.000000Z",
        }
        assert updated == expected
        assert await store.get("broadcast_sessions", "s") == expected
        assert await store.update("broadcast_sessions", "s", {"pix": None}) == {
            **expected,
            "pix": None,
        }
        assert await store.update("broadcast_sessions", "missing", {"status": "x"}) is None
        assert await store.get("broadcast_sessions", "missing") is None
        # No fields: a read that still honours `expect`.
        assert await store.update("broadcast_sessions", "s", {}) == {**expected, "pix": None}
        assert await store.update("broadcast_sessions", "s", {}, expect={"status": "live"}) is None

    backend.run(body)


def test_update_with_expect_is_compare_and_set(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.insert("broadcast_streams", {"id": "st", "session_id": "s", "status": "live"})
        stopped = await store.update(
            "broadcast_streams", "st", {"status": "stopped"}, expect={"status": "live"}
        )
        assert stopped == {"id": "st", "session_id": "s", "status": "stopped"}
        again = await store.update(
            "broadcast_streams", "st", {"status": "failed"}, expect={"status": "live"}
        )
        assert again is None
        wrong_session = await store.update(
            "broadcast_streams", "st", {"status": "x"}, expect={"session_id": "other"}
        )
        assert wrong_session is None
        assert await store.get("broadcast_streams", "st") == stopped
        # A missing field is expected as None.
        assert await store.update(
            "broadcast_streams", "st", {"kind": "camera"}, expect={"kind": None}
        ) == {**stopped, "kind": "camera"}

    backend.run(body)


def test_upsert_is_idempotent_and_replaces(backend: Backend) -> None:
    prefs = {
        "id": "s1:v1",
        "session_id": "s1",
        "viewer_id": "v1",
        "enabled_streams": ["screen", "camera"],
        "mode": "separate",
        "pip": {"corner": "bottom-right", "size_pct": 25},
    }

    async def body(store: Store) -> None:
        await store.upsert("viewer_preferences", prefs)
        await store.upsert("viewer_preferences", prefs)
        assert await store.count("viewer_preferences") == 1
        assert await store.get("viewer_preferences", "s1:v1") == prefs
        smaller = {"id": "s1:v1", "session_id": "s1", "viewer_id": "v1", "mode": "composite"}
        await store.upsert("viewer_preferences", smaller)
        assert await store.get("viewer_preferences", "s1:v1") == smaller
        assert await store.count("viewer_preferences", {"viewer_id": "v1"}) == 1

    backend.run(body)


def test_delete(backend: Backend) -> None:
    async def body(store: Store) -> None:
        await store.insert("recordings", {"id": "r", "session_id": "s"})
        assert await store.delete("recordings", "r") is True
        assert await store.delete("recordings", "r") is False
        assert await store.get("recordings", "r") is None
        await store.insert("recordings", {"id": "r", "session_id": "s2"})  # the id is free again
        assert await store.count("recordings") == 1

    backend.run(body)


@pytest.mark.parametrize("field", ["title", "$where", "status; DROP TABLE x", "a.b", "_id", ""])
def test_undeclared_fields_are_refused(backend: Backend, field: str) -> None:
    async def body(store: Store) -> None:
        await store.insert("broadcast_sessions", {"id": "s", "title": "t", "status": "live"})
        with pytest.raises(ValueError):
            await store.find("broadcast_sessions", {field: "t"})
        with pytest.raises(ValueError):
            await store.count("broadcast_sessions", {field: "t"})
        with pytest.raises(ValueError):
            await store.find("broadcast_sessions", order_by=field)
        with pytest.raises(ValueError):
            await store.find("broadcast_sessions", before=(field, "t"))
        with pytest.raises(ValueError):
            await store.update("broadcast_sessions", "s", {"status": "x"}, expect={field: "t"})
        assert await store.get("broadcast_sessions", "s") == {
            "id": "s",
            "title": "t",
            "status": "live",
        }

    backend.run(body)


@pytest.mark.parametrize(
    "value",
    [{"$ne": 1}, {"$gt": ""}, {"a": 1}, [1, 2], ["live"], 1.5, float("nan"), b"live"],
    ids=["op-ne", "op-gt", "dict", "list", "list-str", "float", "nan", "bytes"],
)
def test_non_scalar_filter_values_are_refused(backend: Backend, value: Any) -> None:
    async def body(store: Store) -> None:
        await store.insert("broadcast_sessions", {"id": "s", "status": "live"})
        with pytest.raises(TypeError):
            await store.find("broadcast_sessions", {"status": value})
        with pytest.raises(TypeError):
            await store.count("broadcast_sessions", {"status": value})
        with pytest.raises(TypeError):
            await store.find("broadcast_sessions", after=("status", value))
        with pytest.raises(TypeError):
            await store.update("broadcast_sessions", "s", {"status": "x"}, expect={"status": value})
        assert await store.get("broadcast_sessions", "s") == {"id": "s", "status": "live"}

    backend.run(body)


def test_bad_ids_documents_and_update_fields_are_refused(backend: Backend) -> None:
    async def body(store: Store) -> None:
        with pytest.raises(TypeError):
            await store.insert("broadcast_sessions", {"id": 1})
        with pytest.raises(TypeError):
            await store.insert("broadcast_sessions", {"title": "no id"})
        with pytest.raises(ValueError):
            await store.insert("broadcast_sessions", {"id": ""})
        with pytest.raises(ValueError):
            await store.insert("broadcast_sessions", {"id": "a", "_id": "b"})
        with pytest.raises(TypeError):
            await store.get("broadcast_sessions", {"$ne": ""})  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await store.get("not_a_collection", "a")  # type: ignore[arg-type]
        await store.insert("broadcast_sessions", {"id": "a", "status": "live"})
        for name in ("$set", "a.b", "id", "_id", "", "x y"):
            with pytest.raises(ValueError):
                await store.update("broadcast_sessions", "a", {name: 1})
        with pytest.raises(ValueError):
            await store.find("broadcast_sessions", limit=-1)
        with pytest.raises(TypeError):
            await store.find("broadcast_sessions", before=("status", None))
        assert await store.get("broadcast_sessions", "a") == {"id": "a", "status": "live"}
        assert await store.count("broadcast_sessions") == 1

    backend.run(body)


def test_data_survives_reopen(backend: Backend) -> None:
    async def write() -> None:
        async with backend.open() as store:
            await store.insert("broadcast_sessions", {"id": "s", "status": "live"})
            await store.upsert("viewer_preferences", {"id": "s:v", "session_id": "s", "mode": "x"})
            await store.update("broadcast_sessions", "s", {"status": "ended"})

    async def read() -> None:
        async with backend.open() as store:
            # Opening again is idempotent (tables and indexes already exist).
            await store.open()
            assert await store.get("broadcast_sessions", "s") == {"id": "s", "status": "ended"}
            assert await store.find("viewer_preferences", {"session_id": "s"}) == [
                {"id": "s:v", "session_id": "s", "mode": "x"}
            ]

    asyncio.run(write())
    asyncio.run(read())


def test_concurrent_compare_and_set_loses_no_update(backend: Backend) -> None:
    tasks = 40

    async def increment(store: Store) -> int:
        attempts = 0
        while attempts < 10_000:  # a broken CAS fails the test instead of spinning forever
            attempts += 1
            current = await store.get("chat_messages", "counter")
            assert current is not None
            done = await store.update(
                "chat_messages",
                "counter",
                {"seq": current["seq"] + 1},
                expect={"seq": current["seq"]},
            )
            if done is not None:
                return attempts
        raise AssertionError("compare-and-set never succeeded")

    async def body(store: Store) -> None:
        await store.insert("chat_messages", {"id": "counter", "session_id": "s", "seq": 0})
        attempts = await asyncio.gather(*(increment(store) for _ in range(tasks)))
        final = await store.get("chat_messages", "counter")
        assert final is not None and final["seq"] == tasks
        assert sum(attempts) >= tasks

    backend.run(body)


def test_concurrent_inserts(backend: Backend) -> None:
    async def try_insert(store: Store, doc_id: str) -> bool:
        try:
            await store.insert("orders", {"id": doc_id, "txid": f"tx-{doc_id}"})
        except DuplicateKey:
            return False
        return True

    async def body(store: Store) -> None:
        distinct = await asyncio.gather(*(try_insert(store, f"o{i}") for i in range(50)))
        assert all(distinct)
        same = await asyncio.gather(*(try_insert(store, "same") for _ in range(20)))
        assert sum(same) == 1
        assert await store.count("orders") == 51

    backend.run(body)


def test_unicode_text_round_trips_and_matches(backend: Backend) -> None:
    title = "Transmissão ao vivo — ação, coração 🎥 日本語 \u0000 end"

    async def body(store: Store) -> None:
        await store.insert("chat_messages", {"id": "ü-1", "session_id": "sessão-ç", "text": title})
        assert await store.get("chat_messages", "ü-1") == {
            "id": "ü-1",
            "session_id": "sessão-ç",
            "text": title,
        }
        found = await store.find("chat_messages", {"session_id": "sessão-ç"})
        assert ids(found) == ["ü-1"]
        assert await store.count("chat_messages", {"session_id": "sessao-c"}) == 0

    backend.run(body)


def test_token_bucket_spends_refills_and_refuses_without_writing(backend: Backend) -> None:
    async def body(store: Store) -> None:
        # Wall-clock based: MongoDB (and its emulation) expire fully refilled buckets by TTL.
        t = time.time()
        # burst 3, one token every 2 s
        assert [await store.take_token("join:1.2.3.4", 3, 0.5, t) for _ in range(3)] == [0.0] * 3
        wait = await store.take_token("join:1.2.3.4", 3, 0.5, t)
        assert wait == pytest.approx(2.0)
        # Refusals spend nothing: still 2 s later exactly one token is there.
        assert await store.take_token("join:1.2.3.4", 3, 0.5, t + 1.0) == pytest.approx(1.0)
        assert await store.take_token("join:1.2.3.4", 3, 0.5, t + 2.0) == 0.0
        assert await store.take_token("join:1.2.3.4", 3, 0.5, t + 2.0) > 0
        # Buckets are independent; a clock behind the bucket's adds nothing.
        assert await store.take_token("join:5.6.7.8", 3, 0.5, t) == 0.0
        assert await store.take_token("join:1.2.3.4", 3, 0.5, t - 100) > 0
        # Refill stops at the burst.
        later = [await store.take_token("join:1.2.3.4", 3, 0.5, t + 1000) for _ in range(4)]
        assert later[:3] == [0.0] * 3 and later[3] > 0
        for bad in (("", 3, 1.0, t), ("k", 0, 1.0, t), ("k", 3, 0.0, t), ("k", 3, 1.0, "x")):
            with pytest.raises(ValueError):
                await store.take_token(*bad)  # type: ignore[arg-type]

    backend.run(body)


def test_concurrent_token_takers_never_overspend(backend: Backend) -> None:
    async def body(store: Store) -> None:
        t = time.time()
        got = await asyncio.gather(*(store.take_token("offer:x", 10, 0.001, t) for _ in range(40)))
        assert sum(1 for g in got if g == 0.0) == 10

    backend.run(body)


def test_accounts_collections(backend: Backend) -> None:
    """`users` (unique username), `api_tokens` by owner and kind, sessions by owner, `replays`."""

    async def body(store: Store) -> None:
        await store.insert("users", {"id": "u1", "username": "ana", "disabled": False})
        with pytest.raises(DuplicateKey):
            await store.insert("users", {"id": "u2", "username": "ana", "disabled": False})
        await store.insert("users", {"id": "u3", "username": "bia", "disabled": True})
        assert ids(await store.find("users", {"username": "ana"})) == ["u1"]
        assert ids(await store.find("users", {"disabled": True})) == ["u3"]
        for i, kind in enumerate(("api", "web", "api")):
            doc = {"id": f"{i:064x}", "user_id": "u1", "kind": kind, "created_at": f"t{i}"}
            await store.insert("api_tokens", doc)
        api = await store.find(
            "api_tokens", {"user_id": "u1", "kind": "api"}, order_by="created_at"
        )
        assert ids(api) == [f"{0:064x}", f"{2:064x}"]
        assert await store.delete("api_tokens", f"{1:064x}")
        assert await store.count("api_tokens", {"user_id": "u1"}) == 2
        for i, owner in enumerate(("u1", "u3", "u1")):
            await store.insert(
                "broadcast_sessions", {"id": f"s{i}", "owner_id": owner, "created_at": f"t{i}"}
            )
        mine = await store.find(
            "broadcast_sessions", {"owner_id": "u1"}, order_by="created_at", descending=True
        )
        assert ids(mine) == ["s2", "s0"]
        await store.insert("replays", {"id": "s0", "session_id": "s0", "status": "rendering"})
        done = await store.update(
            "replays", "s0", {"status": "done"}, expect={"status": "rendering"}
        )
        assert done is not None and done["status"] == "done"

    backend.run(body)


def test_lease_acquire_renew_expire_release(backend: Backend) -> None:
    """`acquire_lease`: free → granted (epoch 1); held → the holder's lease, unchanged; renewed by
    its holder (same epoch); expired → the next asker's (epoch 2); released (expires_at 0 through a
    compare-and-set `update` on the holder) → free at once."""

    async def body(store: Store) -> None:
        t = 1_000_000.0
        a = await store.acquire_lease("ses1", "inst-a", "http://a:1", 10, t)
        assert (a["holder"], a["address"], a["epoch"], a["expires_at"]) == (
            "inst-a",
            "http://a:1",
            1,
            t + 10,
        )
        refused = await store.acquire_lease("ses1", "inst-b", "http://b:1", 10, t + 5)
        assert refused == a
        renewed = await store.acquire_lease("ses1", "inst-a", "http://a:1", 10, t + 6)
        assert (renewed["holder"], renewed["epoch"], renewed["expires_at"]) == ("inst-a", 1, t + 16)
        assert renewed["acquired_at"] == t
        assert (await store.acquire_lease("ses1", "inst-b", "http://b:1", 10, t + 15.9))[
            "holder"
        ] == "inst-a"
        taken = await store.acquire_lease("ses1", "inst-b", "http://b:1", 10, t + 16)
        assert (taken["holder"], taken["address"], taken["epoch"]) == ("inst-b", "http://b:1", 2)
        assert await store.get("session_leases", "ses1") == taken
        assert ids(await store.find("session_leases", {"holder": "inst-b"})) == ["ses1"]
        # A stale holder's release changes nothing; the holder's frees it for anyone.
        assert (
            await store.update(
                "session_leases", "ses1", {"expires_at": 0}, expect={"holder": "inst-a"}
            )
            is None
        )
        released = await store.update(
            "session_leases", "ses1", {"expires_at": 0}, expect={"holder": "inst-b"}
        )
        assert released is not None
        back = await store.acquire_lease("ses1", "inst-a", "http://a:1", 10, t + 17)
        assert (back["holder"], back["epoch"]) == ("inst-a", 3)
        other = await store.acquire_lease("ses2", "inst-b", "http://b:1", 10, t)
        assert other["holder"] == "inst-b"
        for bad in (("", "a", "u", 1, t), ("k", "", "u", 1, t), ("k", "a", "u", 0, t)):
            with pytest.raises(ValueError):
                await store.acquire_lease(*bad)  # type: ignore[arg-type]

    backend.run(body)


def test_concurrent_lease_acquirers_exactly_one_wins(backend: Backend) -> None:
    """Twelve acquirers on separate connections (as separate instances are) race for a free lease,
    then for the same lease once expired: each time exactly one holder is granted it, and every
    answer names that winner."""

    async def body(_store: Store) -> None:
        async with AsyncExitStack() as stack:
            stores = [await stack.enter_async_context(backend.open()) for _ in range(12)]
            for round_, now in enumerate((1000.0, 2000.0), start=1):
                answers = await asyncio.gather(
                    *(
                        s.acquire_lease("race", f"inst-{i}", f"http://{i}", 10, now)
                        for i, s in enumerate(stores)
                    )
                )
                winners = {a["holder"] for a in answers}
                assert len(winners) == 1, answers
                assert {a["epoch"] for a in answers} == {round_}

    backend.run(body)
