"""The web client: the stream list, studio and viewer pages plus their static assets.

The client is plain ES modules and CSS under `handlers/static/` (no build step), served by the same
Tornado app as the API so pages call it same-origin. Pages carry a strict Content-Security-Policy: no
inline script or style, so text from the API can never run even if a rendering bug slipped through.
Routes here are exact paths (`/`, `/studio`, `/watch/<id>`, `/static/...`), never a catch-all, so they
cannot shadow an API route wherever the module sits in `ROUTE_MODULES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tornado.web
from tornado.escape import url_escape

from handlers.base import LOGIN_COOKIE
from handlers.errors import JsonErrors
from server.errors import NotFound, Unauthorized
from server.services import Services

STATIC_DIR = Path(__file__).resolve().parent / "static"
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def security_headers(handler: tornado.web.RequestHandler, connect_origins: tuple[str, ...]) -> None:
    connect = " ".join(("'self'", *connect_origins))
    handler.set_header(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
        f"connect-src {connect}; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'",
    )
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")
    # Capture is the studio's whole point; nothing else may ask for it.
    handler.set_header(
        "Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)"
    )


class PageHandler(JsonErrors):
    """Serves one HTML page; the page's script reads ids from the URL and talks to the API.
    A page for broadcasters (`login_required`) sends a visitor without a log-in to `/login`."""

    page = "index.html"
    login_required = False

    def initialize(self, services: Services) -> None:
        self.services = services

    def prepare(self) -> None:
        # Not in set_default_headers: Tornado calls that before initialize() gives us the settings.
        security_headers(self, self.services.settings.allowed_origins)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")

    async def get(self, *_args: Any) -> None:
        if self.login_required and not await self._logged_in():
            self.redirect(
                "/login?next=" + url_escape(self.request.path, plus=False).replace("%2F", "/")
            )
            return
        # Pages are a few KB read from the package; Tornado adds the ETag and answers 304 itself.
        self.write((STATIC_DIR / self.page).read_bytes())

    async def head(self, *args: Any) -> None:
        await self.get(*args)

    async def _logged_in(self) -> bool:
        try:
            await self.services.accounts.authenticate(self.get_cookie(LOGIN_COOKIE), kind="web")
        except Unauthorized:
            return False
        return True


class IndexPage(PageHandler):
    page = "index.html"


class StudioPage(PageHandler):
    page = "studio.html"
    login_required = True


class DashboardPage(PageHandler):
    page = "dashboard.html"
    login_required = True


class LoginPage(PageHandler):
    page = "login.html"


class WatchPage(PageHandler):
    """`/watch/<id>`: the viewer page, or a real 404 page (with the sessions live now) when no
    session has that id, rather than a viewer page with every control disabled."""

    page = "watch.html"

    async def get(self, *args: Any) -> None:
        try:
            await self.services.sessions.get_session(args[0])
        except NotFound:
            self.set_status(404)
            self.write((STATIC_DIR / "notfound.html").read_bytes())
            return
        await super().get(*args)


class AssetHandler(JsonErrors, tornado.web.StaticFileHandler):
    """Scripts, styles and icons. URLs are not content-hashed, so clients revalidate by ETag."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")

    def get_content_type(self) -> str:
        # mimetypes tables differ between systems; modules must be served as JavaScript.
        path = self.absolute_path or ""
        for suffix, content_type in _CONTENT_TYPES.items():
            if path.endswith(suffix):
                return content_type
        return super().get_content_type()


class FaviconRedirect(JsonErrors, tornado.web.RedirectHandler):
    """`/favicon.ico` → the SVG icon (errors, e.g. an unknown method, still in JSON)."""


routes = [
    (r"/", IndexPage),
    (r"/studio", StudioPage),
    (r"/dashboard", DashboardPage),
    (r"/login", LoginPage),
    (r"/watch/([A-Za-z0-9_-]{1,64})", WatchPage),
    (r"/static/(.*)", AssetHandler, {"path": str(STATIC_DIR)}),
    (r"/favicon\.ico", FaviconRedirect, {"url": "/static/favicon.svg"}),
]
