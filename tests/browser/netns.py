"""An asyncio event loop running on a thread that lives in its own network namespace (only `lo`).

Why a thread: on Linux the network namespace belongs to a *task*, i.e. to one thread. The thread calls
`unshare(CLONE_NEWNET)`, brings `lo` up, and runs an event loop. Every socket created on that thread
(the server under test, the DevTools WebSocket, aiortc's UDP ports) and every process it spawns
(Chromium) lives in the new namespace, which has no route anywhere but 127.0.0.1. The pytest process
itself, and every other test, stays in the host namespace. This gives the isolation of
`unshare -n sh -c 'ip link set lo up; ...'` without re-executing pytest, so each browser test is
reported by the same pytest run. It needs CAP_SYS_ADMIN (root in CI).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


class NamespaceUnavailable(RuntimeError):
    """This process may not create a network namespace (not root, or seccomp forbids it)."""


def _unshare_net() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NamespaceUnavailable(f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}")
    _loopback_up()


def _setns_net(name: str) -> None:
    """Move this thread into the named namespace `ip netns add` made (/run/netns/<name>)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise NamespaceUnavailable(f"setns({name}) failed: {os.strerror(errno)}")
    finally:
        os.close(fd)


def _loopback_up() -> None:
    """`ip link set lo up` without needing iproute2: SIOCGIFFLAGS/SIOCSIFFLAGS on this thread's lo."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


class NetnsLoop:
    """Start with `start()`; submit coroutines with `run()`; `stop()` ends the loop and the thread.

    By default the thread gets a fresh namespace with only `lo`; with `namespace` it joins that named
    namespace instead (the network lab's, see tests/netlab/lab.py).
    """

    def __init__(self, namespace: str | None = None) -> None:
        self._namespace = namespace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready: Future[None] = Future()

    def start(self, timeout: float = 10.0) -> None:
        name = f"netns-{self._namespace}" if self._namespace else "browser-netns"
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.result(timeout)

    def _main(self) -> None:
        try:
            if self._namespace:
                _setns_net(self._namespace)
            else:
                _unshare_net()
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._loop = loop
        self._ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start `coro` on the namespace's loop without waiting for it."""
        assert self._loop is not None, "NetnsLoop not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run `coro` on the namespace's loop and wait for its result (re-raising its exception)."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
        self._loop = None
