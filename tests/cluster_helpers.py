"""Several real `multistream serve` processes on loopback sharing one store: what the routing and
failover tests run. Each instance gets its own UDP port range, so a test can tell from an SDP
answer's candidates which instance will carry the media."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import tornado.httpclient
import tornado.websocket
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.api_helpers import web_broadcaster
from tests.conftest import Client
from tests.media_helpers import PREFIX, PatternTrack, join, offer_of, start_session
from tests.ops_helpers import ServerProcess, free_port, start_server

SECRET = "cluster-shared-token-secret-" + "c" * 24
_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", re.M | re.I)


def udp_range(index: int) -> tuple[int, int]:
    lo = 41000 + 1000 * index
    return lo, lo + 199


def candidate_ports(sdp: str) -> set[int]:
    return {int(port) for port in _CANDIDATE.findall(sdp)}


def start_instance(
    tmp_path: Path, store: str, index: int, extra: dict[str, str] | None = None
) -> ServerProcess:
    name = "abc"[index]
    lo, hi = udp_range(index)
    return start_server(
        tmp_path / name,
        tmp_path / f"{name}.log",
        {
            "MULTISTREAM_STORE": store,
            "MULTISTREAM_TOKEN_SECRET": SECRET,
            "MULTISTREAM_INSTANCE_ID": f"inst-{name}",
            "MULTISTREAM_UDP_PORTS": f"{lo}-{hi}",
            "MULTISTREAM_DRAIN_DEADLINE": "0",
            **(extra or {}),
        },
        port=free_port(),
    )


@contextmanager
def cluster(
    tmp_path: Path, store_url: str | None, count: int = 2, extra: dict[str, str] | None = None
) -> Iterator[list[ServerProcess]]:
    """`count` instances on one store (the given MongoDB database, else one SQLite file)."""
    store = store_url or f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    started: list[ServerProcess] = []
    try:
        for index in range(count):
            started.append(start_instance(tmp_path, store, index, extra))
        yield started
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.stop()


async def peers(api: Client, role: str) -> float:
    text = (await api.get("/metrics")).body.decode()
    match = re.search(rf'^multistream_peer_connections{{role="{role}"}} (\S+)$', text, re.M)
    assert match, text
    return float(match.group(1))


async def wait_peers(api: Client, role: str, value: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (got := await peers(api, role)) != value:
        assert time.monotonic() < deadline, f"{role} peers {got}, expected {value}"
        await asyncio.sleep(0.1)


class Resilient:
    """A peer signaled over the WebSocket that reconnects by itself, as the studio and player
    pages must: when its signaling socket closes or its connection fails, it opens a new socket --
    trying each URL in turn, as a load balancer sends a new connection to a live instance -- and
    negotiates a new peer connection with a fresh offer, retrying refused attempts every
    `retry_s`. `make_track` makes it a publisher (a new track per connection); without it, a
    viewer that records when each connection's first video frame arrived."""

    def __init__(
        self,
        urls: list[str],
        path: str,
        token: str,
        make_track: Callable[[], MediaStreamTrack] | None = None,
        retry_s: float = 0.25,
    ) -> None:
        self.urls = urls
        self.path = path
        self.token = token
        self.make_track = make_track
        self.retry_s = retry_s
        self.connections = 0  # answered offers so far
        self.first_frame: dict[int, float] = {}  # connection number -> monotonic time
        self.frames = 0
        self.refusals: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._pc: RTCPeerConnection | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pc is not None:
            await self._pc.close()

    async def wait_connection(self, number: int, frames: bool, timeout: float) -> float:
        """Wait until connection `number` is up (and, for a viewer, has shown a frame)."""
        deadline = time.monotonic() + timeout
        while True:
            if frames and number in self.first_frame:
                return self.first_frame[number]
            if not frames and self.connections >= number:
                return time.monotonic()
            assert time.monotonic() < deadline, (
                f"connection {number} not up: {self.connections} connections, "
                f"refusals {self.refusals[-5:]}"
            )
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        attempt = 0
        while True:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            try:
                await self._one(url)
            except (
                OSError,
                tornado.httpclient.HTTPClientError,
                tornado.websocket.WebSocketError,
            ) as exc:
                self.refusals.append(f"{url}: {exc!r}")
            await asyncio.sleep(self.retry_s)

    async def _one(self, url: str) -> None:
        ws_url = "ws" + url.removeprefix("http") + f"{self.path}?access_token={self.token}"
        conn = await tornado.websocket.websocket_connect(
            tornado.httpclient.HTTPRequest(ws_url, request_timeout=5)
        )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        dead = asyncio.Event()
        number = self.connections + 1
        try:
            if self.make_track is not None:
                pc.addTransceiver(self.make_track(), direction="sendonly")
            else:
                pc.addTransceiver("video", direction="recvonly")
                pc.on("track", lambda track: asyncio.ensure_future(self._pull(track, number)))

            @pc.on("connectionstatechange")
            def _state() -> None:
                if pc.connectionState in ("failed", "closed"):
                    dead.set()

            await conn.write_message(json.dumps({"type": "offer", **await offer_of(pc)}))
            raw = await conn.read_message()
            if raw is None:
                self.refusals.append(f"{url}: socket closed before the answer")
                return
            answer = json.loads(raw)
            if answer.get("type") != "answer":
                self.refusals.append(f"{url}: {answer}")
                return
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            self.connections = number
            closed = asyncio.ensure_future(conn.read_message())
            failed = asyncio.ensure_future(dead.wait())
            while True:
                done, _ = await asyncio.wait({closed, failed}, return_when=asyncio.FIRST_COMPLETED)
                if failed in done or closed.result() is None:
                    break
                closed = asyncio.ensure_future(conn.read_message())  # an ack or error frame
            for task in (closed, failed):
                task.cancel()
        finally:
            conn.close()
            await pc.close()

    async def _pull(self, track: MediaStreamTrack, number: int) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames += 1
                self.first_frame.setdefault(number, time.monotonic())


async def live_session(
    a: Client, b: Client, a_url: str, b_url: str
) -> tuple[str, Resilient, Resilient]:
    """A session started on A; its publisher signals to A, its viewer to B (the load balancer's
    choices); both fall back to the other URL when one refuses."""
    await web_broadcaster(a)
    started = await start_session(a, ("screen",))
    sid, token = started["session"]["id"], started["broadcaster_token"]
    screen = started["session"]["streams"][0]["id"]
    joined = await join(b, sid, {"enabled_streams": ["screen"], "mode": "separate"})
    path = f"{PREFIX}/stream/{screen}/signal/ws"
    publisher = Resilient(
        [a_url, b_url], path, token, make_track=lambda: PatternTrack("screen", 320, 180, 15)
    )
    viewer = Resilient([b_url, a_url], path, joined["viewer_token"])
    publisher.start()
    viewer.start()
    await publisher.wait_connection(1, frames=False, timeout=20)
    await viewer.wait_connection(1, frames=True, timeout=20)
    assert len(await recordings(a, sid, token, 1)) == 1  # A records the first stretch
    return sid, publisher, viewer


async def recordings(api: Client, sid: str, token: str, count: int) -> list[dict]:
    """The session's recordings once there are `count` (a recorder writes its document when its
    first frame arrives)."""
    deadline = time.monotonic() + 15
    while True:
        resp = await api.get(f"{PREFIX}/session/{sid}/recordings", token=token)
        assert resp.status == 200, resp.body
        recs = list(resp.json["recordings"])
        if len(recs) >= count or time.monotonic() > deadline:
            return recs
        await asyncio.sleep(0.2)
