"""Fixtures for the real-browser tests: a namespaced event loop, the real server, headless Chromium.

How the isolation works (and why no re-exec of pytest is needed): `NetnsLoop` (netns.py) runs an
asyncio loop on a thread that has unshared its network namespace and brought up `lo`. The server
under test, the DevTools connection and the Chromium process are all created from that thread, so
they share a namespace whose only interface is loopback: Chromium's startup DNS lookups fail fast,
and WebRTC can only use 127.0.0.1. Tests are ordinary synchronous pytest functions that hand
coroutines to that loop with `netns.run(...)`, so the README's single `pytest` command runs them and
reports each one. The loop, server and Chromium are package-scoped: shared by the browser test
modules and gone before the rest of the suite runs. Requirements: root (CAP_SYS_ADMIN) and Debian's `/usr/bin/chromium`; without them
the tests skip with the reason, unless `MULTISTREAM_REQUIRE_BROWSER=1` (set by `.ci/run`) turns the
skip into a failure.

Chromium's fake camera and fake screen both draw the same green test card, so the camera is fed
from a generated magenta Y4M clip (`--use-file-for-fake-video-capture`) while the screen keeps the
green card: composites can then be checked for *where* the camera is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tornado.httpserver
import tornado.testing

from multistream.app import make_app
from server.lifespan import open_services
from server.settings import Secret, Settings
from tests.required import mark_folder, unavailable

from .cdp import Page
from .chromium import Browser, find_chromium
from .netns import NamespaceUnavailable, NetnsLoop

REPO = Path(__file__).resolve().parents[2]
CAMERA_CLIP_SIZE = (640, 360)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(items, Path(__file__).parent, pytest.mark.browser)


def _unavailable(reason: str) -> None:
    unavailable("MULTISTREAM_REQUIRE_BROWSER", "browser tests", reason)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Screenshots and browser logs a person can open after the run (git-ignored)."""
    path = Path(os.environ.get("MULTISTREAM_TEST_OUTPUT", REPO / "test-output")) / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        _unavailable("Chromium not installed (apt-get install -y chromium); .ci/run installs it")
    assert path is not None
    return path


@pytest.fixture(scope="package")
def netns(chromium_path: str) -> Iterator[NetnsLoop]:
    loop = NetnsLoop()
    try:
        loop.start()
    except (NamespaceUnavailable, OSError) as exc:
        _unavailable(f"cannot create a network namespace (needs root): {exc}")
    yield loop
    loop.stop()


async def log_in(page: Page, base_url: str, next_path: str) -> None:
    """Log `page`'s browser context in as STUDIO_USER through the log-in page, landing on
    `next_path` (the page a broadcaster asked for before being sent to log in)."""
    await page.goto(f"{base_url}{next_path}")  # a broadcaster page: redirected to /login
    await page.wait_for("document.body.dataset.ready === '1'")
    user, password = json.dumps(STUDIO_USER), json.dumps(STUDIO_PASSWORD)
    await page.evaluate(
        f"(() => {{ document.querySelector('#login-username').value = {user};"
        f" document.querySelector('#login-password').value = {password};"
        " document.querySelector('#login-form').requestSubmit(); return true; })()"
    )
    # Landed, and loaded as `goto` would wait for (module scripts have run by the load event).
    await page.wait_for(
        f"location.pathname === {json.dumps(next_path)} && document.readyState === 'complete'",
        timeout=15,
    )


def write_camera_clip(path: Path, frames: int = 30) -> Path:
    """A magenta clip with a white bar sweeping across: unmistakable next to the green fake screen."""
    width, height = CAMERA_CLIP_SIZE
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode())
        u = np.full((height // 2, width // 2), 212, np.uint8)
        v = np.full((height // 2, width // 2), 234, np.uint8)
        for i in range(frames):
            y = np.full((height, width), 105, np.uint8)
            x = (i * width // frames) % width
            y[:, x : x + width // 24] = 235
            fh.write(b"FRAME\n" + y.tobytes() + u.tobytes() + v.tobytes())
    return path


# The broadcaster the browser tests log in as (a password account made with the server).
STUDIO_USER = "studio"
STUDIO_PASSWORD = "studio password 1"


@dataclass
class WebServer:
    base_url: str
    services: object
    # An API token of STUDIO_USER, for tests that start sessions over the API.
    broadcaster_token: str = ""


def serve_in(
    netns: NetnsLoop, settings: Settings, *, studio_user: bool = True, stop_timeout: float = 60
) -> Iterator[WebServer]:
    """The real app on an ephemeral port inside the namespace, for a fixture to `yield from`.
    With `studio_user`, STUDIO_USER exists and its API token is the server's `broadcaster_token`
    (for tests that start sessions over the API); without, the server is as on its first start."""
    stack = AsyncExitStack()

    async def start() -> tuple[tornado.httpserver.HTTPServer, WebServer]:
        services = await stack.enter_async_context(open_services(settings))
        sock, port = tornado.testing.bind_unused_port()
        http = tornado.httpserver.HTTPServer(make_app(settings, services))
        http.add_sockets([sock])
        server = WebServer(f"http://127.0.0.1:{port}", services)
        if studio_user:
            user = await services.accounts.create_user(STUDIO_USER, STUDIO_PASSWORD, "Studio Test")
            _, server.broadcaster_token = await services.accounts.issue_token(user, "browser tests")
        return http, server

    http, server = netns.run(start())
    yield server

    async def stop() -> None:
        http.stop()
        await http.close_all_connections()
        await stack.aclose()

    netns.run(stop(), stop_timeout)


@pytest.fixture(scope="package")
def web_server(netns: NetnsLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """The real app (real store, media plane, payments) on an ephemeral port inside the namespace."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("browser-data"),
        token_secret=Secret("browser-test-secret-" + "x" * 32),
        ice_hosts=("127.0.0.1",),
        ice_servers=(),
        record=False,
        instance_id="browser-test",
        pix_webhook_secret=Secret("browser-webhook-secret"),
        # The journey test signs a new broadcaster up while STUDIO_USER exists already.
        signup="open",
    )
    yield from serve_in(netns, settings)


@pytest.fixture(scope="package")
def browser(
    netns: NetnsLoop,
    web_server: WebServer,
    chromium_path: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Browser]:
    workdir = tmp_path_factory.mktemp("chromium")
    clip = write_camera_clip(workdir / "camera.y4m")
    extra = (f"--use-file-for-fake-video-capture={clip}",)
    running = netns.run(Browser.launch(chromium_path, workdir, extra))
    yield running
    netns.run(running.close())
