"""The listener protocol through which services learn what the session service changed.

The session service owns the control-plane state; the media plane, chat and payments react to it
without the session service knowing them (calls go one way).
"""

from __future__ import annotations

from typing import Protocol

from server.documents import PreferencesDoc, SessionDoc, StreamDoc


class SessionEvents(Protocol):
    """Called directly, after the store has been updated, with the documents as written.
    Implementations must not raise for normal cases."""

    async def stream_started(self, stream: StreamDoc) -> None: ...

    async def stream_stopped(self, stream: StreamDoc) -> None: ...

    async def session_ended(self, session: SessionDoc) -> None: ...

    async def preferences_changed(self, prefs: PreferencesDoc) -> None: ...
