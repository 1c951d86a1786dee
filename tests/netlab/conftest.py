"""Fixtures for the network-lab tests: one lab (a server namespace and two viewer links), the real
server and one headless Chromium per viewer link, shared by the module's tests.

Root only (namespaces, tc, nftables) and Debian's Chromium: without them the tests skip with the
reason, unless `MULTISTREAM_REQUIRE_NETLAB=1` (set by `.ci/run`) turns the skip into a failure.
Each test sets the links it needs, starts its own session and closes its viewers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.chromium import find_chromium
from tests.required import mark_folder, unavailable

from .lab import Lab, LabError, unavailable_reason
from .scenario import LabRun

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(items, Path(__file__).parent, pytest.mark.netlab)


def _unavailable(reason: str) -> None:
    unavailable("MULTISTREAM_REQUIRE_NETLAB", "network lab tests", reason)


@pytest.fixture(scope="package")
def lab_ready() -> None:
    reason = unavailable_reason()
    if reason:
        _unavailable(reason)


@pytest.fixture(scope="package")
def chromium_path(lab_ready: None) -> str:
    path = find_chromium()
    if path is None:
        _unavailable("Chromium not installed (apt-get install -y chromium); .ci/run installs it")
    assert path is not None
    return path


@pytest.fixture(scope="package")
def lab(lab_ready: None) -> Iterator[Lab]:
    try:
        with Lab(viewers=2) as built:
            yield built
    except LabError as exc:
        _unavailable(f"cannot build the network lab: {exc}")


@pytest.fixture(scope="package")
def lab_run(
    lab: Lab, chromium_path: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabRun]:
    """The server in the lab's server namespace and a Chromium on each viewer link."""
    workdir = Path(os.environ.get("MULTISTREAM_TEST_OUTPUT", REPO / "test-output")) / "netlab"
    workdir.mkdir(parents=True, exist_ok=True)
    with LabRun(lab, tmp_path_factory.mktemp("netlab"), chromium_path) as run:
        yield run
        (workdir / "server.log").write_text(run.server_log())
