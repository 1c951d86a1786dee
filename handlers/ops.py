"""Operations endpoints: liveness, readiness and Prometheus metrics (outside the versioned API)."""

from __future__ import annotations

import asyncio
import hmac

from handlers.base import ApiHandler, bearer_token
from server.errors import Unauthorized, Unavailable
from server.metrics import CONTENT_TYPE

# A readiness probe must answer before the orchestrator's own timeout (3 s in deploy/k8s).
STORE_PING_TIMEOUT_S = 2.0


class HealthzHandler(ApiHandler):
    """The process is up and its event loop answers: nothing else is checked (liveness)."""

    def get(self) -> None:
        self.write_json({"status": "ok", "instance_id": self.services.settings.instance_id})


class ReadyzHandler(ApiHandler):
    """503 while draining or while the store does not answer, so no new work is routed here."""

    async def get(self) -> None:
        drain = self.services.drain
        if drain.draining:
            raise Unavailable("instance is draining", code="draining")
        try:
            await asyncio.wait_for(self.services.store.ping(), STORE_PING_TIMEOUT_S)
        except Exception as exc:
            raise Unavailable("store unreachable", code="store_unavailable") from exc
        self.write_json({"status": "ready", "instance_id": self.services.settings.instance_id})


class MetricsHandler(ApiHandler):
    """Prometheus text exposition of this instance's own registry; with `metrics_token` set, only
    for a scraper presenting it (viewer counts, peers and routes are not for the public)."""

    async def get(self) -> None:
        token = self.services.settings.metrics_token
        if token:
            given = bearer_token(self.request.headers.get("Authorization")) or ""
            if not hmac.compare_digest(given.encode(), token.reveal().encode()):
                raise Unauthorized("metrics need the metrics bearer token", code="invalid_token")
        metrics = self.services.metrics
        if metrics is None:
            raise Unavailable("metrics are not enabled", code="metrics_disabled")
        body = await metrics.render()
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(body)


routes = [
    (r"/healthz", HealthzHandler),
    (r"/readyz", ReadyzHandler),
    (r"/metrics", MetricsHandler),
]
