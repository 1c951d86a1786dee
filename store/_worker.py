"""One thread that owns a blocking resource and runs calls on it in order, for asyncio callers.

SQLite connections belong to one thread, and every statement blocks. Running them all on a single
dedicated thread keeps the event loop free and needs no locking around the connection. It is lighter
than `loop.run_in_executor`: no `concurrent.futures.Future` per call, and results finished together
go back to the loop in one `call_soon_threadsafe` (one self-pipe wake-up per batch, not per call).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# A job: the function, its arguments, the future to resolve, and the loop that future belongs to.
_Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
# How many finished jobs are handed back at most in one loop callback (bounds the first job's wait).
_MAX_BATCH = 32


def _deliver(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the loop: resolve each future (a cancelled caller simply no longer waits)."""
    for fut, ok, value in results:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class SerialWorker:
    """Runs submitted callables one at a time, in submission order, on its own thread."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Daemon: a process that exits without `stop()` must not hang on an idle worker. Nothing
        # is lost, as every SQLite statement commits before its result is delivered.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = False

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if not self._thread.is_alive() and not self._stopped:
            self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue `fn(*args)`; the returned future resolves on the caller's loop."""
        if self._stopped:
            raise RuntimeError("the store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, fut, loop))
        return fut

    async def stop(self) -> None:
        """Finish every queued job, then end the thread."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.ident is None:  # never started
            return
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)  # keep the stop marker for the outer loop
                    break
                batch.append(job)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]]
            by_loop = {}
            for fn, args, fut, loop in batch:
                try:
                    outcome: tuple[asyncio.Future[Any], bool, Any] = (fut, True, fn(*args))
                except BaseException as exc:  # handed to the awaiting caller, never swallowed
                    outcome = (fut, False, exc)
                by_loop.setdefault(loop, []).append(outcome)
            for loop, results in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_deliver, results)
                except RuntimeError:
                    log.warning("worker=%s: a caller's event loop closed before its results", self)
