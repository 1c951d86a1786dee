"""A small Chrome DevTools Protocol client over `tornado.websocket`, enough to drive headless Chromium.

One WebSocket to the browser endpoint; pages are attached with flattened sessions so every command and
event carries its `sessionId`. Each page records console errors, uncaught exceptions and failed loads,
so tests can assert that a page produced none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tornado.websocket import WebSocketClientConnection, websocket_connect

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


class CdpError(RuntimeError):
    """The browser answered a command with an error, or a page script threw."""


class CdpConnection:
    """The browser-level DevTools WebSocket: sends commands, routes answers and events."""

    def __init__(self, ws: WebSocketClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str | None, list[Listener]] = {}
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str) -> CdpConnection:
        ws = await websocket_connect(url, max_message_size=256 * 1024 * 1024)
        return cls(ws)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None
    ) -> dict[str, Any]:
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.write_message(json.dumps(message))
        answer = await future
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error'].get('message')}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def listen(self, session_id: str | None, listener: Listener) -> None:
        self._listeners.setdefault(session_id, []).append(listener)

    async def _read(self) -> None:
        while True:
            raw = await self._ws.read_message()
            if raw is None:
                break
            message = json.loads(raw)
            if "id" in message:
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
                continue
            for listener in self._listeners.get(message.get("sessionId"), []):
                listener(message)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CdpError("DevTools connection closed"))
        self._pending.clear()

    async def close(self) -> None:
        self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


class Page:
    """One tab: navigate, evaluate script, screenshot, and collect what went wrong on it."""

    def __init__(self, cdp: CdpConnection, target_id: str, session_id: str) -> None:
        self.cdp = cdp
        self.target_id = target_id
        self.session_id = session_id
        self.errors: list[str] = []
        self.console: list[str] = []
        self._load_waiters: list[asyncio.Future[None]] = []
        cdp.listen(session_id, self._on_event)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.cdp.send(method, params, session_id=self.session_id)

    async def enable(self) -> None:
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")

    def _on_event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(_remote_text(arg) for arg in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            self.errors.append(f"uncaught: {exc.get('description') or details.get('text')}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Page.loadEventFired":
            waiters, self._load_waiters = self._load_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def goto(self, url: str, timeout: float = 15.0) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._load_waiters.append(waiter)
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigate {url}: {result['errorText']}")
        await asyncio.wait_for(waiter, timeout)

    async def reload(self, timeout: float = 15.0) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._load_waiters.append(waiter)
        await self.send("Page.reload", {"ignoreCache": True})
        await asyncio.wait_for(waiter, timeout)

    async def evaluate(self, expression: str, *, user_gesture: bool = False) -> Any:
        """Evaluate `expression` (awaiting a returned promise) and return its JSON value."""
        result = await self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "userGesture": user_gesture,
            },
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"script failed: {description}\n--- expression ---\n{expression}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 15.0, interval: float = 0.1) -> Any:
        """Poll until `expression` is truthy; return its value, or fail with the page's errors."""
        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while True:
            last = await self.evaluate(expression)
            if last:
                return last
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for: {expression}\n"
                    f"last value: {last!r}\npage errors: {self.errors}\n"
                    f"console: {self.console[-15:]}"
                )
            await asyncio.sleep(interval)

    async def click(self, selector: str) -> None:
        """Click an element as a user would (a user gesture, which getDisplayMedia requires)."""
        await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            f" if (!el) throw new Error('no element ' + {json.dumps(selector)});"
            " el.click(); return true; })()",
            user_gesture=True,
        )

    async def press(self, key: str, code: str, key_code: int) -> None:
        """A real key press (keyDown + keyUp), as keyboard-only users operate the page."""
        base = {"key": key, "code": code, "windowsVirtualKeyCode": key_code}
        text = {"text": key} if len(key) == 1 else {}
        await self.send("Input.dispatchKeyEvent", {"type": "keyDown", **base, **text})
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", **base})

    async def screenshot(self, path: Path) -> Path:
        result = await self.send("Page.captureScreenshot", {"format": "png"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def set_viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    async def close(self) -> None:
        await self.cdp.send("Target.closeTarget", {"targetId": self.target_id})


def _remote_text(arg: dict[str, Any]) -> str:
    if "value" in arg:
        return str(arg["value"])
    return str(arg.get("description") or arg.get("type"))
