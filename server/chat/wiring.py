"""Build the chat service with the right bus for the store it runs on."""

from __future__ import annotations

import logging
from typing import Any

from server.chat.bus import ChatBus, InProcessBus
from server.chat.service import ChatService, SessionLookup
from store.protocol import Store

log = logging.getLogger(__name__)


async def choose_bus(store: Store) -> ChatBus:
    """MongoDB on a replica set: change streams, so every instance sees every session's chat.

    Anything else (SQLite, a standalone mongod, the emulated client) is single-instance: the
    in-process bus. A standalone mongod cannot open change streams, so several instances on one
    would each see only their own sockets' messages live (history is still shared); say so loudly.
    """
    database: Any = getattr(store, "database", None) or getattr(store, "_db", None)
    if database is None or not hasattr(database, "watch"):
        return InProcessBus()
    try:
        hello = await database.command("hello")
    except Exception as exc:  # the emulation has no `hello`; a real server always does
        log.warning("chat: cannot ask MongoDB for its topology (%s); in-process chat bus", exc)
        return InProcessBus()
    if not isinstance(hello, dict) or not (hello.get("setName") or hello.get("msg") == "isdbgrid"):
        log.warning(
            "chat: MongoDB is not a replica set; live chat is per instance (change streams need one)"
        )
        return InProcessBus()
    from server.chat.changestream import ChangeStreamBus

    log.info("chat: fan-out over MongoDB change streams")
    return ChangeStreamBus(database)


async def open_chat(store: Store, sessions: SessionLookup) -> ChatService:
    return ChatService(store, sessions, await choose_bus(store))
