"""Chat fan-out between server instances: every event for a session reaches every instance's sockets.

The chat service writes each change to the store first and then calls `publish`. A bus delivers
events to one `Sink` per instance (the chat service), which forwards them to the sockets it holds
for that session. `InProcessBus` serves a single instance; `server.chat.changestream` serves many
over MongoDB change streams (see docs/chat-scale-out.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

Event = dict[str, Any]
Sink = Callable[[str, Event], None]


class ChatBus(Protocol):
    """Carries chat events `(session_id, event)` to every instance's sink."""

    def start(self, sink: Sink) -> None:
        """Begin delivering events to `sink` (called once by the chat service)."""

    async def publish(self, session_id: str, event: Event) -> None:
        """Announce an event whose state change is already in the store."""

    async def close(self) -> None:
        """Stop delivering and release resources."""


class InProcessBus:
    """One instance: publishing delivers straight to the local sink."""

    def __init__(self) -> None:
        self._sink: Sink | None = None

    def start(self, sink: Sink) -> None:
        self._sink = sink

    async def publish(self, session_id: str, event: Event) -> None:
        if self._sink is None:
            return
        try:
            self._sink(session_id, event)
        except Exception:  # a broken socket must not fail the sender's request
            log.exception("session=%s chat event delivery failed", session_id)

    async def close(self) -> None:
        self._sink = None
