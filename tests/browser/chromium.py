"""Start Debian's headless Chromium with the fake camera/screen and open isolated browser contexts.

Flags follow ../shared/webrtc-loopback.md: loopback ICE candidates allowed, mDNS host-name hiding off,
fake media devices that need no permission prompt, no background traffic. The process must be started
from inside the test network namespace (see `netns.py`), which it then inherits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .cdp import CdpConnection, Page

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def find_chromium() -> str | None:
    explicit = os.environ.get("MULTISTREAM_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def chromium_flags(
    user_data_dir: Path, extra: tuple[str, ...] = (), *, deny_media: bool = False
) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--disable-default-apps",
        "--mute-audio",
        "--password-store=basic",
        f"--user-data-dir={user_data_dir}",
        # "=deny" makes the fake prompt refuse every capture, as a user clicking "Block" would.
        "--use-fake-ui-for-media-stream" + ("=deny" if deny_media else ""),
        "--use-fake-device-for-media-stream=fps=15",
        *extra,
        "--allow-loopback-in-peer-connection",
        # One flag for every disabled feature: Chromium keeps only the last --disable-features.
        "--disable-features=WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints",
        "--autoplay-policy=no-user-gesture-required",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "--window-size=1280,800",
        "about:blank",
    ]


@dataclass
class Browser:
    """A running Chromium process and its DevTools connection."""

    process: asyncio.subprocess.Process
    cdp: CdpConnection
    log_path: Path
    tmp: Path
    contexts: list[str] = field(default_factory=list)

    @classmethod
    async def launch(
        cls,
        executable: str,
        workdir: Path,
        extra: tuple[str, ...] = (),
        *,
        deny_media: bool = False,
        timeout: float = 20.0,
    ) -> Browser:
        profile = workdir / "profile"
        # Chromium's singleton socket lives in TMPDIR and must fit a 108-byte socket path.
        tmp = Path(tempfile.mkdtemp(prefix="msc-"))
        profile.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "chromium.log"
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp), "HOME": str(workdir)}
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                executable,
                *chromium_flags(profile, extra, deny_media=deny_media),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                start_new_session=True,
            )
        deadline = asyncio.get_running_loop().time() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                await _kill(process)
                shutil.rmtree(tmp, ignore_errors=True)
                raise RuntimeError(f"Chromium did not start; see {log_path}")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        try:
            cdp = await CdpConnection.connect(f"ws://127.0.0.1:{port}{path}")
        except BaseException:
            await _kill(process)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(process, cdp, log_path, tmp)

    async def new_context(self) -> str:
        """An isolated context (own cookies and localStorage), like a second person's browser."""
        result = await self.cdp.send("Target.createBrowserContext", {"disposeOnDetach": False})
        context_id: str = result["browserContextId"]
        self.contexts.append(context_id)
        return context_id

    async def new_page(self, context_id: str, width: int = 1280, height: int = 800) -> Page:
        created = await self.cdp.send(
            "Target.createTarget", {"url": "about:blank", "browserContextId": context_id}
        )
        target_id = created["targetId"]
        attached = await self.cdp.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        page = Page(self.cdp, target_id, attached["sessionId"])
        await page.enable()
        await page.set_viewport(width, height)
        return page

    async def close_context(self, context_id: str) -> None:
        if context_id in self.contexts:
            self.contexts.remove(context_id)
            with contextlib.suppress(Exception):
                await self.cdp.send(
                    "Target.disposeBrowserContext", {"browserContextId": context_id}
                )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.cdp.send("Browser.close"), 5)
        await self.cdp.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            await _kill(self.process)
        shutil.rmtree(self.tmp, ignore_errors=True)


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the Chromium process group this harness started (its own session, so its own group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)
    await process.wait()
