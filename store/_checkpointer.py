"""Moves committed WAL frames into the SQLite database file off the store's commit path.

By default SQLite checkpoints inside the commit that takes the WAL past 1000 pages: that one write
then copies the whole log into the database and fsyncs it, 10-15 ms here, and every store call queued
behind it on the store's single worker thread waits as long. The store instead raises its connection's
auto-checkpoint threshold to a backstop and runs this: a thread with its own connection that asks for
a PASSIVE checkpoint every `interval_s`. PASSIVE never takes a lock writers or readers wait on, so
commits go on while frames are copied; the copy itself runs with the GIL released (inside SQLite).

Durability is unchanged: a commit is durable once it is in the WAL (`synchronous=NORMAL`), and a
checkpoint only moves already-durable frames. Several processes sharing the file may each run one;
checkpoints of the same WAL serialise inside SQLite and PASSIVE ones simply skip when another runs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 0.2
_MAX_PASSES = 8


class Checkpointer:
    """A daemon thread checkpointing one SQLite file in WAL mode every `interval_s` seconds."""

    def __init__(self, path: Path, interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self._stopping = threading.Event()
        # Daemon: an exiting process loses nothing (checkpoints only copy committed frames).
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint:{path.name}", daemon=True
        )
        self.checkpoints = 0

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stopping.is_set():
            self._thread.start()

    async def stop(self) -> None:
        """End the thread (after the checkpoint in progress, if any) and close its connection."""
        self._stopping.set()
        if self._thread.ident is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error:
            log.warning(
                "store=sqlite path=%s checkpointer could not open", self.path, exc_info=True
            )
            return
        try:
            while not self._stopping.wait(self.interval_s):
                try:
                    self._catch_up(db)
                except sqlite3.Error:
                    # Never fatal: the store's auto-checkpoint backstop still bounds the WAL.
                    log.warning("store=sqlite path=%s checkpoint failed", self.path, exc_info=True)
        finally:
            db.close()

    def _catch_up(self, db: sqlite3.Connection) -> None:
        """Checkpoint until a pass finds nothing new to copy (or `_MAX_PASSES` are done).

        The log restarts from its beginning only when a writer finds every frame copied. Under a
        steady write rate one pass never leaves it so (frames land while it fsyncs), but each further
        pass has only those few frames to copy and ends sooner, so within a few passes one ends
        inside a gap between writes and the next write restarts the log.
        """
        copied_before = -1
        for _ in range(_MAX_PASSES):
            cur = db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            busy, _frames, copied = cur.fetchall()[0]  # fetchall: the statement ends, no read lock
            self.checkpoints += 1
            if busy or copied == copied_before:
                return
            copied_before = copied
