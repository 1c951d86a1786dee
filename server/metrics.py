"""Prometheus metrics for one server process, in a registry of its own (never the global one).

Counters and the latency histogram are updated as things happen. Gauges are read at scrape time:
`render()` first asks the store (async) for this instance's live sessions and their streams, then a
custom collector reads the in-memory parts — presence, the drain flag and the media plane's
`counters()` — so a gauge can never drift from the state it describes.

The media plane exposes `counters() -> Mapping[str, Any]` (`peer_connections`, `publishers`,
`viewers`, `encoders_running`, `composite_encoders`, `composite_layouts`, `recorders`,
`frames_dropped`, `frames_encoded`) and distinct viewers by mode as `viewers_separate` and
`viewers_composite` (or a `viewers_by_mode` mapping).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from server.domain import STREAM_KINDS, STREAM_STATUSES, VIEW_MODES
from store.protocol import DuplicateKey, Store

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Scrape-time store reads cover at most this many live sessions of one instance.
_MAX_SESSIONS = 1000


class MediaStats(Protocol):
    """The media plane: `counters()` (flat counts), optionally `metrics_snapshot()` with labels."""

    def counters(self) -> Mapping[str, Any]: ...


class DrainState(Protocol):
    @property
    def draining(self) -> bool: ...


class Leases(Protocol):
    """The ownership leases (`server.ownership.Ownership`): held leases and this instance's load."""

    held: dict[str, dict[str, Any]]
    address: str

    def load(self) -> dict[str, Any]: ...


class _Counts(Protocol):
    def total(self) -> int: ...


class _LiveCollector(Collector):
    """Yields the scrape-time gauges from the latest store read and the in-memory sources."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        info = GaugeMetricFamily(
            "multistream_instance_info", "This server instance.", labels=["instance"]
        )
        info.add_metric([m.instance_id], 1)
        yield info

        draining = GaugeMetricFamily(
            "multistream_draining", "1 while the instance drains after SIGTERM/SIGINT."
        )
        draining.add_metric([], 1 if (m.drain is not None and m.drain.draining) else 0)
        yield draining

        sessions = GaugeMetricFamily(
            "multistream_sessions_live", "Live sessions ingested by this instance."
        )
        sessions.add_metric([], m.live_sessions)
        yield sessions

        streams = GaugeMetricFamily(
            "multistream_streams",
            "Streams of this instance's live sessions, by kind and status.",
            labels=["kind", "status"],
        )
        for kind in STREAM_KINDS:
            for status in STREAM_STATUSES:
                streams.add_metric([kind, status], m.streams.get((kind, status), 0))
        yield streams

        if m.presence is not None:
            present = GaugeMetricFamily(
                "multistream_viewers_present", "Viewers connected to this instance."
            )
            present.add_metric([], m.presence.total())
            yield present

        yield from self._leases()
        yield from self._media()

    def _leases(self) -> Iterable[Metric]:
        leases = self._metrics.ownership
        if leases is None:
            return
        now = time.time()
        owned = GaugeMetricFamily(
            "multistream_sessions_owned",
            "Live sessions whose ownership lease this instance holds (it serves their media).",
            labels=["address"],
        )
        owned.add_metric([leases.address], len(leases.held))
        yield owned
        # No per-session series (ids never become labels): the soonest expiry says whether the
        # heartbeats keep up; near 0 means this instance is about to lose sessions it serves.
        expires = GaugeMetricFamily(
            "multistream_lease_min_expires_in_seconds",
            "Seconds until the soonest-expiring held lease runs out unless renewed (0 if none held).",
        )
        left = [float(lease.get("expires_at", 0)) - now for lease in leases.held.values()]
        expires.add_metric([], round(min(left), 3) if left else 0.0)
        yield expires
        cpu = GaugeMetricFamily(
            "multistream_instance_cpu",
            "CPU this process used since the previous reading, in cores (1.0 = one core busy).",
        )
        cpu.add_metric([], float(leases.load().get("cpu", 0.0)))
        yield cpu

    def _media(self) -> Iterable[Metric]:
        media = self._metrics.media()
        if media is None:
            return
        try:
            snap = media_snapshot(media)
        except Exception:  # a broken source must not break the whole scrape
            log.exception("media metrics snapshot failed")
            return
        viewers = GaugeMetricFamily(
            "multistream_viewers", "Viewers with a media connection, by mode.", labels=["mode"]
        )
        for mode, n in snap["viewers"].items():
            viewers.add_metric([mode], n)
        yield viewers
        pcs = GaugeMetricFamily(
            "multistream_peer_connections", "Open WebRTC peer connections by role.", labels=["role"]
        )
        for role, n in snap["peer_connections"].items():
            pcs.add_metric([role], n)
        yield pcs
        for key, name, doc in (
            ("encoders", "multistream_encoders_running", "Shared encoders running."),
            (
                "composite_encoders",
                "multistream_composite_encoders_running",
                "Encoders of composite layouts running.",
            ),
            ("composite_layouts", "multistream_composite_layouts", "Composite layouts running."),
            (
                "composite_budget",
                "multistream_composite_budget",
                "Composite encoders this instance runs at most (MULTISTREAM_COMPOSITE_BUDGET).",
            ),
            ("recorders", "multistream_recorders_open", "Recordings being written."),
            (
                "peers_pending",
                "multistream_peers_pending",
                "Viewer connections answered but not yet connected (ICE/DTLS).",
            ),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], snap[key])
            yield gauge
        yield from self._links(media)
        yield from _relay(media.counters())
        for key, name, doc in (
            ("frames_dropped", "multistream_frames_dropped", "Frames dropped for slow consumers."),
            ("frames_encoded", "multistream_frames_encoded", "Frames encoded by shared encoders."),
            (
                "peer_connect_timeouts",
                "multistream_peer_connect_timeouts",
                "Viewer connections closed for not connecting within the connect timeout.",
            ),
            (
                "composite_substitutions",
                "multistream_composite_substitutions",
                "Composite viewers given the nearest running layout (the output budget was spent).",
            ),
            (
                "composite_over_budget",
                "multistream_composite_over_budget",
                "Composite outputs started over budget (nothing compatible was running).",
            ),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], snap[key])
            yield counter

    def _links(self, media: MediaStats) -> Iterable[Metric]:
        """Adaptive delivery: the spread of viewers' estimated bandwidth, how many get less than
        the original because of their link, and what happened to their resend requests."""
        links_of = getattr(media, "viewer_links", None)
        if links_of is None:
            return
        links = list(links_of())
        hist = HistogramMetricFamily(
            "multistream_viewer_target_bitrate_bps",
            "Estimated bandwidth of each adaptive viewer connection (bits/s), now.",
        )
        counts = [sum(1 for link in links if link["target_bps"] <= b) for b in _BITRATE_BUCKETS]
        buckets = [(str(b), c) for b, c in zip(_BITRATE_BUCKETS, counts, strict=True)]
        buckets.append(("+Inf", len(links)))
        hist.add_metric([], buckets, sum(float(link["target_bps"]) for link in links))
        yield hist
        limited = GaugeMetricFamily(
            "multistream_viewers_limited_by_link",
            "Adaptive viewer connections on a rung below the original because of their link.",
        )
        limited.add_metric([], sum(1 for link in links if link["limited"]))
        yield limited
        resends = GaugeMetricFamily(
            "multistream_viewer_resends",
            "NACKed packets of the connected viewers, resent or skipped (budget, age, repeats).",
            labels=["outcome"],
        )
        resends.add_metric(["resent"], sum(link["resent"] for link in links))
        resends.add_metric(["skipped"], sum(link["resend_skipped"] for link in links))
        yield resends
        requests_of = getattr(media, "keyframe_requests", None)
        if requests_of is not None:
            keys = GaugeMetricFamily(
                "multistream_keyframe_requests",
                "Key-frame requests of the running sources, by target (publisher: PLIs sent to "
                "it; encoder: forced key frames of a shared encoder), reason and outcome "
                "(sent, forwarded, suppressed, or gop_cache: replayed to the asker alone).",
                labels=["target", "reason", "outcome"],
            )
            for (target, reason, outcome), n in sorted(requests_of().items()):
                keys.add_metric([target, reason, outcome], n)
            yield keys


def _relay(raw: Mapping[str, Any]) -> Iterable[Metric]:
    """Relay links (server/media/relay.py) and the media bytes this instance sent, by receiver:
    with relay, an owner's egress is its own viewers plus one copy per relaying instance."""
    if "relays_in" not in raw:
        return
    Family = type[GaugeMetricFamily] | type[CounterMetricFamily]
    families: tuple[tuple[Family, str, str, str, dict[str, str]], ...] = (
        (
            GaugeMetricFamily,
            "multistream_relay_links",
            "Relay links open: `in` pulls a stream from its owner, `out` sends one to another "
            "instance.",
            "direction",
            {"in": "relays_in", "out": "relays_out"},
        ),
        (
            CounterMetricFamily,
            "multistream_relay_bytes",
            "Media payload bytes over relay links: received from owners (`in`), sent to "
            "relaying instances (`out`).",
            "direction",
            {"in": "relay_bytes_in", "out": "bytes_out_relays"},
        ),
        (
            CounterMetricFamily,
            "multistream_media_bytes_sent",
            "Media payload bytes sent (RTP headers not counted), by receiver: viewers or relays.",
            "to",
            {"viewers": "bytes_out_viewers", "relays": "bytes_out_relays"},
        ),
    )
    for family, name, doc, label, keys in families:
        metric = family(name, doc, labels=[label])
        for value, key in keys.items():
            metric.add_metric([value], raw.get(key, 0))
        yield metric


_BITRATE_BUCKETS = (250_000, 500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000)


def _by_label(value: object) -> dict[str, float]:
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    return {}


def media_snapshot(media: MediaStats) -> dict[str, Any]:
    """Normalise the media plane's `metrics_snapshot()` or `counters()` into one shape."""
    raw: Mapping[str, Any] = (
        media.metrics_snapshot() if hasattr(media, "metrics_snapshot") else media.counters()
    )
    pcs = _by_label(raw.get("peer_connections"))
    if not pcs:
        pcs = {"publisher": raw.get("publishers", 0), "subscriber": raw.get("viewers", 0)}
    viewers = _by_label(raw.get("viewers_by_mode")) or {
        mode: raw[f"viewers_{mode}"] for mode in VIEW_MODES if f"viewers_{mode}" in raw
    }
    return {
        "peer_connections": pcs,
        "viewers": viewers,
        "encoders": raw.get("encoders", raw.get("encoders_running", 0)),
        "composite_encoders": raw.get("composite_encoders", 0),
        "composite_layouts": raw.get("composite_layouts", 0),
        "composite_budget": raw.get("composite_budget", 0),
        "composite_substitutions": raw.get("composite_substitutions", 0),
        "composite_over_budget": raw.get("composite_over_budget", 0),
        "recorders": raw.get("recorders", 0),
        "frames_dropped": raw.get("frames_dropped", 0),
        "frames_encoded": raw.get("frames_encoded", 0),
        "peers_pending": raw.get("peers_pending", 0),
        "peer_connect_timeouts": raw.get("peer_connect_timeouts", 0),
    }


class Metrics:
    """The process's metrics; `render()` produces the Prometheus text exposition."""

    def __init__(self, instance_id: str = "") -> None:
        self.instance_id = instance_id
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "multistream_http_request_duration_seconds",
            "HTTP request latency by route pattern, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.store_errors = Counter(
            "multistream_store_errors",
            "Store operations that raised (duplicate keys are answers, not errors).",
            ["operation"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "multistream_rate_limited",
            "Requests refused (429) by the per-address rate limits, by action.",
            ["action"],
            registry=self.registry,
        )
        self.store: Store | None = None
        self.presence: _Counts | None = None
        self.drain: DrainState | None = None
        self.ownership: Leases | None = None
        self._media: Callable[[], MediaStats | None] = lambda: None
        self.live_sessions = 0
        self.streams: dict[tuple[str, str], int] = {}
        self.registry.register(_LiveCollector(self))

    def bind(
        self,
        *,
        store: Store | None = None,
        presence: _Counts | None = None,
        drain: DrainState | None = None,
        media: Callable[[], MediaStats | None] | None = None,
    ) -> None:
        """Attach the sources read at scrape time; `media` is a getter so it can be wired later."""
        if store is not None:
            self.store = store
        if presence is not None:
            self.presence = presence
        if drain is not None:
            self.drain = drain
        if media is not None:
            self._media = media

    def media(self) -> MediaStats | None:
        media = self._media()
        if media is None or not hasattr(media, "counters"):
            return None
        return media

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.request_seconds.labels(route, method, str(status)).observe(seconds)

    def store_error(self, operation: str) -> None:
        self.store_errors.labels(operation).inc()

    def instrument(self, store: Store) -> Store:
        """Wrap a store so every failing operation counts in `multistream_store_errors_total`."""
        return InstrumentedStore(store, self.store_error)  # type: ignore[return-value]

    async def refresh(self) -> None:
        """Read this instance's live sessions and their streams from the store."""
        if self.store is None:
            return
        try:
            sessions = await self.store.find(
                "broadcast_sessions",
                {"status": "live", "instance_id": self.instance_id},
                limit=_MAX_SESSIONS,
            )
            streams: dict[tuple[str, str], int] = {}
            for session in sessions:
                for stream in await self.store.find(
                    "broadcast_streams", {"session_id": session["id"]}, limit=10
                ):
                    key = (str(stream.get("kind")), str(stream.get("status")))
                    streams[key] = streams.get(key, 0) + 1
        except Exception:
            # Counted by the instrumented store; the scrape still answers with the last values.
            log.warning("metrics refresh could not read the store", exc_info=True)
            return
        self.live_sessions = len(sessions)
        self.streams = streams

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)


class InstrumentedStore:
    """Delegates to a store and reports each failed coroutine call by operation name."""

    def __init__(self, inner: Store, on_error: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_error = on_error

    @property
    def inner(self) -> Store:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await attr(*args, **kwargs)
            except DuplicateKey:
                raise
            except Exception:
                self._on_error(name)
                raise

        call.__name__ = name
        # Kept on the instance, so later lookups skip `__getattr__`: one wrapper per operation
        # instead of an `inspect` check and a new closure on every store call.
        self.__dict__[name] = call
        return call
