"""The whole picture in the lab: the real server, an aiortc publisher, Chromium viewers, and meters.

`LabRun` (a context manager over a `Lab`):
- runs `multistream serve --host 0.0.0.0` in the server namespace (`ip netns exec`), offering ICE
  host candidates on the server's veth addresses only; with `rtcp_log` every RTCP packet it
  receives is logged (see `rtcp_log.py`);
- runs an asyncio loop on a thread inside the server namespace for the publisher (aiortc, VP8, the
  `content` pictures: a scrolling text screen and a panning camera, 1280x720 at 30 fps, each
  encoded by aiortc's VP8 encoder at a steady 1.5 Mb/s, see `steady_bitrate`) and the API calls;
- runs one headless Chromium per viewer namespace, each driven by its own loop thread there; a
  viewer opens `/watch/<session>` as a person would, with its streams and mode saved beforehand.
Tests and `bench.netlab` call it synchronously; every coroutine runs on the loop of its namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket

from server.domain import KIND_RULES
from tests.api_helpers import web_broadcaster
from tests.browser.cdp import Page
from tests.browser.chromium import Browser
from tests.browser.netns import NetnsLoop
from tests.conftest import Client
from tests.media_helpers import PREFIX, join, publish, start_session
from tests.ops_helpers import BIN, ServerProcess, start_server

from .content import ContentTrack, write_y4m
from .lab import Counter, Lab
from .viewer import READ_SAMPLES, STATS_HOOK, ViewSummary, summarise

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LabSession:
    """A live session with both streams published from the server namespace."""

    id: str
    streams: dict[str, str]  # kind -> stream id
    publishers: list[Any]
    tracks: dict[str, ContentTrack]  # kind -> the publisher's source
    token: str = ""  # the broadcaster's token (reads /debug/viewers)


@dataclass
class LabViewer:
    """One Chromium page watching a session over link `link`."""

    link: int
    session: LabSession | None  # None for the Chromium -> Chromium anchor
    kinds: tuple[str, ...]  # the videos it shows: ("screen",), ("screen", "camera"), ("composite",)
    page: Page
    context: str
    opened_at: float  # time.monotonic() when its page started loading (page time 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def page_time(self, at: float | None = None) -> float:
        return (time.monotonic() if at is None else at) - self.opened_at


@dataclass(frozen=True)
class Mark:
    """Counters of every link at one instant (for the server's send rate between two marks)."""

    at: float
    sent: tuple[Counter, ...]
    published: dict[tuple[str, str], int]  # (session id, kind) -> frames its publisher made


@dataclass
class Result:
    """What a viewer saw and what the server sent toward it, over one window."""

    views: dict[str, ViewSummary]
    send_mbps: float
    window_s: float
    source_fps: dict[str, float] = field(default_factory=dict)  # per kind shown: what was published
    # The server's debug view of the session's viewers at the end (`/debug/viewers`), when read.
    server: list[dict[str, Any]] = field(default_factory=list)

    def brief(self) -> str:
        views = "; ".join(v.brief() for v in self.views.values())
        source = ", ".join(f"{k} {fps:.1f}" for k, fps in self.source_fps.items())
        return (
            f"{views}; server sent {self.send_mbps:.2f} Mb/s over {self.window_s:.0f} s"
            f"; publisher fps: {source or 'n/a'}"
        )


class LabRun:
    """Server, publisher loop and one Chromium per viewer link; `close()` stops all of it."""

    def __init__(
        self,
        lab: Lab,
        workdir: Path,
        chromium: str,
        *,
        rtcp_log: bool = False,
        server_env: dict[str, str] | None = None,
    ) -> None:
        self.lab = lab
        self.server_env = dict(server_env or {})
        self.workdir = workdir
        self.chromium = chromium
        self.rtcp_log_path = workdir / "rtcp.jsonl" if rtcp_log else None
        self.server: ServerProcess | None = None
        self.port = 0
        self.server_loop: NetnsLoop | None = None
        self.viewer_loops: list[NetnsLoop] = []
        self.browsers: list[Browser] = []
        self.publisher_browser: Browser | None = None
        self._sessions: list[LabSession] = []
        self._broadcaster_token: str | None = None  # the lab's broadcaster (signed up on first use)

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> LabRun:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            "MULTISTREAM_HOST": "0.0.0.0",
            "MULTISTREAM_ICE_HOSTS": ",".join(link.server_ip for link in self.lab.links),
            "MULTISTREAM_ICE_SERVERS": "",
            "MULTISTREAM_RECORD": "0",
            "MULTISTREAM_TOKEN_SECRET": "netlab-secret-" + "x" * 32,
            "MULTISTREAM_INSTANCE_ID": "netlab",
            "MULTISTREAM_DRAIN_DEADLINE": "0",  # the lab's sessions need no grace on shutdown
            "PYTHONPATH": str(REPO),
            **self.server_env,
        }
        program = [str(BIN)]
        if self.rtcp_log_path is not None:
            env["MULTISTREAM_NETLAB_RTCP_LOG"] = str(self.rtcp_log_path)
            program = [sys.executable, "-m", "tests.netlab.rtcp_log"]
        self.server = start_server(
            self.workdir / "data",
            self.workdir / "server.log",
            env=env,
            command=[*self.lab.exec_prefix(self.lab.server_ns), *program],
        )
        self.port = int(self.server.base_url.rsplit(":", 1)[1])
        self.server_loop = NetnsLoop(self.lab.server_ns)
        self.server_loop.start()
        for link in self.lab.links:
            loop = NetnsLoop(link.namespace)
            loop.start()
            self.viewer_loops.append(loop)
            workdir = self.workdir / f"chromium-v{link.index}"
            self.browsers.append(loop.run(Browser.launch(self.chromium, workdir)))

    def close(self) -> None:
        """Stop browsers, publishers, loops and the server; the Lab removes the namespaces."""
        for loop, browser in zip(self.viewer_loops, self.browsers, strict=False):
            with contextlib.suppress(Exception):
                loop.run(browser.close(), timeout=20)
        if self.server_loop is not None:
            if self.publisher_browser is not None:
                with contextlib.suppress(Exception):
                    self.server_loop.run(self.publisher_browser.close(), timeout=20)
            for session in self._sessions:
                with contextlib.suppress(Exception):
                    self.server_loop.run(_close_publishers(session), timeout=20)
            self.server_loop.stop()
        for loop in self.viewer_loops:
            loop.stop()
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop(timeout=20)
        self.browsers.clear()
        self.viewer_loops.clear()
        self.publisher_browser = None
        self.server_loop = None
        self.server = None

    # -- addresses ------------------------------------------------------------------------------

    def url(self, link: int = 0) -> str:
        """The server as viewer `link` reaches it (its veth address on that link)."""
        return f"http://{self.lab.links[link].server_ip}:{self.port}"

    def _api(self) -> Client:
        return Client(self.url(0))

    def get(self, path: str, token: str | None = None) -> Any:
        """GET `path` from the server (from its own namespace) and return the JSON body, or the
        text for non-JSON answers such as `/metrics`."""

        async def fetch() -> Any:
            resp = await self._api().get(path, token=token)
            assert resp.status == 200, f"GET {path}: {resp.status} {resp.body[:300]!r}"
            try:
                return resp.json
            except ValueError:
                return resp.body.decode()

        return self._srv().run(fetch(), timeout=20)

    def debug_viewers(self, session: LabSession) -> list[dict[str, Any]]:
        """The server's view of every viewer connection of `session` (estimate, rung, key-frame
        requests): `GET /session/<id>/debug/viewers` with the broadcaster's token."""
        body = self.get(f"{PREFIX}/session/{session.id}/debug/viewers", token=session.token)
        return list(body["viewers"])

    def _srv(self) -> NetnsLoop:
        assert self.server_loop is not None, "LabRun not started"
        return self.server_loop

    # -- publisher and viewers ------------------------------------------------------------------

    def publish(
        self, kinds: tuple[str, ...] = ("screen", "camera"), timeout: float = 20
    ) -> LabSession:
        """Start a session with `kinds` and publish them (aiortc, VP8) from the server namespace."""
        session = self._srv().run(self._publish(kinds, timeout), timeout=timeout + 10)
        self._sessions.append(session)
        return session

    async def _publish(self, kinds: tuple[str, ...], timeout: float) -> LabSession:
        api = self._api()
        if self._broadcaster_token is None:
            self._broadcaster_token = await web_broadcaster(api)
        api.broadcaster_token = self._broadcaster_token
        started = await start_session(api, kinds)
        token = started["broadcaster_token"]
        streams = {s["kind"]: s["id"] for s in started["session"]["streams"]}
        hosts = (self.lab.links[0].server_ip,)
        tracks = {kind: ContentTrack(kind) for kind in kinds}
        publishers = [
            await publish(api, token, streams[kind], tracks[kind], codec="VP8", hosts=hosts)
            for kind in kinds
        ]
        for publisher in publishers:
            for sender in publisher.pc.getSenders():
                if sender.kind == "video":
                    steady_bitrate(sender, PUBLISHER_BPS)
        session = LabSession(started["session"]["id"], streams, publishers, tracks, token)
        deadline = time.monotonic() + timeout
        while True:
            status = (await api.get(f"{PREFIX}/session/{session.id}/status")).json
            if all(s["status"] == "live" for s in status["streams"]):
                return session
            if time.monotonic() > deadline:
                raise TimeoutError(f"streams not live after {timeout}s: {status['streams']}")
            await asyncio.sleep(0.1)

    def end(self, session: LabSession) -> None:
        """Stop the session's publishers (its viewers see the end)."""
        if session in self._sessions:
            self._sessions.remove(session)
        self._srv().run(_close_publishers(session), timeout=20)

    def open_viewer(
        self,
        session: LabSession,
        link: int,
        mode: str = "separate",
        streams: tuple[str, ...] = ("screen",),
    ) -> LabViewer:
        """A new person (own browser context) on link `link` opens the watch page of `session`,
        having chosen `streams` in `mode` ("separate" or "composite") on an earlier visit."""
        prefs = {"enabled_streams": list(streams), "mode": mode}
        joined = self._srv().run(join(self._api(), session.id, prefs))
        token = joined["viewer_token"]
        kinds = ("composite",) if mode == "composite" else streams
        loop, browser = self.viewer_loops[link], self.browsers[link]
        remember = (
            f"if (location.pathname.startsWith('/watch/')) "
            f"localStorage.setItem({json.dumps('multistream.viewer.' + session.id)}, "
            f"{json.dumps(token)});"
        )

        async def open_page() -> LabViewer:
            context = await browser.new_context()
            page = await browser.new_page(context)
            for script in (STATS_HOOK, remember):
                await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": script})
            opened = time.monotonic()
            await page.goto(f"{self.url(link)}/watch/{session.id}", timeout=30)
            return LabViewer(link, session, kinds, page, context, opened)

        return loop.run(open_page(), timeout=40)

    def close_viewer(self, viewer: LabViewer, quiet_timeout: float = 15) -> None:
        """Close the viewer's connections (as leaving the page does), its browser context, and
        wait until the server has stopped sending toward that link, so the next measurement on
        it starts on an idle link (a peer that vanished would get media until ICE gives up)."""
        loop, browser = self.viewer_loops[viewer.link], self.browsers[viewer.link]
        with contextlib.suppress(Exception):
            loop.run(viewer.page.evaluate(CLOSE_CONNECTIONS), timeout=10)
        with contextlib.suppress(Exception):
            loop.run(browser.close_context(viewer.context), timeout=20)
        self.wait_link_idle(viewer.link, quiet_timeout)

    def wait_link_idle(self, link: int, timeout: float = 15, max_bps: float = 20_000) -> bool:
        """Wait until less than `max_bps` of UDP goes toward viewer `link` over half a second."""
        deadline = time.monotonic() + timeout
        before = self.lab.sent(link)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.lab.sent(link)
            if (now.bytes - before.bytes) * 8 / 0.5 < max_bps:
                return True
            before = now
        return False

    # -- Chromium -> Chromium (the anchor: what a browser sender achieves on the same link) ------

    def open_browser_pair(
        self, link: int, content_hint: str = "detail", y4m_frames: int = 60
    ) -> LabViewer:
        """A Chromium publisher in the server namespace sends the lab's screen pictures (VP8, up to
        1.5 Mb/s like the aiortc publisher) straight to a Chromium viewer on `link`; the test
        process relays offer and answer through DevTools. `content_hint` is the track's hint:
        `detail` (Chromium's screen-share mode: keeps resolution, drops frames) or `motion`
        (keeps frame rate, lowers resolution)."""
        srv = self._srv()
        if self.publisher_browser is None:
            clip = write_y4m(self.workdir / "screen.y4m", "screen", frames=y4m_frames)
            self.publisher_browser = srv.run(
                Browser.launch(
                    self.chromium,
                    self.workdir / "chromium-publisher",
                    (f"--use-file-for-fake-video-capture={clip}",),
                ),
                timeout=40,
            )
        pub_browser = self.publisher_browser
        loop, browser = self.viewer_loops[link], self.browsers[link]

        async def publisher_offer() -> tuple[Page, str, str]:
            context = await pub_browser.new_context()
            page = await pub_browser.new_page(context)
            # 127.0.0.1 is a secure context, which getUserMedia requires.
            await page.goto(f"http://127.0.0.1:{self.port}/")
            sdp = await page.evaluate(
                PAIR_PUBLISHER_OFFER % json.dumps(content_hint), user_gesture=True
            )
            return page, context, sdp

        pub_page, pub_context, offer = srv.run(publisher_offer(), timeout=40)

        async def viewer_answer() -> tuple[LabViewer, str]:
            context = await browser.new_context()
            page = await browser.new_page(context)
            await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": STATS_HOOK})
            opened = time.monotonic()
            await page.goto(f"{self.url(link)}/")
            sdp = await page.evaluate(PAIR_VIEWER_ANSWER % json.dumps(offer))
            return LabViewer(link, None, ("c2c",), page, context, opened), sdp

        viewer, answer = loop.run(viewer_answer(), timeout=40)
        srv.run(pub_page.evaluate(PAIR_PUBLISHER_ANSWER % json.dumps(answer)), timeout=20)
        viewer.extra = {"publisher_page": pub_page, "publisher_context": pub_context}
        return viewer

    def close_browser_pair(self, viewer: LabViewer) -> None:
        extra = viewer.extra
        if self.publisher_browser is not None and extra:
            with contextlib.suppress(Exception):
                self._srv().run(extra["publisher_page"].evaluate("window.__pub.close(), true"))
            with contextlib.suppress(Exception):
                self._srv().run(
                    self.publisher_browser.close_context(extra["publisher_context"]), timeout=20
                )
        self.close_viewer(viewer)

    # -- measuring ------------------------------------------------------------------------------

    def mark(self) -> Mark:
        published = {
            (session.id, kind): track.frames_sent
            for session in self._sessions
            for kind, track in session.tracks.items()
        }
        sent = tuple(self.lab.sent(i) for i in range(len(self.lab.links)))
        return Mark(time.monotonic(), sent, published)

    def mark_after(self, viewer: LabViewer, seconds: float) -> Mark:
        """Wait until `viewer`'s page has been open `seconds`, then mark."""
        _sleep_until(viewer.opened_at + seconds)
        return self.mark()

    def samples(self, viewer: LabViewer, since: float = 0.0) -> list[dict[str, Any]]:
        loop = self.viewer_loops[viewer.link]
        raw = loop.run(viewer.page.evaluate(READ_SAMPLES % since), timeout=20)
        return list(json.loads(raw))

    def result(self, viewer: LabViewer, start: Mark, end: Mark) -> Result:
        """What `viewer` saw between two marks, and the server's UDP send rate toward it."""
        views = summarise(
            self.samples(viewer), viewer.page_time(start.at), viewer.page_time(end.at), viewer.kinds
        )
        window = max(end.at - start.at, 1e-3)
        sent = end.sent[viewer.link].bytes - start.sent[viewer.link].bytes
        source: dict[str, float] = {}
        if viewer.session is not None:
            for kind in viewer.kinds:
                # A composite with a screen carries text: it runs at the screen's quality frame
                # rate (the session's default), never faster than the screen is published.
                key = (viewer.session.id, "screen" if kind == "composite" else kind)
                if key in start.published and key in end.published:
                    rate = (end.published[key] - start.published[key]) / window
                    if kind == "composite":
                        rate = min(rate, KIND_RULES["screen"].default_fps)
                    source[kind] = rate
        return Result(views, sent * 8 / window / 1e6, window, source)

    def watch(self, viewer: LabViewer, warmup: float, seconds: float) -> Result:
        """Wait `warmup` seconds after the page opened, then measure for `seconds`."""
        start = self.mark_after(viewer, warmup)
        _sleep_until(start.at + seconds)
        return self.result(viewer, start, self.mark())

    def rtcp_records(self) -> list[dict[str, Any]]:
        if self.rtcp_log_path is None or not self.rtcp_log_path.exists():
            return []
        return [json.loads(line) for line in self.rtcp_log_path.read_text().splitlines() if line]

    def server_log(self) -> str:
        return self.server.log_text() if self.server is not None else ""


# The publisher's video bitrate: aiortc's VP8 cap, what the lab's docs and numbers assume.
PUBLISHER_BPS = 1_500_000


def steady_bitrate(sender: Any, bps: int) -> None:
    """Keep an aiortc publisher's encoder at `bps` whatever REMB the server sends.

    aiortc's VP8 encoder restarts — a key frame for every viewer — whenever REMB moves its target
    by more than 10 %, and the server's receive-side estimate of a veth link wanders with its CPU
    load: a viewer's key-frame count then measured the machine, not the server's delivery. A
    browser (or OBS, FFmpeg) changes its bitrate without a key frame; this makes the lab's
    publisher behave the same: REMB sets the target to `bps` (once: later ones change nothing)."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)
            if encoder is not None and hasattr(encoder, "target_bitrate"):
                encoder.target_bitrate = bps
            return
        await original(packet)

    sender._handle_rtcp_packet = handle


def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


async def _close_publishers(session: LabSession) -> None:
    for publisher in session.publishers:
        with contextlib.suppress(Exception):
            await publisher.pc.close()
    session.publishers.clear()


_GATHERED = """
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, 3000);
  });
"""

PAIR_PUBLISHER_OFFER = (
    """(async () => {
  const stream = await navigator.mediaDevices.getUserMedia(
    { video: { width: 1280, height: 720, frameRate: 30 } });
  const track = stream.getVideoTracks()[0];
  track.contentHint = %s;
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.__pub = pc;
  pc.addTransceiver(track, { direction: "sendonly", sendEncodings: [{ maxBitrate: 1500000 }] });
  await pc.setLocalDescription(await pc.createOffer());
"""
    + _GATHERED
    + """
  return pc.localDescription.sdp;
})()"""
)

PAIR_VIEWER_ANSWER = (
    """(async () => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addEventListener("track", (event) => {
    const video = document.createElement("video");
    video.dataset.kind = "c2c";
    video.muted = true;
    video.autoplay = true;
    video.srcObject = new MediaStream([event.track]);
    document.body.appendChild(video);
  });
  await pc.setRemoteDescription({ type: "offer", sdp: %s });
  await pc.setLocalDescription(await pc.createAnswer());
"""
    + _GATHERED
    + """
  return pc.localDescription.sdp;
})()"""
)

CLOSE_CONNECTIONS = """(() => {
  for (const pc of (window.__netlab || { pcs: [] }).pcs) pc.close();
  return true;
})()"""

PAIR_PUBLISHER_ANSWER = """(async () => {
  await window.__pub.setRemoteDescription({ type: "answer", sdp: %s });
  return true;
})()"""
