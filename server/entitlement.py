"""Who may receive a session's media or its metadata: the one rule every media route applies.

Live signaling (a stream or the composite), the recordings list and a recording download all ask
here, so paid content stays paid whichever way it leaves the server. The rule:

- a token of another session: 403;
- the session's broadcaster: every stream kind;
- a viewer: the kinds its preferences enable (others: 403 `stream_not_enabled`), and on a priced
  session only those its paid orders cover (others: 402 `payment_required`); free sessions and
  free add-ons need no order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from server.auth import Claims
from server.domain import STREAM_KINDS
from server.errors import Forbidden
from store.protocol import Doc


class _Sessions(Protocol):
    """What the rule reads: the viewer's saved preferences and the payment service (late-wired)."""

    payments: Any

    async def preferences_for(self, session_id: str, viewer_id: str) -> Doc: ...


class Entitlement:
    """The media authorisation rule, with the session service as its source of preferences."""

    def __init__(self, sessions: _Sessions) -> None:
        self.sessions = sessions

    @staticmethod
    def check_session(claims: Claims, session_id: str) -> None:
        if claims.session_id != session_id:
            raise Forbidden("token belongs to another session")

    async def require(self, claims: Claims, session: Doc, kinds: Iterable[str]) -> Doc | None:
        """Raise unless this token may receive every kind in `kinds` of `session`.

        Returns the viewer's preferences (None for the broadcaster), which the composite needs.
        """
        self.check_session(claims, session["id"])
        if claims.role == "broadcaster":
            return None
        viewer_id = _viewer_id(claims)
        prefs = await self.sessions.preferences_for(session["id"], viewer_id)
        await self._require_viewer(session, viewer_id, prefs, list(kinds))
        return prefs

    async def _require_viewer(
        self, session: Doc, viewer_id: str, prefs: Doc, kinds: Sequence[str]
    ) -> None:
        disabled = [k for k in kinds if k not in prefs["enabled_streams"]]
        if disabled:
            raise Forbidden(
                f"the {' and '.join(disabled)} stream is not enabled for this viewer",
                code="stream_not_enabled",
            )
        payments = self.sessions.payments
        if payments is not None:
            await payments.require_entitled(session, viewer_id, kinds)

    async def require_enabled(self, claims: Claims, session: Doc) -> Doc | None:
        """`require` for every kind the viewer enables (the composite, recordings); returns the
        viewer's preferences, or None for the broadcaster."""
        self.check_session(claims, session["id"])
        if claims.role == "broadcaster":
            return None
        viewer_id = _viewer_id(claims)
        prefs = await self.sessions.preferences_for(session["id"], viewer_id)
        enabled = [k for k in STREAM_KINDS if k in prefs["enabled_streams"]]
        await self._require_viewer(session, viewer_id, prefs, enabled)
        return prefs

    async def visible_kinds(self, claims: Claims, session: Doc) -> set[str]:
        """Kinds whose media (e.g. recordings) this token may list: the broadcaster every kind, a
        viewer its enabled kinds, all of which must be paid for on a priced session (else 402)."""
        prefs = await self.require_enabled(claims, session)
        if prefs is None:
            return set(STREAM_KINDS)
        return {k for k in STREAM_KINDS if k in prefs["enabled_streams"]}


def _viewer_id(claims: Claims) -> str:
    if claims.role != "viewer" or claims.viewer_id is None:
        raise Forbidden("a viewer token is required")
    return claims.viewer_id
