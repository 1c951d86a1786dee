"""The web client's routes on the real app: pages with a strict CSP, assets with the right types, every
referenced module present, and the API still answering JSON beside them (no route shadows another).
The pages' behaviour in a real browser is tested in tests/browser/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from handlers.vocabulary import RENDERED_ASSETS
from handlers.web import STATIC_DIR
from tests.api_helpers import login_cookie

PAGES = {
    "/": "index.html",
    "/studio": "studio.html",
    "/watch/{live}": "watch.html",
    "/login": "login.html",
    "/dashboard": "dashboard.html",
}
BROADCASTER_PAGES = ("/studio", "/dashboard")


@pytest.mark.parametrize("path", sorted(PAGES))
async def test_pages_are_served_with_a_strict_policy(server, api, path: str) -> None:
    headers = await login_cookie(server) if path in BROADCASTER_PAGES else {}
    started = await api.post(
        "/api/v1/livestream/session/start", {"title": "page"}, token=api.broadcaster_token
    )
    resp = await api.get(path.format(live=started.json["session"]["id"]), headers=headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.body == (STATIC_DIR / PAGES[path]).read_bytes()
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


async def test_an_unknown_session_gets_a_real_not_found_page(api) -> None:
    resp = await api.get("/watch/ses_abc-123")
    assert resp.status == 404
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.body == (STATIC_DIR / "notfound.html").read_bytes()
    assert b"Session not found" in resp.body and b"/static/js/list.js" in resp.body
    assert "script-src 'self';" in resp.headers["Content-Security-Policy"]
    # A HEAD says the same; an id no session can have is a 404 too.
    assert (await api.request("HEAD", "/watch/ses_abc-123")).status == 404
    assert (await api.get("/watch/" + "x" * 64)).status == 404


async def test_pages_revalidate_by_etag(api) -> None:
    first = await api.get("/login")
    again = await api.get("/login", headers={"If-None-Match": first.headers["Etag"]})
    assert again.status == 304


@pytest.mark.parametrize("path", BROADCASTER_PAGES)
async def test_broadcaster_pages_send_visitors_to_log_in(api, path: str) -> None:
    for headers in ({}, {"Cookie": "ms_login=ms_forged"}):
        resp = await api.get(path, headers=headers, follow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == f"/login?next={path}"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/js/api.js", "text/javascript; charset=utf-8"),
        ("/static/css/app.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_have_their_types(api, path: str, content_type: str) -> None:
    resp = await api.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_favicon_redirects_to_the_svg(api) -> None:
    resp = await api.get("/favicon.ico")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/svg+xml"


@pytest.mark.parametrize(
    "path",
    ["/static/../server/settings.py", "/static/%2e%2e/server/settings.py", "/static/nope.js"],
)
async def test_static_stays_inside_its_folder(api, path: str) -> None:
    resp = await api.get(path)
    assert resp.status in (403, 404)
    assert b"Secret" not in resp.body


@pytest.mark.parametrize("path", ["/watch/", "/watch/a%20b", "/watch/" + "x" * 65, "/studio/x"])
async def test_bad_page_paths_are_json_404s(api, path: str) -> None:
    resp = await api.get(path)
    assert resp.status == 404
    assert resp.json["error"]["status"] == 404


async def test_api_routes_still_answer_json(api) -> None:
    resp = await api.get("/api/v1/livestream/sessions")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json == {"sessions": [], "next": None}


def _references() -> list[tuple[Path, str]]:
    refs: list[tuple[Path, str]] = []
    for page in STATIC_DIR.glob("*.html"):
        for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.read_text()):
            refs.append((page, url.removeprefix("/static/")))
    for module in (STATIC_DIR / "js").glob("*.js"):
        for rel in re.findall(
            r'^\s*(?:import|export)\b[^"\n]*"(\./[^"]+)"', module.read_text(), re.M
        ):
            refs.append((module, f"js/{rel.removeprefix('./')}"))
    return refs


def test_every_referenced_asset_exists() -> None:
    refs = _references()
    assert len(refs) > 10
    missing = [
        (str(src.name), ref)
        for src, ref in refs
        if not (STATIC_DIR / ref).is_file() and ref not in RENDERED_ASSETS
    ]
    assert missing == []


@pytest.mark.parametrize("asset", RENDERED_ASSETS)
async def test_rendered_assets_are_served_as_modules(api, asset: str) -> None:
    """Referenced modules the server renders (the vocabulary) answer like the files beside them."""
    assert not (STATIC_DIR / asset).exists()
    resp = await api.get(f"/static/{asset}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_render_data_as_text_only() -> None:
    """The client builds DOM with textContent; no HTML parsing of data anywhere."""
    for module in (STATIC_DIR / "js").glob("*.js"):
        source = module.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in source, f"{module.name} uses {sink}"
