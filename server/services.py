"""The services one running server holds, built complete by `server.lifespan` for the app factory.

Every field is a concrete service that always exists while the server runs, so a handler never
checks for a missing one: there is no `None` to guard and no `Any` to guess at.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.accounts import AccountService
from server.assignment import Assignment
from server.auth import TokenService
from server.chat import ChatService
from server.dashboard import Dashboard
from server.drain import Drain
from server.media import MediaPlane
from server.metrics import Metrics
from server.ownership import Ownership
from server.payments import PaymentService
from server.presence import Presence
from server.ratelimit import RateLimits
from server.replay import ReplayJobs
from server.sessions import SessionService
from server.settings import Settings
from server.thumbnails import Thumbnails
from store.protocol import Store


@dataclass(slots=True)
class Services:
    """Collaborators handlers reach through `self.services`."""

    settings: Settings
    store: Store
    tokens: TokenService
    presence: Presence
    sessions: SessionService
    media: MediaPlane
    chat: ChatService
    payments: PaymentService
    metrics: Metrics
    drain: Drain
    limits: RateLimits
    thumbnails: Thumbnails
    accounts: AccountService
    dashboard: Dashboard
    replays: ReplayJobs
    ownership: Ownership
    assignment: Assignment
