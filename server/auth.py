"""Signed bearer tokens (JWT, HS256) that say who may do what to which session.

A broadcaster token controls and publishes one session; a viewer token identifies one viewer of one
session. Tokens are stateless so any instance sharing the secret can check them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import jwt

from server.errors import Unauthorized
from server.settings import Secret

Role = Literal["broadcaster", "viewer"]
_ISSUER = "multistream"
_ROLES = ("broadcaster", "viewer")
# How many verified tokens `TokenService` remembers (a few hundred bytes each).
_VERIFIED_MAX = 4096


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token asserts."""

    role: Role
    session_id: str
    viewer_id: str | None
    expires_at: int


class TokenService:
    """Issues and verifies tokens with one secret from settings."""

    def __init__(self, secret: Secret, ttl_s: int) -> None:
        if not secret:
            raise ValueError("token secret must not be empty")
        self._key = secret.reveal()
        self._ttl_s = ttl_s
        # token -> (claims, not before): tokens whose signature and claims already checked out.
        # PyJWT's decode costs ~0.1 ms a request; a hit redoes only its time checks (below).
        self._verified: dict[str, tuple[Claims, int]] = {}

    def _issue(self, role: Role, session_id: str, viewer_id: str | None) -> str:
        now = int(time.time())
        payload: dict[str, object] = {
            "iss": _ISSUER,
            "role": role,
            "sid": session_id,
            "iat": now,
            "exp": now + self._ttl_s,
        }
        if viewer_id is not None:
            payload["vid"] = viewer_id
        return jwt.encode(payload, self._key, algorithm="HS256")

    def issue_broadcaster(self, session_id: str) -> str:
        return self._issue("broadcaster", session_id, None)

    def issue_viewer(self, session_id: str, viewer_id: str) -> str:
        return self._issue("viewer", session_id, viewer_id)

    def verify(self, token: str, *, allow_expired: bool = False) -> Claims:
        """Check signature, issuer, expiry and claim types; raise `Unauthorized` otherwise.

        `allow_expired` lets a returning viewer present an old but authentic token to get its saved
        preferences back; it never grants control.
        """
        if not token or len(token) > 4096:
            raise Unauthorized("missing or oversized token", code="invalid_token")
        hit = self._verified.get(token)
        if hit is not None:
            claims, not_before = hit
            now = time.time()
            # PyJWT's checks that depend on the time, as it makes them; a token that is not yet
            # valid (the clock went back) takes the full path below and gets PyJWT's own answer.
            if not_before <= now:
                if not allow_expired and claims.expires_at <= now:
                    raise Unauthorized("token expired", code="token_expired")
                return claims
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "iss"], "verify_exp": not allow_expired},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired", code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token", code="invalid_token") from None
        role, sid, vid = payload.get("role"), payload.get("sid"), payload.get("vid")
        if (
            role not in _ROLES
            or not isinstance(sid, str)
            or (vid is not None and not isinstance(vid, str))
        ):
            raise Unauthorized("invalid token claims", code="invalid_token")
        if role == "viewer" and vid is None:
            raise Unauthorized("viewer token without viewer id", code="invalid_token")
        claims = Claims(role=role, session_id=sid, viewer_id=vid, expires_at=int(payload["exp"]))
        self._remember(token, claims, max(int(payload["iat"]), int(payload.get("nbf", 0))))
        return claims

    def _remember(self, token: str, claims: Claims, not_before: int) -> None:
        if len(self._verified) >= _VERIFIED_MAX:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = (claims, not_before)
