"""Session chat: `ChatService` over the store, fanned out by a `ChatBus` (in-process or MongoDB)."""

from server.chat.bus import ChatBus, InProcessBus
from server.chat.service import (
    CLOSE_GOING_AWAY,
    CLOSE_RATE_LIMITED,
    CLOSE_SESSION_ENDED,
    ChatLimits,
    ChatPeer,
    ChatService,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_RATE_LIMITED",
    "CLOSE_SESSION_ENDED",
    "ChatBus",
    "ChatLimits",
    "ChatPeer",
    "ChatService",
    "InProcessBus",
]
