"""Opens every resource a server needs, in one place, and closes them all in reverse order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from server.accounts import AccountService
from server.assignment import Assignment, relay_pc_id
from server.auth import TokenService
from server.chat.wiring import open_chat
from server.cluster_presence import PresenceSync
from server.dashboard import Dashboard
from server.drain import Drain
from server.media import MediaPlane
from server.metrics import Metrics
from server.ownership import Ownership, mark_interrupted
from server.payments import PaymentService
from server.presence import Presence
from server.ratelimit import RateLimits
from server.replay import ReplayJobs
from server.services import Services
from server.session_sync import SessionSync
from server.sessions import SessionService
from server.settings import Settings
from server.thumbnails import Thumbnails
from store import open_store
from store.changes import feed_of

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Yield ready services; on exit close media, then the store (so final writes still land)."""
    settings = settings.with_secrets()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        metrics = Metrics(settings.instance_id)
        drain = Drain(settings.drain_deadline_s)
        backend = open_store(settings.store_location)
        store = metrics.instrument(backend)
        await store.open()
        stack.push_async_callback(store.close)
        # MongoDB on a replica set pushes other instances' writes (chat, SessionSync); else None.
        feed = await feed_of(backend)
        tokens = TokenService(settings.token_secret, settings.token_ttl_s)
        presence = Presence()
        sessions = SessionService(store, tokens, presence, settings, drain=drain)
        payments = PaymentService(store, settings)
        sessions.payments = payments
        limits = RateLimits(
            store, settings, on_refused=lambda action: metrics.rate_limited.labels(action).inc()
        )
        media = MediaPlane(settings, store, sessions, presence)
        sessions.add_listener(media.listener)
        # Leases: which instance serves each live session's media (server.ownership).
        ownership = Ownership(
            store, settings, peers=lambda: int(media.counters().get("peer_connections", 0))
        )
        ownership.on_lost = lambda sid: media.listener.session_ended({"id": sid})  # type: ignore[typeddict-item]
        ownership.on_taken = lambda sid: mark_interrupted(
            store, sid, {r.id for r in media.feeds.recorders.values()}
        )
        sessions.ownership = ownership
        sessions.add_listener(ownership)
        # Relay: where each viewer is served, and this instance's record (server.assignment).
        assignment = Assignment(store, settings, ownership, relaying=media.relays.sessions)
        assignment.upstream = media.relays.upstream
        # A connection served here by relay names this instance in its id (requests about it
        # that reach another instance are forwarded here).
        media.relay_pc_id = lambda: relay_pc_id(settings.instance_id)
        sessions.assignment = assignment
        metrics.bind(store=store, presence=presence, drain=drain, media=lambda: media)
        metrics.ownership = ownership
        # Closed before the store (exit callbacks run in reverse): recordings' last writes land.
        stack.push_async_callback(media.close)
        chat = open_chat(store, sessions, feed)
        sessions.add_listener(chat)
        stack.push_async_callback(chat.close)  # closes every chat socket before the store
        # Changes made through other instances (shared store) reach this one's media and chat.
        sync = SessionSync(store, settings, targets=[media.listener, chat, ownership], feed=feed)
        sessions.add_listener(sync)
        sync.start()
        stack.push_async_callback(sync.close)
        ownership.start()
        stack.push_async_callback(ownership.close)
        assignment.start()
        stack.push_async_callback(assignment.close)
        # Viewer counts across instances (the status and the list add everyone's viewers).
        presence_sync = PresenceSync(store, presence, settings)
        presence_sync.start()
        stack.push_async_callback(presence_sync.close)
        replays = ReplayJobs(store, settings)
        stack.push_async_callback(replays.close)  # renders stop before the store closes
        services = Services(
            settings=settings,
            store=store,
            tokens=tokens,
            presence=presence,
            sessions=sessions,
            media=media,
            chat=chat,
            payments=payments,
            metrics=metrics,
            drain=drain,
            limits=limits,
            thumbnails=Thumbnails(media),
            accounts=AccountService(store, settings),
            dashboard=Dashboard(store, sessions),
            replays=replays,
            ownership=ownership,
            assignment=assignment,
        )
        log.info(
            "services ready store=%s instance=%s",
            _redact(settings.store_location),
            settings.instance_id,
        )
        yield services
        log.info("closing services instance=%s", settings.instance_id)


def _redact(url: str) -> str:
    """Hide credentials in a store URL before logging it."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
