"""schemathesis, with every check, against the live server: no token, a viewer's, a broadcaster's.

The OpenAPI document is the contract client generators use; this runs the schemathesis CLI (4.x)
against the real app on an ephemeral port and fails on any finding: a 5xx, a response or status not
in the document, schema-valid data refused, schema-invalid data accepted, a 405 without `Allow`,
an auth requirement ignored. Examples per operation are bounded (fixed seed) to stay ~1-2 minutes
on a busy machine. Per-operation expectations a schema cannot state live in `schemathesis.toml`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import FREE_BODY, PREFIX

pytestmark = pytest.mark.timeout(600)
CONFIG = Path(__file__).with_name("schemathesis.toml")
ROOT = Path(__file__).resolve().parent.parent
MAX_EXAMPLES = int(os.environ.get("MULTISTREAM_SCHEMATHESIS_EXAMPLES", "15"))
SEED = int(os.environ.get("MULTISTREAM_SCHEMATHESIS_SEED", "1"))


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    return [found]


async def _run(base_url: str, config: Path, token: str | None, report: Path) -> tuple[int, str]:
    args = [
        *_cli(),
        "--config-file",
        str(config),
        "run",
        f"{base_url}/api/v1/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--no-color",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    if token is not None:
        args += ["--header", f"Authorization: Bearer {token}"]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=report.parent,  # its `.schemathesis/` cache goes to the test's temp dir
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
            "NO_COLOR": "1",
        },
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_schemathesis_all_checks_pass(server, api, tmp_path: Path) -> None:
    started = await api.post(f"{PREFIX}/session/start", FREE_BODY, token=api.broadcaster_token)
    assert started.status == 201
    session = started.json["session"]
    joined = await api.post(f"{PREFIX}/session/{session['id']}/join")
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        CONFIG.read_text()
        + "\n[parameters]\n"
        + f'"path.session_id" = "{session["id"]}"\n'
        + f'"path.livestream_id" = "{session["id"]}"\n'
        + f'"path.stream_id" = "{session["streams"][0]["id"]}"\n'
    )
    runs: dict[str, Any] = {
        "no token": None,
        "viewer token": joined.json["viewer_token"],
        # The account's API token: starts sessions, reads the dashboard, makes and revokes tokens.
        "account token": api.broadcaster_token,
        # Last: its `end` and `stop` calls change the session the other runs use.
        "broadcaster token": started.json["broadcaster_token"],
    }
    summaries = []
    for label, token in runs.items():
        code, output = await _run(server.base_url, config, token, tmp_path / f"{label}.xml")
        cases = re.search(r"Test cases:\s*\n\s*(.+)", output)
        operations = re.search(r"Tested:\s*(\d+)", output)
        summary = f"{label}: {operations.group(1) if operations else '?'} operations, " + (
            cases.group(1).strip() if cases else "no summary"
        )
        summaries.append(summary)
        assert code == 0, f"schemathesis ({label}) found problems:\n{output[-6000:]}"
        assert cases and "generated" in cases.group(1) and "failure" not in cases.group(1)
    print("\n".join(summaries))
