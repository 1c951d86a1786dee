"""Meetecho's simple-whip-client (GStreamer webrtcbin + libnice, Debian package `simple-whip-client`)
publishing VP8 + Opus to our WHIP endpoint; an aiortc WHEP viewer receives the frames.

Three things stood between this client and the server on Debian 12, all found here:
1. The client aborts at start: "libsoup2 symbols detected. Using libsoup2 and libsoup3 in the same
   process is not supported." The package (git 2023-01-31) links libsoup-2.4, while webrtcbin's
   libnice 0.1.21 links libgupnp-igd-1.0 → libgupnp-1.6 → libsoup-3.0. libnice only uses
   libgupnp-igd for UPnP port mapping (four functions), which has no use on a test network, so the
   test builds a stand-in library for it (below) and puts it first on LD_LIBRARY_PATH. Everything
   the test exercises — whip-client, GStreamer, webrtcbin, libnice ICE, DTLS, SRTP — is the real
   packaged code.
2. libnice gathers no loopback candidates, so in a lo-only namespace it has none at all: the test's
   namespace gets a veth pair it creates (and which goes with the namespace), and the server's ICE
   host is that address.
3. webrtcbin offers `actpass` with an RSA certificate; aiortc as DTLS client offers only ECDSA
   suites and got a fatal handshake_failure. Fixed on our side: server/media/dtls.py answers
   `passive` to `actpass` offers, so aiortc is the DTLS server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.testing
from aiortc import RTCSessionDescription

from multistream.app import make_app
from server.lifespan import open_services
from server.media import ice
from tests.api_helpers import web_broadcaster
from tests.browser.netns import NamespaceUnavailable, NetnsLoop
from tests.conftest import Client, make_settings
from tests.media_helpers import Viewer, join, new_pc, start_session, wait_stream_status
from tests.required import unavailable
from tests.whip_helpers import SDP, WHEP, WHIP

SERVER_IP, CLIENT_IP = "10.213.0.1", "10.213.0.2"

# libnice's four imports from libgupnp-igd-1.0.so.4; "no IGD" is a state libnice handles.
IGD_STUB = """
#include <stddef.h>
unsigned long gupnp_simple_igd_get_type(void) { return 80; /* G_TYPE_OBJECT */ }
void *gupnp_simple_igd_thread_new(void) { return NULL; }
void gupnp_simple_igd_add_port(void *s, const char *p, unsigned ep, const char *lip, unsigned lp,
                               unsigned lease, const char *d) {}
void gupnp_simple_igd_remove_port_local(void *s, const char *p, const char *lip, unsigned lp) {}
"""

VIDEO = (
    "videotestsrc is-live=true pattern=red ! video/x-raw,width=320,height=240,framerate=15/1 ! "
    "videoconvert ! vp8enc deadline=1 ! rtpvp8pay pt=96 ssrc=1 ! queue ! "
    "application/x-rtp,media=video,encoding-name=VP8,payload=96"
)
AUDIO = (
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue ! opusenc ! "
    "rtpopuspay pt=111 ssrc=2 ! queue ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111"
)


def _unavailable(reason: str) -> None:
    unavailable("MULTISTREAM_REQUIRE_BROWSER", "system-dependency tests", reason)


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("whip-client") is None:
        _unavailable("simple-whip-client not installed (make install apt-gets it)")
    if shutil.which("gcc") is None or shutil.which("ip") is None:
        _unavailable("gcc and iproute2 are needed")
    directory = tmp_path_factory.mktemp("igd-stub")
    (directory / "igd.c").write_text(IGD_STUB)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(directory / "libgupnp-igd-1.0.so.4"), "igd.c"],
        cwd=directory,
        check=True,
    )
    return directory


@pytest.fixture(scope="module")
def netns() -> Iterator[NetnsLoop]:
    loop = NetnsLoop()
    try:
        loop.start()
    except (NamespaceUnavailable, OSError) as exc:
        _unavailable(f"cannot create a network namespace (needs root): {exc}")
    yield loop
    loop.stop()


async def _sh(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(*args)
    assert await proc.wait() == 0, args


async def _veth() -> None:
    """A veth pair inside the test's namespace (created on its thread, gone with it)."""
    await _sh("ip", "link", "add", "wv0", "type", "veth", "peer", "name", "wv1")
    await _sh("ip", "addr", "add", f"{SERVER_IP}/24", "dev", "wv0")
    await _sh("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "wv1")
    await _sh("ip", "link", "set", "wv0", "up")
    await _sh("ip", "link", "set", "wv1", "up")


async def _whep_viewer(api: Client, token: str, path: str) -> Viewer:
    pc = new_pc()
    viewer = Viewer(pc)
    pc.on("track", viewer.on_track)
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    ice.restrict(pc, (CLIENT_IP,))
    await pc.setLocalDescription(await pc.createOffer())
    resp = await api.post(path, raw=pc.localDescription.sdp.encode(), token=token, headers=SDP)
    assert resp.status == 201, resp.body
    await pc.setRemoteDescription(RTCSessionDescription(resp.body.decode(), "answer"))
    return viewer


def test_simple_whip_client_publishes_and_an_aiortc_viewer_gets_frames(
    shim: Path, netns: NetnsLoop, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "data", record=False, ice_hosts=(SERVER_IP,))

    async def run() -> None:
        await _veth()
        async with AsyncExitStack() as stack:
            services = await stack.enter_async_context(open_services(settings))
            sock, port = tornado.testing.bind_unused_port()
            http = tornado.httpserver.HTTPServer(make_app(settings, services))
            http.add_sockets([sock])
            stack.callback(http.stop)
            api = Client(f"http://127.0.0.1:{port}")
            await web_broadcaster(api)
            started = await start_session(api, ("camera",))
            sid, token = started["session"]["id"], started["broadcaster_token"]
            stream_id = started["session"]["streams"][0]["id"]
            env = {**os.environ, "LD_LIBRARY_PATH": str(shim), "GST_REGISTRY": str(tmp_path / "r")}
            client = await asyncio.create_subprocess_exec(
                "whip-client",
                "-u",
                f"{api.base_url}{WHIP}/{sid}/camera",
                "-t",
                token,
                "-V",
                VIDEO,
                "-A",
                AUDIO,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                await wait_stream_status(services.store, stream_id, "live", timeout=20)
                viewer_token = (await join(api, sid))["viewer_token"]
                viewer = await _whep_viewer(api, viewer_token, f"{WHEP}/{sid}/camera")
                await viewer.wait_frames(10, timeout=20)
                rgb = viewer.frames[-1].to_ndarray(format="rgb24")
                assert rgb[:, :, 0].mean() > 150 and rgb[:, :, 1].mean() < 80  # pattern=red
                deadline = time.monotonic() + 10
                while viewer.audio_frames < 10:
                    assert time.monotonic() < deadline, "no audio from webrtcbin's Opus"
                    await asyncio.sleep(0.05)
                await viewer.close()
            finally:
                if client.returncode is None:
                    client.send_signal(signal.SIGINT)  # whip-client sends its DELETE and exits
                out, _ = await asyncio.wait_for(client.communicate(), 20)
            log = out.decode(errors="replace")
            assert "libsoup2 symbols detected" not in log
            await wait_stream_status(services.store, stream_id, "stopped", timeout=10)
            await http.close_all_connections()

    netns.run(run(), 120)
