"""The `multistream` command as a user runs it: a real process, real port, real restart."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "multistream"


def _start(data_dir: Path, store: str | None = None) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "MULTISTREAM_ICE_HOSTS": "127.0.0.1"}
    store_args = ["--store", store] if store else []
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", "0", "--data-dir", str(data_dir), *store_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    for line in proc.stdout:
        match = re.search(r"listening on (http://[\d.]+:\d+)/", line)
        if match:
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError("server did not report its address")


def _call(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(url, data=data, method=method)
    if data:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _cli(data_dir: Path, store: str | None, *args: str, stdin: str | None = None) -> str:
    """Run `multistream ARGS` on the same data as the server; its stdout (exit 0 asserted)."""
    store_args = ["--store", store] if store else []
    proc = subprocess.Popen(
        [str(BIN), *args, "--data-dir", str(data_dir), *store_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A command that hangs is stopped with SIGABRT: its stack (faulthandler) is the failure.
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        out, err = proc.communicate(stdin, timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate()
        raise AssertionError(f"`multistream {' '.join(args)}` hung for 60 s:\n{err}") from None
    assert proc.returncode == 0, err
    return out


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.timeout(120)
@pytest.mark.store_backends
def test_serve_restart_keeps_sessions_and_preferences(
    tmp_path: Path, store_url: str | None
) -> None:
    """On MongoDB this is also the start-up check: `serve --store mongodb://…` once crashed in
    `open_services` (a driver object tested for truth)."""
    # The operator's way to a broadcaster: `users add` (token-only) and `users token`.
    assert "added ana" in _cli(tmp_path / "data", store_url, "users", "add", "ana", "--no-password")
    api_token = _cli(tmp_path / "data", store_url, "users", "token", "ana").strip()
    assert api_token.startswith("ms_")
    proc, base = _start(tmp_path / "data", store_url)
    try:
        api = base + "/api/v1/livestream"
        started = _call(
            "POST",
            api + "/session/start",
            {"title": "cli", "streams": ["screen", "camera"]},
            token=api_token,
        )
        sid = started["session"]["id"]
        joined = _call("POST", f"{api}/session/{sid}/join")
        _call(
            "PUT",
            f"{api}/session/{sid}/preferences",
            {"mode": "composite", "pip": {"corner": "top-right", "size_pct": 35}},
            token=joined["viewer_token"],
        )
    finally:
        assert _stop(proc) == 0
    assert (tmp_path / "data" / "multistream.sqlite3").exists() == (store_url is None)
    assert (tmp_path / "data" / "token.secret").stat().st_mode & 0o077 == 0

    proc, base = _start(tmp_path / "data", store_url)
    try:
        api = base + "/api/v1/livestream"
        status = _call("GET", f"{api}/session/{sid}/status")
        assert status["session"]["title"] == "cli"
        again = _call("POST", f"{api}/session/{sid}/join", token=joined["viewer_token"])
        assert again["viewer_id"] == joined["viewer_id"]
        assert again["preferences"]["pip"] == {"corner": "top-right", "size_pct": 35}
        assert again["preferences"]["mode"] == "composite"
    finally:
        assert _stop(proc) == 0


def test_bad_settings_exit_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "MULTISTREAM_PORT": "not-a-port"}
    result = subprocess.run(
        [str(BIN), "serve"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "MULTISTREAM_PORT must be an integer" in result.stderr


def test_metrics_on_a_separate_address(tmp_path: Path) -> None:
    """`MULTISTREAM_METRICS_ADDRESS`: `/metrics` moves to its own listener (keep it off the public
    network); the public port answers it 404."""
    env = {
        **os.environ,
        "MULTISTREAM_ICE_HOSTS": "127.0.0.1",
        "MULTISTREAM_METRICS_ADDRESS": "127.0.0.1:0",
    }
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    metrics = public = None
    try:
        for line in proc.stdout:
            if found := re.search(r"metrics on (http://[\d.]+:\d+)/metrics", line):
                metrics = found.group(1)
            if found := re.search(r"listening on (http://[\d.]+:\d+)/", line):
                public = found.group(1)
                break
        assert metrics and public, "server did not report both addresses"
        with urllib.request.urlopen(f"{metrics}/metrics", timeout=10) as resp:
            assert resp.status == 200 and b"# TYPE" in resp.read()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{public}/metrics", timeout=10)
        assert refused.value.code == 404
        assert _call("GET", f"{public}/api/v1/livestream/sessions")["sessions"] == []
    finally:
        assert _stop(proc) == 0


def test_users_cli_lists_disables_and_enables(tmp_path: Path) -> None:
    """The operator's account commands on one data directory, as separate processes."""
    data = tmp_path / "data"
    added = _cli(
        data,
        None,
        "users",
        "add",
        "Ana",
        "--display-name",
        "Ana Dev",
        "--password-stdin",
        stdin="a good password\n",
    )
    assert "added ana" in added and "(password)" in added
    listed = _cli(data, None, "users", "list").splitlines()
    assert len(listed) == 1
    name, user_id, state, _created, display = listed[0].split("\t")
    assert (name, state, display) == ("ana", "active", "Ana Dev") and user_id.startswith("usr_")
    assert _cli(data, None, "users", "disable", "ana").strip() == "ana disabled"
    assert "\tdisabled\t" in _cli(data, None, "users", "list")
    assert _cli(data, None, "users", "enable", "ana").strip() == "ana enabled"
    # Mistakes are one clear line on stderr (beside the log) and exit 1.
    for args, message in (
        (("users", "add", "ana", "--no-password"), "multistream: that username is taken"),
        (("users", "token", "nobody"), "multistream: no account named 'nobody'"),
    ):
        done = subprocess.run(
            [str(BIN), *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1 and message in done.stderr.splitlines(), done.stderr
