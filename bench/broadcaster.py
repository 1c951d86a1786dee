"""A broadcaster for the benchmarks: starting a session needs one (an API token).

`signup_token` takes the zero-setup path over HTTP (the first visitor of a fresh server signs up,
then makes an API token with the log-in cookie); `cli_token` uses the operator's CLI on the
server's data directory (for servers whose HTTP is inside a network namespace or from an older
snapshot that knows no accounts -- it then simply ignores the token).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tornado.httpclient

USERNAME = "bench"
PASSWORD = "bench password 1"


async def signup_token(base: str, username: str = USERNAME) -> str:
    client = tornado.httpclient.AsyncHTTPClient()
    headers = {"Origin": base, "Content-Type": "application/json"}
    body = json.dumps({"username": username, "password": PASSWORD})
    resp = await client.fetch(
        f"{base}/api/v1/auth/signup", method="POST", body=body, headers=headers, raise_error=False
    )
    if resp.code == 403:  # the account exists: log in
        resp = await client.fetch(
            f"{base}/api/v1/auth/login", method="POST", body=body, headers=headers
        )
    elif resp.code != 201:
        raise RuntimeError(f"sign-up failed: {resp.code} {resp.body[:200]!r}")
    cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
    made = await client.fetch(
        f"{base}/api/v1/account/tokens",
        method="POST",
        body="{}",
        headers={**headers, "Cookie": cookie},
    )
    return str(json.loads(made.body)["secret"])


def cli_token(data_dir: Path, username: str = USERNAME) -> str:
    cli = [sys.executable, "-m", "multistream.cli", "users"]
    where = ["--data-dir", str(data_dir)]
    subprocess.run(
        [*cli, "add", username, "--no-password", *where], capture_output=True, check=False
    )
    done = subprocess.run(
        [*cli, "token", username, *where], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()
