"""Health, readiness and metrics endpoints on the real app, and the metrics' own registry."""

from __future__ import annotations

import asyncio
import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.healthcheck import check
from server.metrics import Metrics
from tests.api_helpers import PREFIX, assert_error
from tests.media_helpers import start_session
from tests.ops_helpers import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_healthz_and_readyz_answer_when_up(server, api) -> None:
    r = await api.get("/healthz")
    assert r.status == 200 and r.json == {"status": "ok", "instance_id": "test-instance"}
    r = await api.get("/readyz")
    assert r.status == 200 and r.json["status"] == "ready"


async def test_draining_turns_readiness_and_new_work_into_503(server, api) -> None:
    started = await start_session(api)
    sid = started["session"]["id"]
    server.services.drain.begin()
    assert_error(await api.get("/readyz"), 503, "draining")
    assert_error(
        await api.post(f"{PREFIX}/session/start", {"title": "late"}, token=api.broadcaster_token),
        503,
        "draining",
    )
    assert_error(await api.post(f"{PREFIX}/session/{sid}/join"), 503, "draining")
    # Liveness and the existing session stay reachable while draining.
    assert (await api.get("/healthz")).status == 200
    assert (await api.get(f"{PREFIX}/session/{sid}/status")).status == 200
    text = (await api.get("/metrics")).body.decode()
    assert samples(text)[("multistream_draining", ())] == 1.0


async def test_readyz_is_503_and_store_errors_count_when_the_store_is_down(server, api) -> None:
    await server.services.store.close()
    assert_error(await api.get("/readyz"), 503, "store_unavailable")
    text = (await api.get("/metrics")).body.decode()
    values = samples(text)
    assert values[("multistream_store_errors_total", (("operation", "ping"),))] >= 1
    assert values[("multistream_store_errors_total", (("operation", "find"),))] >= 1
    assert (await api.get("/healthz")).status == 200


async def test_metrics_count_sessions_streams_and_latency_by_route_pattern(server, api) -> None:
    started = await start_session(api)
    sid = started["session"]["id"]
    await api.get(f"{PREFIX}/session/{sid}/status")
    await api.get(f"{PREFIX}/session/does-not-exist/status")
    r = await api.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    text = r.body.decode()
    values = samples(text)
    assert values[("multistream_sessions_live", ())] == 1.0
    for kind in ("screen", "camera"):
        assert values[("multistream_streams", (("kind", kind), ("status", "pending")))] == 1.0
        assert values[("multistream_streams", (("kind", kind), ("status", "live")))] == 0.0
    status_route = f"{PREFIX}/session/{{}}/status"
    ok = (("method", "GET"), ("route", status_route), ("status", "200"))
    missing = (("method", "GET"), ("route", status_route), ("status", "404"))
    assert values[("multistream_http_request_duration_seconds_count", ok)] == 1.0
    assert values[("multistream_http_request_duration_seconds_count", missing)] == 1.0
    # Labels carry the route pattern, never a raw path with ids in it.
    assert sid not in text and "does-not-exist" not in text
    assert values[("multistream_instance_info", (("instance", "test-instance"),))] == 1.0
    # The media plane's gauges are read at scrape time.
    assert values[("multistream_peer_connections", (("role", "publisher"),))] == 0.0
    assert ("multistream_encoders_running", ()) in values
    await api.get("/no/such/route")
    text = (await api.get("/metrics")).body.decode()
    assert 'route="unmatched"' in text
    assert "/no/such/route" not in text


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics("a"), Metrics("b")
    a.observe_request("/x", "GET", 200, 0.01)
    assert a.registry is not b.registry
    assert re.search(rb'route="/x"', generate_latest(a.registry))
    assert b"/x" not in generate_latest(b.registry)


async def test_container_healthcheck_probe(server) -> None:
    ok = await asyncio.to_thread(check, {"MULTISTREAM_PORT": str(server.port)})
    assert ok is True
    closed = await asyncio.to_thread(check, {"MULTISTREAM_PORT": str(free_port())})
    assert closed is False
    assert check({"MULTISTREAM_PORT": "not-a-port"}) is False
