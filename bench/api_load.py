"""Load benchmark of the control plane: the real `multistream serve` beside a bare Tornado handler.

    .venv/bin/python -m bench.api_load              # the table (about 100 s)
    .venv/bin/python -m bench.api_load --quick      # one short round
    .venv/bin/python -m pytest bench/bench_api.py   # the quick run as a pytest-benchmark

Both servers run in their own processes on loopback, pinned to CPU 0; this process, the load
generator, pins itself to CPU 1. The generator is deliberately thin: raw asyncio sockets, HTTP/1.1
keep-alive, a fixed set of connections and request bytes built before the clock starts.

Targets, all on the embedded SQLite store in a fresh data directory:
- `bare`: `GET` of a bare Tornado `RequestHandler` writing a small JSON dict (`bench.bare_server`);
- `status`: `GET /session/{id}/status` over 8 live sessions;
- `prefs PUT`: `PUT /session/{id}/preferences` with 256 viewers' tokens and bodies that vary mode,
  corner, size and enabled streams (each a real validated write plus a re-quote);
- `join`: `POST /session/{id}/join`, half new viewers (an insert each), half returning viewers
  presenting their earlier token.
Sessions are priced with a PIX receiver, as a paying audience uses them, so joins and preference
changes also pass through payment orders.

Each round measures every target twice: closed loop (`--conns` connections, each sending its next
request when the answer arrives) for the throughput and its latencies, then open loop at a fixed
offered rate (by default half of what that target just sustained in closed loop, or `--rate`;
requests are scheduled on a clock and latency counts from the scheduled time, so a stalled server
cannot hide its queue) for the latency of a server at half its capacity. Every target's
closed-loop window follows a bare-handler window, and each ratio pairs the two (median over rounds),
so a burst of other work on this shared machine hits both sides of a ratio alike; rounds rotate the
order of the targets.

Server CPU per request (user+system time of the server process over the window) is the figure to
trust when the machine is busy, and `vs bare (CPU)` -- the bare handler's CPU per request over the
target's -- is the throughput ratio two servers with a core each would show. The wall-clock
`vs bare` ratio is only as good as the machine is quiet: when other processes compete for CPU 0 the
scheduler, not the code, sets each server's share (and the app, with its SQLite thread, can draw two
shares to the bare server's one).

    .venv/bin/python -m bench.api_load --duration 1.5 --baseline-root /tmp/before   # before/after
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.broadcaster import cli_token

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/api/v1/livestream"
LISTENING = re.compile(rb"listening on http://([\d.]+):(\d+)/")
HOST = "127.0.0.1"
SERVER_CPU = 0
CLIENT_CPU = 1

START_BODY = {
    "title": "bench",
    "streams": ["screen", "camera"],
    "pricing": {"base": 500, "addons": {"screen": 300, "camera": 200}, "bundle_discount_pct": 10},
    "pix": {"key": "dev@example.com", "merchant_name": "Ana Dev", "merchant_city": "Sao Paulo"},
}
N_SESSIONS = 8
VIEWERS_PER_SESSION = 32


# -- servers ---------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def start_server(
    name: str, argv: Sequence[str], log_path: Path, env: dict[str, str], cwd: Path = ROOT
) -> Server:
    """Start a server process pinned to `SERVER_CPU`; wait for its `listening on` line."""
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            list(argv),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=cwd,
            preexec_fn=lambda: _pin(SERVER_CPU),
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = LISTENING.search(log_path.read_bytes())
        if match:
            return Server(name, proc, int(match.group(2)), log_path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise RuntimeError(f"{name} did not start:\n{log_path.read_text(errors='replace')[-3000:]}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)


@contextmanager
def app_server(workdir: Path, app_root: Path | None = None) -> Iterator[Server]:
    """`multistream serve` on its own SQLite store in `workdir`, stopped on exit.

    `app_root` runs the app from another source tree (say, a snapshot of an earlier commit) with
    this interpreter, so before/after figures come from one harness in one run.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    multistream = Path(sys.executable).parent / "multistream"
    # Every request comes from loopback: rate limits off the table (a throughput run, not a test
    # of the limits; older snapshots ignore the variables).
    unlimited = "1000000/1000000"
    env = {
        "MULTISTREAM_ICE_HOSTS": HOST,
        "MULTISTREAM_RECORD": "0",
        "MULTISTREAM_RATE_SESSION_START": unlimited,
        "MULTISTREAM_RATE_JOIN": unlimited,
    }
    if app_root is not None:
        argv = [sys.executable, "-m", "multistream.cli"]
        env["PYTHONPATH"] = str(app_root)
    elif multistream.exists():
        argv = [str(multistream)]
    else:
        argv = [sys.executable, "-m", "multistream.cli"]
    argv += ["serve", "--host", HOST, "--port", "0", "--data-dir", str(workdir / "data")]
    app = start_server("app", argv, workdir / "app.log", env, cwd=app_root or ROOT)
    try:
        yield app
    finally:
        stop_server(app)


@contextmanager
def bare_server(workdir: Path) -> Iterator[Server]:
    """`bench.bare_server` in its own process, stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench.bare_server", "--host", HOST, "--port", "0"]
    bare = start_server("bare", argv, workdir / "bare.log", {})
    try:
        yield bare
    finally:
        stop_server(bare)


@contextmanager
def servers(workdir: Path, app_root: Path | None = None) -> Iterator[tuple[Server, Server]]:
    """The real app and the bare handler."""
    with app_server(workdir / "app", app_root) as app, bare_server(workdir / "bare") as bare:
        yield app, bare


# -- fixtures in the app ---------------------------------------------------------------------------


def _call(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = json.loads(response.read() or b"null")
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} -> {response.status} {data}")
        return data
    finally:
        conn.close()


@dataclass
class Fixture:
    """Sessions and viewers made through the API before any clock starts."""

    session_ids: list[str]
    viewers: list[tuple[str, str]]  # (session id, viewer token)


def make_fixture(port: int, account: str | None = None) -> Fixture:
    """`account`: a broadcaster's API token (`bench.broadcaster.cli_token`); starting needs one."""
    session_ids = [
        _call(port, "POST", f"{PREFIX}/session/start", START_BODY, token=account)["session"]["id"]
        for _ in range(N_SESSIONS)
    ]
    viewers = []
    for sid in session_ids:
        for _ in range(VIEWERS_PER_SESSION):
            joined = _call(port, "POST", f"{PREFIX}/session/{sid}/join")
            viewers.append((sid, joined["viewer_token"]))
    return Fixture(session_ids, viewers)


def preference_bodies() -> list[bytes]:
    """Bodies a viewer's layout panel sends: every field changes across the list."""
    enabled = (["screen", "camera"], ["screen"], ["camera"])
    corners = ("top-left", "top-right", "bottom-left", "bottom-right")
    out = []
    for i in range(24):
        body = {
            "enabled_streams": enabled[i % 3],
            "mode": "composite" if i % 2 else "separate",
            "pip": {"corner": corners[i % 4], "size_pct": 10 + (i * 7) % 31},
        }
        out.append(json.dumps(body).encode())
    return out


# -- requests --------------------------------------------------------------------------------------


def raw_request(
    method: str, path: str, port: int, body: bytes = b"", token: str | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if method in ("POST", "PUT"):
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Target:
    """What one line of the table measures: a server and the request bytes cycled against it."""

    name: str
    server: Server
    requests: list[bytes]


def bare_target(bare: Server, fixture: Fixture) -> Target:
    return Target(
        "bare", bare, [raw_request("GET", f"/bare/{sid}", bare.port) for sid in fixture.session_ids]
    )


def app_targets(app: Server, fixture: Fixture, label: str = "") -> list[Target]:
    """Status reads, preference writes and joins against one app, requests built in advance."""
    status = [
        raw_request("GET", f"{PREFIX}/session/{sid}/status", app.port)
        for sid in fixture.session_ids
    ]
    bodies = preference_bodies()
    prefs = [
        raw_request(
            "PUT",
            f"{PREFIX}/session/{sid}/preferences",
            app.port,
            bodies[(i * 7) % len(bodies)],
            token,
        )
        for i, (sid, token) in enumerate(fixture.viewers)
    ]
    joins = []
    for i, (sid, token) in enumerate(fixture.viewers):
        path = f"{PREFIX}/session/{sid}/join"
        joins.append(raw_request("POST", path, app.port))  # a new viewer
        joins.append(raw_request("POST", path, app.port, token=token if i % 2 else None))
    return [
        Target(f"status{label}", app, status),
        Target(f"prefs PUT{label}", app, prefs),
        Target(f"join{label}", app, joins),
    ]


# -- the load generator ----------------------------------------------------------------------------


@dataclass
class Phase:
    """One measured window of one target."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    saturated: bool = False

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.requests * 1e6 if self.requests else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        length = int(lower[at + 17 : end])
        if length:
            await reader.readexactly(length)
    return status


async def closed_loop(
    port: int,
    requests: Sequence[bytes],
    *,
    conns: int,
    warmup_s: float,
    duration_s: float,
    server: Server,
    max_requests: int = 200_000,
) -> Phase:
    """`conns` connections, each sends its next request when the previous answer is in."""
    phase = Phase()
    order = itertools.count()
    n = len(requests)
    loop = asyncio.get_running_loop()
    start = loop.time()
    t0, t1 = start + warmup_s, start + warmup_s + duration_s
    cpu0: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while True:
                k = next(order)
                sent = loop.time()
                if sent >= t1 or phase.requests >= max_requests:
                    return
                writer.write(requests[k % n])
                status = await _read_response(reader)
                done = loop.time()
                if t0 <= sent and done < t1:
                    phase.requests += 1
                    phase.latencies.append(done - sent)
                    if status >= 300:
                        phase.errors += 1
        finally:
            writer.close()

    async def mark_cpu() -> None:
        await asyncio.sleep(max(0.0, t0 - loop.time()))
        cpu0.append(server.cpu_seconds)

    marker = asyncio.create_task(mark_cpu())
    await asyncio.gather(*(worker() for _ in range(conns)))
    await marker
    phase.server_cpu_s = server.cpu_seconds - cpu0[0]
    phase.seconds = min(loop.time(), t1) - t0
    return phase


async def open_loop(
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    conns: int,
    warmup_s: float,
    duration_s: float,
    server: Server,
) -> Phase:
    """Requests scheduled at `rate` per second over `conns` connections; latency from schedule."""
    phase = Phase()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    n = len(requests)
    order = itertools.count()
    start = loop.time()
    t0, t1 = start + warmup_s, start + warmup_s + duration_s
    backlog_limit = max(conns, int(rate * 0.5))  # half a second behind: the server is saturated
    cpu0: list[float] = []

    async def producer() -> None:
        interval = 1.0 / rate
        due = start
        while due < t1:
            now = loop.time()
            while due <= now and due < t1:
                queue.put_nowait(due)
                due += interval
            if not cpu0 and now >= t0:
                cpu0.append(server.cpu_seconds)
            if queue.qsize() > backlog_limit:
                phase.saturated = True
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
        for _ in range(conns):
            queue.put_nowait(None)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while (due := await queue.get()) is not None:
                if phase.saturated:
                    continue
                writer.write(requests[next(order) % n])
                status = await _read_response(reader)
                done = loop.time()
                if t0 <= due < t1:
                    phase.requests += 1
                    phase.latencies.append(done - due)
                    if status >= 300:
                        phase.errors += 1
        finally:
            writer.close()

    await asyncio.gather(producer(), *(worker() for _ in range(conns)))
    phase.server_cpu_s = server.cpu_seconds - (cpu0[0] if cpu0 else server.cpu_seconds)
    phase.seconds = duration_s
    return phase


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Options:
    rounds: int = 3
    warmup_s: float = 0.5
    duration_s: float = 2.5
    conns: int = 16
    rate: float | None = None  # open-loop req/s; None: half the target's own closed-loop rate
    app_root: Path | None = None
    baseline_root: Path | None = None  # a second app, measured in the same rounds


@dataclass
class Result:
    """Every phase of every round, by target."""

    options: Options
    closed: dict[str, list[Phase]] = field(default_factory=dict)
    opened: dict[str, list[Phase]] = field(default_factory=dict)
    # The bare handler's closed-loop window measured right before each target's: the ratios pair
    # them, so a burst of other work on the machine hits both sides of a ratio alike.
    bare_before: dict[str, list[Phase]] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=dict)

    def _pairs(self, target: str) -> list[tuple[Phase, Phase]]:
        if target == "bare":
            return [(p, p) for p in self.closed["bare"]]
        return list(zip(self.closed[target], self.bare_before[target], strict=True))

    def ratio(self, target: str) -> float:
        """Median of this target's throughput over the bare handler's window just before it."""
        return statistics.median(p.rps / b.rps for p, b in self._pairs(target) if b.rps)

    def cpu_ratio(self, target: str) -> float:
        """Median of the bare handler's server CPU per request over this target's, paired."""
        return statistics.median(
            b.cpu_us_per_request / p.cpu_us_per_request for p, b in self._pairs(target)
        )

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for target in self.closed:
            closed, opened = self.closed[target], self.opened[target]
            out[target] = {
                "rps": statistics.median(p.rps for p in closed),
                "ratio_vs_bare": self.ratio(target),
                "cpu_ratio_vs_bare": self.cpu_ratio(target),
                "p50_ms": statistics.median(p.percentile(0.50) for p in closed),
                "p99_ms": statistics.median(p.percentile(0.99) for p in closed),
                "open_rate": statistics.median(self.rates[target]),
                "open_p50_ms": _median_unsaturated(opened, 0.50),
                "open_p99_ms": _median_unsaturated(opened, 0.99),
                "open_saturated_rounds": sum(p.saturated for p in opened),
                "cpu_us_per_req": statistics.median(p.cpu_us_per_request for p in closed),
                "errors": sum(p.errors for p in closed + opened),
                "requests": sum(p.requests for p in closed + opened),
            }
        return out

    def table(self) -> str:
        o = self.options
        rows = [
            (
                f"| target | req/s ({o.conns} conns) | vs bare | p50 ms | p99 ms | open-loop req/s "
                "| p50 ms | p99 ms | server CPU µs/req | vs bare (CPU) | errors |"
            ),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for target, s in self.summary().items():
            sat = int(s["open_saturated_rounds"])
            note = f" ({sat}/{o.rounds} saturated)" if sat else ""
            rows.append(
                f"| {target} | {s['rps']:.0f} | {s['ratio_vs_bare'] * 100:.0f} % "
                f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['open_rate']:.0f} "
                f"| {s['open_p50_ms']:.2f} "
                f"| {s['open_p99_ms']:.2f}{note} | {s['cpu_us_per_req']:.0f} "
                f"| {s['cpu_ratio_vs_bare'] * 100:.0f} % | {s['errors']} |"
            )
        return "\n".join(rows)


def _median_unsaturated(phases: list[Phase], q: float) -> float:
    """Median percentile over rounds whose offered rate the server kept up with (else NaN)."""
    kept = [p.percentile(q) for p in phases if not p.saturated]
    return statistics.median(kept) if kept else float("nan")


async def run_rounds(bare: Target, others: list[Target], options: Options) -> Result:
    result = Result(options)

    async def measure(target: Target) -> Phase:
        phase = await closed_loop(
            target.server.port,
            target.requests,
            conns=options.conns,
            warmup_s=options.warmup_s,
            duration_s=options.duration_s,
            server=target.server,
        )
        result.closed.setdefault(target.name, []).append(phase)
        return phase

    async def measure_open(target: Target, closed: Phase) -> None:
        rate = options.rate or max(20.0, closed.rps / 2)
        result.rates.setdefault(target.name, []).append(rate)
        phase = await open_loop(
            target.server.port,
            target.requests,
            rate=rate,
            conns=options.conns,
            warmup_s=options.warmup_s,
            duration_s=options.duration_s,
            server=target.server,
        )
        result.opened.setdefault(target.name, []).append(phase)

    for round_no in range(options.rounds):
        # Rotated so no target always follows the heaviest one.
        shift = round_no % len(others)
        for i, target in enumerate((*others[shift:], *others[:shift])):
            bare_closed = await measure(bare)
            if i == 0:
                await measure_open(bare, bare_closed)
            result.bare_before.setdefault(target.name, []).append(bare_closed)
            await measure_open(target, await measure(target))
    names = [bare.name, *(t.name for t in others)]
    result.closed = {name: result.closed[name] for name in names}
    result.opened = {name: result.opened[name] for name in names}
    return result


def run(options: Options) -> Result:
    """Start the servers, build the fixtures, pin this process, measure, stop everything."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="multistream-bench-")))
        app = stack.enter_context(app_server(tmp / "app", options.app_root))
        bare = stack.enter_context(bare_server(tmp / "bare"))
        fixture = make_fixture(app.port, cli_token(tmp / "app" / "data"))
        targets = app_targets(app, fixture)
        if options.baseline_root is not None:
            baseline = stack.enter_context(app_server(tmp / "baseline", options.baseline_root))
            account = cli_token(tmp / "baseline" / "data")
            targets += app_targets(baseline, make_fixture(baseline.port, account), " [baseline]")
        previous = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        _pin(CLIENT_CPU)
        try:
            return asyncio.run(run_rounds(bare_target(bare, fixture), targets, options))
        finally:
            if previous is not None:
                os.sched_setaffinity(0, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.5, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument(
        "--rate",
        type=float,
        help="open-loop offered req/s (default: half the target's closed-loop rate, per round)",
    )
    parser.add_argument("--quick", action="store_true", help="one round of 1.5 s phases")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    parser.add_argument("--app-root", type=Path, help="run the app from this source tree instead")
    parser.add_argument(
        "--baseline-root",
        type=Path,
        help="also measure the app from this source tree (e.g. an earlier commit), same rounds",
    )
    args = parser.parse_args(argv)
    options = Options(
        args.rounds,
        args.warmup,
        args.duration,
        args.conns,
        args.rate,
        args.app_root,
        args.baseline_root,
    )
    if args.quick:
        options.rounds, options.duration_s = 1, 1.5
    started = time.monotonic()
    result = run(options)
    print(result.table())
    print(
        f"\n{options.rounds} round(s), {options.duration_s:g} s per phase, medians over rounds; "
        f"servers on CPU {SERVER_CPU}, load generator on CPU {CLIENT_CPU}; "
        f"{time.monotonic() - started:.0f} s in all. On a busy machine trust the CPU columns: "
        f"wall-clock rates and tails then show the scheduler as much as the code."
    )
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
