"""A quick two-namespace lab for adaptive delivery with an aiortc viewer (root only).

    sudo .venv/bin/python -m bench.adaptive_lab --rate 1mbit --loss 3 --seconds 30 [--no-adaptive]

Builds namespaces `msal_s` (server + aiortc publisher) and `msal_v` (viewer) joined by a veth pair
(10.78.0.1 / 10.78.0.2), caps the server->viewer direction with `tc tbf`, drops `--loss` % of the
viewer's incoming UDP with nftables (no netem on these kernels), counts the bytes the server sends
toward the viewer with an nft counter, runs `multistream serve`, a publisher (1280x720 VP8 with
motion, aiortc's own rate control up to 1.5 Mb/s) and a viewer, and prints per-second viewer frame
rates, stalled seconds, the picture size and the server's send rate. Everything is removed at the
end, also on failure. The Chromium lab (`bench.netlab`) is the reference; this one iterates fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.broadcaster import cli_token

NS_S, NS_V = "msal_s", "msal_v"
IP_S, IP_V = "10.78.0.1", "10.78.0.2"
PORT = 8097
PREFIX = "/api/v1/livestream"


def sh(cmd: str, check: bool = True) -> str:
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{cmd}: {out.stderr.strip()}")
    return out.stdout


def lab_up(rate: str | None, loss: int) -> None:
    lab_down()
    sh(f"ip netns add {NS_S}; ip netns add {NS_V}")
    sh(f"ip link add vs netns {NS_S} type veth peer name vv netns {NS_V}")
    for ns, dev, ip in ((NS_S, "vs", IP_S), (NS_V, "vv", IP_V)):
        sh(
            f"ip netns exec {ns} sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
            f"net.ipv6.conf.default.disable_ipv6=1; ip link set lo up; "
            f"ip addr add {ip}/24 dev {dev}; ip link set {dev} up'"
        )
    if rate:
        sh(
            f"ip netns exec {NS_S} tc qdisc add dev vs root tbf rate {rate} burst 32kbit latency 300ms"
        )
    sh(
        f"ip netns exec {NS_S} nft 'add table inet lab; add chain inet lab out "
        f"{{ type filter hook output priority 0; }}; add rule inet lab out ip daddr {IP_V} "
        f"meta l4proto udp counter'"
    )
    if loss:
        sh(
            f"ip netns exec {NS_V} nft 'add table inet lab; add chain inet lab in "
            f"{{ type filter hook input priority 0; }}; add rule inet lab in ip saddr {IP_S} "
            f"meta l4proto udp numgen random mod 100 < {loss} counter drop'"
        )


def lab_down() -> None:
    for ns in (NS_S, NS_V):
        sh(f"ip netns del {ns}", check=False)


def sent_bytes() -> int:
    out = sh(f"ip netns exec {NS_S} nft list chain inet lab out")
    m = re.search(r"counter packets \d+ bytes (\d+)", out)
    return int(m.group(1)) if m else 0


def http(method: str, path: str, body: dict[str, Any] | None = None, token: str = "") -> Any:
    req = urllib.request.Request(
        f"http://{IP_S}:{PORT}{path}",
        data=json.dumps(body or {}).encode(),
        method=method,
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


# -- the two clients (run inside their namespaces as `python -m bench.adaptive_lab publish|view`) --


async def run_publisher(token: str, stream_id: str, seconds: float) -> None:
    import av
    import numpy as np
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamTrack

    from server.media import ice

    rng = np.random.default_rng(7)
    w, h = 1280, 720
    text = np.full((h, w), 225, np.uint8)
    for row in range(12, h - 12, 18):
        for col in range(16, w - 40, 48):
            text[row : row + 5, col : col + int(rng.integers(12, 40))] = 30
    noise = rng.integers(0, 255, (h, w), np.uint8)
    chroma = np.full((h // 2, w), 128, np.uint8)

    class Moving(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.start: float | None = None

        async def recv(self) -> av.VideoFrame:
            self.start = self.start or time.monotonic()
            delay = self.start + self.n / 30 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            y = np.roll(text, -(self.n * 2) % h, axis=0)
            x0 = (self.n * 9) % (w - 240)
            y[200:320, x0 : x0 + 120] = np.roll(noise, self.n * 13, axis=1)[200:320, :120]
            frame = av.VideoFrame.from_ndarray(np.concatenate([y, chroma]), format="yuv420p")
            frame.pts = self.n * 3000
            frame.time_base = fractions.Fraction(1, 90000)
            self.n += 1
            return frame

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track: MediaStreamTrack = Moving()
    if os.environ.get("ALAB_CONTENT") == "netlab":
        from tests.netlab.content import ContentTrack

        track = ContentTrack("screen")
    pc.addTransceiver(track, direction="sendonly")
    ice.restrict(pc, (IP_S,))
    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    answer = await loop.run_in_executor(
        None,
        lambda: http(
            "POST",
            f"{PREFIX}/stream/{stream_id}/signal/offer",
            {"sdp": pc.localDescription.sdp, "type": "offer"},
            token,
        ),
    )
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    await asyncio.sleep(seconds)
    await pc.close()


async def run_viewer(session_id: str, stream_id: str, seconds: float) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    from server.media import ice

    loop = asyncio.get_running_loop()
    joined = await loop.run_in_executor(
        None, lambda: http("POST", f"{PREFIX}/session/{session_id}/join")
    )
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    per_second: list[int] = []
    sizes: list[str] = []
    count = 0

    async def pull(track: Any) -> None:
        nonlocal count
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                count += 1
                size = f"{frame.width}x{frame.height}"
                if not sizes or sizes[-1] != size:
                    sizes.append(size)

    pc.on("track", lambda t: loop.create_task(pull(t)))
    ice.restrict(pc, (IP_V,))
    await pc.setLocalDescription(await pc.createOffer())
    answer = await loop.run_in_executor(
        None,
        lambda: http(
            "POST",
            f"{PREFIX}/stream/{stream_id}/signal/offer",
            {"sdp": pc.localDescription.sdp, "type": "offer"},
            joined["viewer_token"],
        ),
    )
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    last = 0
    for _ in range(int(seconds)):
        await asyncio.sleep(1)
        per_second.append(count - last)
        last = count
    print(json.dumps({"fps": per_second, "sizes": sizes}), flush=True)
    await pc.close()


_WRAP_PC = """
window.__pcs = [];
const Orig = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) { const pc = new Orig(...args); window.__pcs.push(pc); return pc; };
window.RTCPeerConnection.prototype = Orig.prototype;
"""

_STATS = """
(async () => {
  let frames = 0, keys = 0, w = 0, h = 0, lost = 0, nacks = 0, plis = 0;
  for (const pc of window.__pcs || []) {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        frames += s.framesDecoded || 0; keys += s.keyFramesDecoded || 0;
        w = s.frameWidth || w; h = s.frameHeight || h; lost += s.packetsLost || 0;
        nacks += s.nackCount || 0; plis += s.pliCount || 0;
      }
    });
  }
  return {frames, keys, w, h, lost, nacks, plis};
})()
"""


async def run_chrome_viewer(session_id: str, seconds: float, mode: str) -> None:
    from pathlib import Path

    from tests.browser.chromium import Browser, find_chromium

    chromium = find_chromium()
    assert chromium, "chromium is not installed"
    work = Path(tempfile.mkdtemp(prefix="alab-chrome-"))
    browser = await Browser.launch(chromium, work)
    try:
        context = await browser.new_context()
        page = await browser.new_page(context)
        await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": _WRAP_PC})
        await page.goto(f"http://{IP_S}:{PORT}/watch/{session_id}")
        await page.wait_for("document.body.dataset.viewerId", timeout=20)
        if mode == "composite":
            await page.evaluate(
                "document.querySelector('#mode-composite') && "
                "document.querySelector('#mode-composite').click()",
                user_gesture=True,
            )
        per_second: list[int] = []
        keys: list[int] = []
        sizes: list[str] = []
        last: dict[str, Any] = {"frames": 0, "keys": 0}
        for _ in range(int(seconds)):
            await asyncio.sleep(1)
            stats = await page.evaluate(_STATS)
            per_second.append(stats["frames"] - last["frames"])
            keys.append(stats["keys"] - last["keys"])
            size = f"{stats['w']}x{stats['h']}"
            if not sizes or sizes[-1] != size:
                sizes.append(size)
            last = stats
        menu = await page.evaluate(
            "({options: [...document.querySelectorAll('#quality option')].map((o) => o.value),"
            " value: document.querySelector('#quality').value,"
            " status: document.querySelector('#quality-status').textContent})"
        )
        result = {"fps": per_second, "keys": keys, "sizes": sizes, "last": last, "menu": menu}
        print(json.dumps(result), flush=True)
    finally:
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "role", nargs="?", default="lab", choices=("lab", "publish", "view", "chrome-view")
    )
    parser.add_argument("args", nargs="*")
    parser.add_argument("--rate", default="1mbit")
    parser.add_argument("--loss", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--no-adaptive", action="store_true")
    parser.add_argument("--chrome", action="store_true", help="view with headless Chromium")
    ns = parser.parse_args()
    if ns.role == "publish":
        asyncio.run(run_publisher(ns.args[0], ns.args[1], float(ns.args[2])))
        return
    if ns.role == "chrome-view":
        asyncio.run(run_chrome_viewer(ns.args[0], float(ns.args[1]), "separate"))
        return
    if ns.role == "view":
        asyncio.run(run_viewer(ns.args[0], ns.args[1], float(ns.args[2])))
        return
    py = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    tmp = tempfile.mkdtemp(prefix="adaptive_lab_")
    env = {**os.environ, "MULTISTREAM_ADAPTIVE": "0" if ns.no_adaptive else "1"}
    try:
        lab_up(None if ns.rate == "none" else ns.rate, ns.loss)
        log = open(os.path.join(tmp, "server.log"), "wb")  # noqa: SIM115 - lives as long as the lab
        procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    NS_S,
                    py,
                    "-m",
                    "multistream.cli",
                    "serve",
                    "--host",
                    IP_S,
                    "--port",
                    str(PORT),
                    "--ice-hosts",
                    IP_S,
                    "--data-dir",
                    tmp,
                    "--no-record",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        for _ in range(100):
            try:
                sh(f"ip netns exec {NS_S} sh -c 'exec 3<>/dev/tcp/{IP_S}/{PORT}'", check=True)
                break
            except RuntimeError:
                time.sleep(0.1)
        account = cli_token(Path(tmp))  # the server's data dir, from outside the namespace
        started = sh(
            f"ip netns exec {NS_S} curl -s -X POST -H 'Content-Type: application/json' "
            f"-H 'Authorization: Bearer {account}' "
            f'-d \'{{"title":"lab","streams":["screen"]}}\' '
            f"http://{IP_S}:{PORT}{PREFIX}/session/start"
        )
        info = json.loads(started)
        sid = info["session"]["id"]
        stream = info["session"]["streams"][0]["id"]
        total = ns.seconds + 8
        procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    NS_S,
                    py,
                    "-m",
                    "bench.adaptive_lab",
                    "publish",
                    info["broadcaster_token"],
                    stream,
                    str(total),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        time.sleep(3)
        before = sent_bytes()
        t0 = time.monotonic()
        role = ["chrome-view", sid] if ns.chrome else ["view", sid, stream]
        viewer_p = subprocess.Popen(
            ["ip", "netns", "exec", NS_V, py, "-m", "bench.adaptive_lab", *role, str(ns.seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(max(1.0, ns.seconds - 2))
        raw = sh(
            f"ip netns exec {NS_S} curl -s -H 'Authorization: Bearer {info['broadcaster_token']}' "
            f"http://{IP_S}:{PORT}{PREFIX}/session/{sid}/debug/viewers",
            check=False,
        )
        debug = json.loads(raw) if raw.strip().startswith("{") else {"raw": raw[:300]}
        out, err = viewer_p.communicate(timeout=60)
        viewer = subprocess.CompletedProcess(viewer_p.args, viewer_p.returncode, out, err)
        elapsed = time.monotonic() - t0
        sent = sent_bytes() - before
        qdisc = sh(f"ip netns exec {NS_S} tc -s qdisc show dev vs", check=False)
        drops = re.search(r"dropped (\d+)", qdisc)
        result = json.loads(viewer.stdout.strip().splitlines()[-1]) if viewer.stdout.strip() else {}
        fps = result.get("fps", [])
        after10 = fps[10:]
        print(
            json.dumps(
                {
                    "rate": ns.rate,
                    "loss_pct": ns.loss,
                    "adaptive": not ns.no_adaptive,
                    "fps_per_second": fps,
                    "median_fps_after_10s": statistics.median(after10) if after10 else 0,
                    "stalled_seconds_after_10s": sum(1 for f in after10 if f == 0),
                    "sizes": result.get("sizes"),
                    "keyframes_per_second": result.get("keys"),
                    "quality_menu": result.get("menu"),
                    "server_send_mbps": round(sent * 8 / elapsed / 1e6, 3),
                    "link_queue_drops": int(drops.group(1)) if drops else None,
                    "debug": debug,
                    "viewer_stderr": viewer.stderr[-800:],
                },
                indent=1,
            )
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(5)
        lab_down()
        print(f"logs: {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
