"""Real `multistream serve` processes for the operations tests: start, read logs, stop by signal."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent / "multistream"
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)/")


def free_port() -> int:
    """A port free right now on loopback (for instances that must know their URL before start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise


def start_server(
    data_dir: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
    port: int = 0,
    timeout: float = 30,
    command: Sequence[str] = (str(BIN),),
) -> ServerProcess:
    """Start `multistream serve` on loopback with its log in `log_path`; wait until it listens.

    `command` replaces the `multistream` executable, e.g. to run it inside a network namespace
    (`ip netns exec NS multistream`) or under a wrapper module."""
    full_env = {
        **os.environ,
        "MULTISTREAM_ICE_HOSTS": "127.0.0.1",
        "MULTISTREAM_HOST": "127.0.0.1",
        **(env or {}),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*command, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return ServerProcess(proc, match.group(1), log_path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    raise AssertionError(f"server did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
