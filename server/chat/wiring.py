"""Build the chat service with the right bus for the store it runs on."""

from __future__ import annotations

import logging

from server.chat.bus import ChatBus, InProcessBus
from server.chat.service import ChatService, SessionLookup
from store.changes import ChangeFeed
from store.protocol import Store

log = logging.getLogger(__name__)


def choose_bus(feed: ChangeFeed | None) -> ChatBus:
    """With a change feed (MongoDB on a replica set) every instance sees every session's chat;
    without one (SQLite, a standalone mongod) chat is single-instance: the in-process bus."""
    if feed is None:
        return InProcessBus()
    from server.chat.changestream import ChangeStreamBus

    log.info("chat: fan-out over MongoDB change streams")
    return ChangeStreamBus(feed)


def open_chat(store: Store, sessions: SessionLookup, feed: ChangeFeed | None) -> ChatService:
    return ChatService(store, sessions, choose_bus(feed))
