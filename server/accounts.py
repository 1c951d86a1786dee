"""Broadcaster accounts: who may start sessions, and the secrets that stand for an account.

An account (`users`) has a unique lower-case username, a display name, an argon2id password hash
(or none: a token-only account an operator made for a script) and a saved PIX receiver. Two kinds of
secret stand for it, both random strings stored only as their SHA-256 (`api_tokens`, id = hash):

- `api`: an API token for scripts and OBS (`Authorization: Bearer ms_...`), until revoked;
- `web`: a web log-in, the value of the HttpOnly session cookie, until log-out or `login_ttl_s`.

A fast hash is right for these (unlike passwords): they are 256 random bits, not guessable words.
A disabled account's secrets stop working at once; its sessions already live keep their own
session tokens until those expire.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import timedelta
from typing import Any, Final, Literal

from server.clock import iso, utc_now
from server.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from server.ids import new_id
from server.passwords import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    hash_password,
    needs_rehash,
    verify_password,
)
from server.payments.receiver import validate_receiver
from server.settings import Settings
from server.validation import text_problem
from store.protocol import Doc, DuplicateKey, Store

log = logging.getLogger(__name__)

TokenKind = Literal["api", "web"]
TOKEN_PREFIX: Final = "ms_"
USERNAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]{2,31}$"
_USERNAME_RE: Final = re.compile(USERNAME_PATTERN)
DISPLAY_NAME_MAX: Final = 50
TOKEN_NAME_MAX: Final = 60
# The first account made from the web on a fresh server gets this id, so two visitors racing for
# "the first account" cannot both win: the second insert is a duplicate key.
FIRST_USER_ID: Final = "usr_first"
_MAX_TOKENS_PER_USER: Final = 100


def is_account_token(token: str | None) -> bool:
    """API tokens and web log-ins look like `ms_...`; session tokens are JWTs (`eyJ...`)."""
    return bool(token) and token.startswith(TOKEN_PREFIX)  # type: ignore[union-attr]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_RECEIVER_FIELDS: Final = ("key", "merchant_name", "merchant_city")


def public_receiver(pix: dict[str, Any] | None) -> dict[str, Any] | None:
    """The receiver as a client gives it (what `validate_receiver` derives, e.g. the key type,
    stays inside)."""
    return None if not pix else {k: pix[k] for k in _RECEIVER_FIELDS if k in pix}


def public_user(user: Doc) -> dict[str, Any]:
    return {
        "id": user["id"],
        "username": user["username"],
        "display_name": user.get("display_name") or user["username"],
        "created_at": user["created_at"],
        "disabled": bool(user.get("disabled")),
        "has_password": bool(user.get("password_hash")),
        "pix": public_receiver(user.get("pix")),
    }


def public_token(doc: Doc) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("id", "name", "kind", "created_at", "expires_at")}


def with_saved_receiver(body: object, owner: Doc) -> object:
    """A start body naming no PIX receiver gets the owner's saved one (checked when it was saved),
    before the body is validated, so a priced session can use it."""
    if isinstance(body, dict) and "pix" not in body and owner.get("pix"):
        return {**body, "pix": public_receiver(owner["pix"])}
    return body


def check_username(raw: object) -> str:
    if not isinstance(raw, str):
        raise Invalid("username must be a string", code="invalid_username")
    name = raw.strip().lower()
    if not _USERNAME_RE.fullmatch(name):
        raise Invalid(
            "username must be 3-32 characters: letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)",
            code="invalid_username",
        )
    return name


def check_password(raw: object) -> str:
    if not isinstance(raw, str) or not PASSWORD_MIN <= len(raw) <= PASSWORD_MAX:
        raise Invalid(
            f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters",
            code="invalid_password",
        )
    if "\x00" in raw:
        raise Invalid("password must not contain NUL", code="invalid_password")
    return raw


def check_display_name(raw: object, default: str) -> str:
    if raw is None:
        return default
    if not isinstance(raw, str) or not raw.strip() or len(raw.strip()) > DISPLAY_NAME_MAX:
        raise Invalid(f"display_name must be 1 to {DISPLAY_NAME_MAX} characters")
    problem = text_problem(raw)
    if problem:
        raise Invalid(f"display_name {problem}")
    return raw.strip()


class AccountService:
    """Accounts, their secrets, and the checks every authenticated request makes."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # -- accounts ----------------------------------------------------------------------------

    async def any_user(self) -> bool:
        return await self.store.count("users") > 0

    async def signup_open(self) -> bool:
        mode = self.settings.signup
        return mode == "open" or (mode == "first" and not await self.any_user())

    async def signup(
        self, username: object, password: object, display_name: object = None
    ) -> tuple[Doc, str]:
        """Web sign-up (within `settings.signup`): the new account, logged in."""
        name = check_username(username)
        secret_pw = check_password(password)
        display = check_display_name(display_name, name)
        if not await self.signup_open():
            raise Forbidden(
                "sign-up is closed on this server; ask its operator for an account "
                "(multistream users add)",
                code="signup_closed",
            )
        first = self.settings.signup == "first"
        user = await self._insert_user(
            name, await hash_password(secret_pw), display, FIRST_USER_ID if first else None
        )
        log.info("user=%s signup first=%s", user["id"], first)
        return user, await self._new_secret(user["id"], "web", "web log-in")

    async def create_user(
        self, username: object, password: str | None, display_name: object = None
    ) -> Doc:
        """Operator path (`multistream users add`): any time; no password = token-only account."""
        name = check_username(username)
        hashed = None if password is None else await hash_password(check_password(password))
        return await self._insert_user(name, hashed, check_display_name(display_name, name), None)

    async def _insert_user(
        self, username: str, password_hash: str | None, display: str, user_id: str | None
    ) -> Doc:
        user: Doc = {
            "id": user_id or new_id("usr"),
            "username": username,
            "display_name": display,
            "password_hash": password_hash,
            "created_at": iso(utc_now()),
            "disabled": False,
            "pix": None,
        }
        try:
            await self.store.insert("users", user)
        except DuplicateKey:
            if user_id == FIRST_USER_ID:
                raise Forbidden(
                    "the first account was just created; sign-up is closed",
                    code="signup_closed",
                ) from None
            raise Conflict("that username is taken", code="username_taken") from None
        return user

    async def by_username(self, username: object) -> Doc:
        name = check_username(username)
        found = await self.store.find("users", {"username": name}, limit=1)
        if not found:
            raise NotFound(f"no account named {name!r}", code="user_not_found")
        return found[0]

    async def list_users(self) -> list[Doc]:
        return await self.store.find("users", order_by="created_at", limit=10_000)

    async def set_disabled(self, username: object, disabled: bool) -> Doc:
        user = await self.by_username(username)
        updated = await self.store.update("users", user["id"], {"disabled": disabled})
        if updated is None:
            raise NotFound("account vanished", code="user_not_found")
        log.info("user=%s disabled=%s", user["id"], disabled)
        return updated

    async def set_pix(self, user: Doc, raw: object) -> dict[str, Any] | None:
        """Save (validated once, by the same rule as a session start) or clear the receiver."""
        receiver = None if raw is None else validate_receiver(raw)
        await self.store.update("users", user["id"], {"pix": receiver})
        return public_receiver(receiver)

    # -- secrets -----------------------------------------------------------------------------

    async def login(self, username: object, password: object) -> tuple[Doc, str]:
        """A new web log-in; one answer for unknown name, wrong password and token-only account."""
        bad = Unauthorized("wrong username or password", code="bad_credentials")
        try:
            name = check_username(username)
        except Invalid:
            raise bad from None
        if not isinstance(password, str) or len(password) > PASSWORD_MAX:
            raise bad
        found = await self.store.find("users", {"username": name}, limit=1)
        user = found[0] if found else None
        stored = user.get("password_hash") if user else None
        if not await verify_password(stored, password) or user is None:
            raise bad
        if user.get("disabled"):
            raise Forbidden("this account is disabled", code="account_disabled")
        if stored and needs_rehash(stored):
            await self.store.update(
                "users", user["id"], {"password_hash": await hash_password(password)}
            )
        log.info("user=%s login", user["id"])
        return user, await self._new_secret(user["id"], "web", "web log-in")

    async def logout(self, secret: str | None) -> None:
        if is_account_token(secret):
            await self.store.delete("api_tokens", _digest(secret or ""))

    async def issue_token(self, user: Doc, name: object = None) -> tuple[Doc, str]:
        """A new API token for `user` (scripts, OBS): its document and the secret, shown once."""
        label = "API token" if name is None else name
        if not isinstance(label, str) or not label.strip() or len(label) > TOKEN_NAME_MAX:
            raise Invalid(f"name must be 1 to {TOKEN_NAME_MAX} characters")
        problem = text_problem(label)
        if problem:
            raise Invalid(f"name {problem}")
        if await self.store.count("api_tokens", {"user_id": user["id"], "kind": "api"}) >= (
            _MAX_TOKENS_PER_USER
        ):
            raise Conflict("too many API tokens; revoke some first", code="too_many_tokens")
        secret = await self._new_secret(user["id"], "api", label.strip())
        doc = await self.store.get("api_tokens", _digest(secret))
        assert doc is not None
        return doc, secret

    async def list_tokens(self, user: Doc) -> list[Doc]:
        return await self.store.find(
            "api_tokens", {"user_id": user["id"], "kind": "api"}, order_by="created_at", limit=1000
        )

    async def revoke_token(self, user: Doc, token_id: str) -> None:
        doc = await self.store.get("api_tokens", token_id) if len(token_id) == 64 else None
        if doc is None or doc["user_id"] != user["id"] or doc["kind"] != "api":
            raise NotFound("no such token", code="token_not_found")
        await self.store.delete("api_tokens", token_id)

    async def _new_secret(self, user_id: str, kind: TokenKind, name: str) -> str:
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utc_now()
        expires = iso(now + timedelta(seconds=self.settings.login_ttl_s)) if kind == "web" else None
        await self.store.insert(
            "api_tokens",
            {
                "id": _digest(secret),
                "user_id": user_id,
                "kind": kind,
                "name": name,
                "created_at": iso(now),
                "expires_at": expires,
            },
        )
        return secret

    async def authenticate(self, secret: str | None, *, kind: TokenKind | None = None) -> Doc:
        """The enabled account `secret` stands for; 401 otherwise. `kind` restricts the secret."""
        if not secret:
            raise Unauthorized("log in or send an API token", code="login_required")
        if not is_account_token(secret) or len(secret) > 200:
            raise Unauthorized("invalid API token", code="invalid_token")
        doc = await self.store.get("api_tokens", _digest(secret))
        if doc is None or (kind is not None and doc["kind"] != kind):
            raise Unauthorized("unknown or revoked token", code="invalid_token")
        if doc.get("expires_at") and doc["expires_at"] <= iso(utc_now()):
            await self.store.delete("api_tokens", doc["id"])
            raise Unauthorized("log-in expired; log in again", code="token_expired")
        user = await self.store.get("users", doc["user_id"])
        if user is None:
            raise Unauthorized("unknown or revoked token", code="invalid_token")
        if user.get("disabled"):
            raise Unauthorized("this account is disabled", code="account_disabled")
        return user
