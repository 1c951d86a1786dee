"""Background-task helpers shared by the services that own a loop task (encoders, feeds, buses)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has really finished, so nothing it owns outlives `close()`."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def stop_and_wait(
    task: asyncio.Task[Any] | None, stop: asyncio.Event, grace_s: float = 5.0
) -> bool:
    """End a loop task that spends its time inside a database driver: set `stop`, cancel it, and
    wait up to `grace_s` for it to finish. True when it has.

    Cancelling alone is not enough: PyMongo 4.20's async change streams can swallow a cancellation
    that lands mid-getMore and keep the cursor running; such loops also check `stop` between driver
    calls (a change feed does so at least once a second), so they end either way.
    """
    stop.set()
    if task is None:
        return True
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace_s)
    if done and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
    return bool(done)
