"""A MongoDB-compatible wire server for the tests: secantusdb's `secantusd-py`, run as a process.

`make install` puts secantusdb in its own venv (`.venv-mongo`: it pulls shapely and friends, which
the project does not need). The session fixture in conftest.py starts one server on a free loopback
port with in-memory storage; every test then uses a database of its own. It speaks MongoDB's wire
protocol to the real PyMongo driver and reports a single-node replica set named `secantus`, so change
streams work. It is not MongoDB: see DEPLOYMENT.md for what passing here does and does not prove.

Environment:
- `MULTISTREAM_TEST_MONGODB_URI`: use this server instead (e.g. a real `mongod` replica set).
- `MULTISTREAM_SECANTUSD`: path to `secantusd-py` (default: `.venv-mongo/bin/secantusd-py`).
- `MULTISTREAM_REQUIRE_MONGODB=1` (CI): no server is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import PyMongoError

ROOT = Path(__file__).resolve().parents[1]
URI_ENV = "MULTISTREAM_TEST_MONGODB_URI"
BIN_ENV = "MULTISTREAM_SECANTUSD"
REQUIRE_ENV = "MULTISTREAM_REQUIRE_MONGODB"
REPLICA_SET = "secantus"


def secantusd() -> Path | None:
    """The `secantusd-py` launcher, if installed."""
    configured = os.environ.get(BIN_ENV)
    if configured:
        return Path(configured)
    local = ROOT / ".venv-mongo" / "bin" / "secantusd-py"
    if local.exists():
        return local
    found = shutil.which("secantusd-py")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_db(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@dataclass
class WireServer:
    """A MongoDB server the tests may use: our own process (`proc`) or an external URI."""

    base_uri: str  # mongodb://host:port/?options (no database)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def uri(self, db: str, **options: str) -> str:
        """A URI naming database `db` on this server, with extra query `options`."""
        parts = urlsplit(self.base_uri)
        query = "&".join(
            [q for q in parts.query.split("&") if q] + [f"{k}={v}" for k, v in options.items()]
        )
        return urlunsplit((parts.scheme, parts.netloc, "/" + db, query, ""))

    def client(self) -> MongoClient[dict[str, object]]:
        return MongoClient(self.base_uri, serverSelectionTimeoutMS=5000)

    def drop(self, db: str) -> None:
        with self.client() as client:
            client.drop_database(db)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (it flushes and exits in ~4 s), then SIGKILL if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


def wait_ping(uri: str, timeout: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the MongoDB wire server exited with {proc.returncode}")
        try:
            with MongoClient(uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300) as client:
                client.admin.command("ping")
                return
        except PyMongoError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"the MongoDB wire server did not answer ping in {timeout} s: {last}")


def start(
    binary: Path,
    log_path: Path,
    *,
    storage: str = ":memory:",
    port: int | None = None,
    test_commands: bool = True,
    extra_args: tuple[str, ...] = (),
) -> WireServer:
    """Start `secantusd-py` on loopback and wait until it answers `ping`.

    `test_commands` enables `configureFailPoint`, which the tests use to cut one client's change
    stream (filtered by that client's appName, so nothing else is touched).
    """
    port = port or free_port()
    args = [
        str(binary),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        storage,
        "--cache-size",
        "256M",
        "--log-level",
        "WARNING",
    ]
    if test_commands:
        args.append("--enable-test-commands")
    args.extend(extra_args)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
    options = "" if "--standalone" in extra_args else f"?replicaSet={REPLICA_SET}"
    server = WireServer(f"mongodb://127.0.0.1:{port}/{options}", proc, log_path)
    try:
        wait_ping(server.base_uri, proc=proc)
    except BaseException:
        server.stop()
        raise
    return server


@asynccontextmanager
async def feeds_cut(server: WireServer, app_name: str) -> AsyncIterator[None]:
    """While inside, the server closes the change-stream connections of clients named `app_name`
    (`?appName=` in their URI) and refuses to reopen them; other clients and commands carry on.
    Needs test commands (`--enable-test-commands`, or `enableTestCommands=1` on a mongod)."""
    admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(server.base_uri)
    try:
        await admin.admin.command(
            {
                "configureFailPoint": "failCommand",
                "mode": "alwaysOn",
                "data": {
                    "failCommands": ["getMore", "aggregate"],
                    "closeConnection": True,
                    "appName": app_name,
                },
            }
        )
        try:
            yield
        finally:
            await admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    finally:
        await admin.close()
