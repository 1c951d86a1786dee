"""Several real `multistream serve` processes on loopback sharing one store: what the routing and
failover tests run. Each instance gets its own UDP port range, so a test can tell from an SDP
answer's candidates which instance will carry the media."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Client
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
