"""The listener protocol through which services learn what the session service changed.

The session service owns the control-plane state; the media plane, chat and payments react to it
without the session service knowing them (calls go one way).
"""

from __future__ import annotations

from typing import Protocol

from store.protocol import Doc


class SessionEvents(Protocol):
    """Called after the store has been updated. Implementations must not raise for normal cases."""

    async def stream_started(self, stream: Doc) -> None: ...

    async def stream_stopped(self, stream: Doc) -> None: ...

    async def session_ended(self, session: Doc) -> None: ...

    async def preferences_changed(self, prefs: Doc) -> None: ...
