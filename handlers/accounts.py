"""Broadcaster accounts on the web: sign up, log in, log out, the account, its PIX receiver and
API tokens. A log-in is an HttpOnly SameSite=Lax cookie; writes it authenticates pass the Origin
check (`handlers.base.check_same_origin`). API tokens work everywhere a log-in does."""

from __future__ import annotations

import contextlib

from handlers.base import LOGIN_COOKIE, ApiHandler, check_same_origin
from handlers.openapi import operation, path_param
from server.accounts import public_token, public_user
from server.errors import Unauthorized
from server.schemas import validate

AUTH = "/api/v1/auth"
ACCOUNT = "/api/v1/account"


class _LoginBase(ApiHandler):
    def set_login_cookie(self, secret: str) -> None:
        self.set_cookie(
            LOGIN_COOKIE,
            secret,
            path="/",
            max_age=self.services.settings.login_ttl_s,
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
        )


class AuthStateHandler(ApiHandler):
    """Who is logged in (or null) and whether this server takes sign-ups: what the pages show."""

    async def get(self) -> None:
        user = None
        with contextlib.suppress(Unauthorized):
            user = public_user(await self.account())
        open_ = await self.services.accounts.signup_open()
        self.write_json({"user": user, "signup_open": open_})


class SignupHandler(_LoginBase):
    async def post(self) -> None:
        await self.rate_limit("login")
        check_same_origin(self.request)  # a page elsewhere must not sign a visitor up
        body = validate(self.json_body(), "Signup")
        user, secret = await self.services.accounts.signup(
            body["username"], body["password"], body.get("display_name")
        )
        self.set_login_cookie(secret)
        self.write_json({"user": public_user(user)}, 201)


class LoginHandler(_LoginBase):
    async def post(self) -> None:
        await self.rate_limit("login")
        check_same_origin(self.request)  # log-in CSRF: a page elsewhere logging you in as it
        body = validate(self.json_body(), "Login")
        # A second bucket per account name: guesses spread over many addresses still meet it.
        name = str(body["username"]).strip().lower()[:64]
        await self.services.limits.check("login", f"user={name}")
        user, secret = await self.services.accounts.login(body["username"], body["password"])
        self.set_login_cookie(secret)
        self.write_json({"user": public_user(user)})


class LogoutHandler(ApiHandler):
    async def post(self) -> None:
        check_same_origin(self.request)
        validate(self.json_body(allow_empty=True), "NoFields")
        await self.services.accounts.logout(self.get_cookie(LOGIN_COOKIE))
        self.clear_cookie(LOGIN_COOKIE, path="/")
        self.write_json({"ok": True})


class AccountHandler(ApiHandler):
    async def get(self) -> None:
        self.write_json({"user": public_user(await self.account())})


class AccountPixHandler(ApiHandler):
    async def put(self) -> None:
        user = await self.account()
        body = validate(self.json_body(), "AccountPix")
        self.write_json({"pix": await self.services.accounts.set_pix(user, body["pix"])})


class TokensHandler(ApiHandler):
    async def get(self) -> None:
        user = await self.account()
        tokens = await self.services.accounts.list_tokens(user)
        self.write_json({"tokens": [public_token(t) for t in tokens]})

    async def post(self) -> None:
        user = await self.account()
        body = validate(self.json_body(allow_empty=True), "TokenCreate")
        doc, secret = await self.services.accounts.issue_token(user, body.get("name"))
        self.write_json({"token": public_token(doc), "secret": secret}, 201)


class TokenHandler(ApiHandler):
    async def delete(self, token_id: str) -> None:
        user = await self.account()
        await self.services.accounts.revoke_token(user, token_id)
        self.write_json({"ok": True})


routes = [
    (rf"{AUTH}/state", AuthStateHandler),
    (rf"{AUTH}/signup", SignupHandler),
    (rf"{AUTH}/login", LoginHandler),
    (rf"{AUTH}/logout", LogoutHandler),
    (rf"{ACCOUNT}", AccountHandler),
    (rf"{ACCOUNT}/pix", AccountPixHandler),
    (rf"{ACCOUNT}/tokens", TokensHandler),
    (rf"{ACCOUNT}/tokens/([0-9a-f]{{64}})", TokenHandler),
]

_LOGIN_NOTE = " (sets the HttpOnly log-in cookie; needs this site's Origin)"
openapi = {
    f"{AUTH}/state": {
        "get": operation(
            "Who is logged in, and whether sign-up is open",
            (200, "the account or null", "AuthState"),
            auth=None,
        )
    },
    f"{AUTH}/signup": {
        "post": operation(
            "Create a broadcaster account" + _LOGIN_NOTE,
            (201, "the new account, logged in", "Account"),
            403,
            409,
            body="Signup",
            limited=True,
        )
    },
    f"{AUTH}/login": {
        "post": operation(
            "Log in" + _LOGIN_NOTE,
            (200, "the account", "Account"),
            401,
            403,
            body="Login",
            limited=True,
        )
    },
    f"{AUTH}/logout": {
        "post": operation(
            "Log out (ends this log-in)",
            (200, "done", "Ack"),
            403,
            body="NoFields",
            body_required=False,
        )
    },
    ACCOUNT: {
        "get": operation(
            "The logged-in broadcaster (log-in cookie or API token)",
            (200, "the account", "Account"),
            auth=True,
        )
    },
    f"{ACCOUNT}/pix": {
        "put": operation(
            "Save (or clear with null) the PIX receiver new sessions use when they name none",
            (200, "the saved receiver", "AccountPixSaved"),
            403,
            body="AccountPix",
            auth=True,
        )
    },
    f"{ACCOUNT}/tokens": {
        "get": operation(
            "The account's API tokens (never their secrets)",
            (200, "tokens", "TokenList"),
            auth=True,
        ),
        "post": operation(
            "A new API token for scripts and OBS: the secret is shown once",
            (201, "the token and its secret", "TokenCreated"),
            403,
            409,
            body="TokenCreate",
            body_required=False,
            auth=True,
        ),
    },
    f"{ACCOUNT}/tokens/{{token_id}}": {
        "delete": operation(
            "Revoke an API token",
            (200, "done", "Ack"),
            403,
            404,
            auth=True,
            params=[
                {
                    **path_param("token_id"),
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                }
            ],
        )
    },
}
