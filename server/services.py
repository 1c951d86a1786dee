"""The services one running server holds, built by `server.lifespan` and handed to `make_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.auth import TokenService
from server.presence import Presence
from server.sessions import SessionService
from server.settings import Settings
from store.protocol import Store


@dataclass
class Services:
    """Collaborators handlers reach through `self.services`; optional parts are None until wired."""

    settings: Settings
    store: Store
    tokens: TokenService
    presence: Presence
    sessions: SessionService
    media: Any = None
    chat: Any = None
    payments: Any = None
    metrics: Any = None
    drain: Any = None
    limits: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
