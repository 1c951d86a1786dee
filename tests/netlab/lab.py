"""Network namespaces joined by veth pairs, with a bandwidth cap (tc tbf) and random loss (nftables).

One server namespace and one namespace per viewer; viewer `i` reaches the server over its own veth
pair, 10.77.<net>.1 (server side) <-> 10.77.<net>.2 (viewer side), so each viewer's link is impaired
on its own. Nothing is routed anywhere else: the namespaces have `lo` and their veth ends only.

Impairments, as measured to work on this kernel (no netem here, see docs/netlab.md):
- cap: `tbf` on the server's end of the pair, i.e. on what the server sends toward that viewer;
- loss: an nftables rule in the viewer's input hook dropping N % of UDP from the server on arrival
  (dropping in the sender's output hook would return EPERM to the sender: not a silent loss);
- a named nftables counter in the server's output hook counts the UDP bytes the server sends toward
  each viewer (before the cap), so a test can compute the server's send rate.

Names carry this process's id (`msl<pid>-<n>...`): teardown runs from the context manager, from
`atexit`, and `sweep_stale()` removes what a killed run left behind (namespaces whose pid is gone).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from types import TracebackType

PREFIX = "msl"
_serial = itertools.count(1)
_STALE = re.compile(rf"^{PREFIX}(\d+)-")


class LabError(RuntimeError):
    """A lab command failed (not root, missing iproute2/nftables, or a kernel refusal)."""


def run(*args: str, check: bool = True) -> str:
    """Run a command, returning stdout; raise LabError with its stderr when it fails."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise LabError(
            f"{args[0]} not installed (make install adds iproute2 and nftables)"
        ) from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def unavailable_reason() -> str | None:
    """Why the lab cannot run here (None when it can): root and the `ip`, `tc`, `nft` tools."""
    if os.geteuid() != 0:
        return "the network lab needs root (network namespaces, tc, nftables)"
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool, path=path) is None:
            return f"`{tool}` not installed (make install adds iproute2 and nftables)"
    return None


@dataclass(frozen=True, slots=True)
class Counter:
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Link:
    """Viewer `index`'s end of the lab: its namespace, the veth names and both addresses."""

    index: int
    namespace: str
    server_ip: str
    viewer_ip: str
    server_dev: str
    viewer_dev: str


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespaces() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def _kill_inside(namespace: str) -> None:
    """SIGKILL what still runs in a lab namespace (servers and browsers the lab's user started)."""
    for raw in run("ip", "netns", "pids", namespace, check=False).split():
        pid = int(raw)
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _delete(namespace: str) -> None:
    _kill_inside(namespace)
    run("ip", "netns", "delete", namespace, check=False)


def sweep_stale() -> list[str]:
    """Delete lab namespaces left by processes that no longer exist (a run killed by SIGKILL)."""
    removed = []
    for name in namespaces():
        match = _STALE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _delete(name)
            removed.append(name)
    return removed


class Lab:
    """`with Lab(viewers=2) as lab:` — namespaces and links up; always torn down on exit.

    `lab.shape(i, rate_kbit=1000, loss_pct=3)` impairs viewer i's link (None/0 clears);
    `lab.sent(i)` reads the server-to-viewer UDP counter; `lab.exec_prefix(ns)` runs a process
    inside a namespace; processes and threads placed there are the caller's to stop.
    """

    def __init__(self, viewers: int = 1) -> None:
        if viewers < 1 or viewers > 8:
            raise ValueError("a lab has 1 to 8 viewer links")
        self.serial = next(_serial)
        base = f"{PREFIX}{os.getpid()}-{self.serial}"
        self.server_ns = f"{base}s"
        # /24 per link; namespaces are isolated, so the numbers only need to differ inside this lab.
        net0 = (self.serial * 8) % 240 + 1
        self.links = [
            Link(
                index=i,
                namespace=f"{base}v{i}",
                server_ip=f"10.77.{net0 + i}.1",
                viewer_ip=f"10.77.{net0 + i}.2",
                server_dev=f"srv{i}",
                viewer_dev="view0",
            )
            for i in range(viewers)
        ]
        self._created: list[str] = []
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def up(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise LabError(reason)
        sweep_stale()
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self._created.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        # IPv6 off before the veth ends arrive, so they come up without link-local addresses.
        run(
            "ip", "netns", "exec", name, "sysctl", "-qw",
            "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
        )  # fmt: skip

    def _build(self) -> None:
        self._add_namespace(self.server_ns)
        self._nft(
            self.server_ns,
            "add table inet netlab\n"
            "add chain inet netlab out { type filter hook output priority 0; }\n",
        )
        for link in self.links:
            self._add_namespace(link.namespace)
            run(
                "ip", "link", "add", link.server_dev, "netns", self.server_ns,
                "type", "veth", "peer", "name", link.viewer_dev, "netns", link.namespace,
            )  # fmt: skip
            for ns, dev, ip in (
                (self.server_ns, link.server_dev, link.server_ip),
                (link.namespace, link.viewer_dev, link.viewer_ip),
            ):
                run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                run("ip", "-n", ns, "link", "set", dev, "up")
            counter = f"to_v{link.index}"
            self._nft(
                self.server_ns,
                f"add counter inet netlab {counter}\n"
                f"add rule inet netlab out ip daddr {link.viewer_ip} meta l4proto udp "
                f"counter name {counter}\n",
            )
            self._nft(
                link.namespace,
                "add table inet netlab\n"
                "add chain inet netlab in { type filter hook input priority 0; }\n"
                "add counter inet netlab lost\n",
            )

    def close(self) -> None:
        """Remove every namespace this lab made (killing what still runs inside). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for name in reversed(self._created):
            _delete(name)
        self._created.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    # -- impairments and counters ---------------------------------------------------------------

    def shape(self, index: int, rate_kbit: int | None = None, loss_pct: int = 0) -> None:
        """Set viewer `index`'s link: a cap on what the server sends it, random UDP loss on arrival."""
        if not 0 <= loss_pct < 100:
            raise ValueError("loss_pct must be 0..99")
        link = self.links[index]
        if rate_kbit:
            # tbf needs a bucket of at least one tick's worth of bytes; 32 kbit as measured at 1 Mbit.
            burst = max(32, rate_kbit // 100)
            run(
                "tc", "-n", self.server_ns, "qdisc", "replace", "dev", link.server_dev, "root",
                "tbf", "rate", f"{rate_kbit}kbit", "burst", f"{burst}kbit", "latency", "300ms",
            )  # fmt: skip
        else:
            run("tc", "-n", self.server_ns, "qdisc", "del", "dev", link.server_dev, "root",
                check=False)  # fmt: skip
        rules = "flush chain inet netlab in\n"
        if loss_pct:
            rules += (
                f"add rule inet netlab in ip saddr {link.server_ip} meta l4proto udp "
                f"numgen random mod 100 < {loss_pct} counter name lost drop\n"
            )
        self._nft(link.namespace, rules)

    def sent(self, index: int) -> Counter:
        """UDP the server has sent toward viewer `index` so far (counted before the cap)."""
        return self._counter(self.server_ns, f"to_v{index}")

    def lost(self, index: int) -> Counter:
        """UDP from the server dropped on arrival at viewer `index` by the loss rule so far."""
        return self._counter(self.links[index].namespace, "lost")

    @staticmethod
    def _counter(namespace: str, name: str) -> Counter:
        out = run("ip", "netns", "exec", namespace, "nft", "-j", "list", "counter", "inet",
                  "netlab", name)  # fmt: skip
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                return Counter(int(item["counter"]["packets"]), int(item["counter"]["bytes"]))
        raise LabError(f"no counter {name} in {namespace}")

    @staticmethod
    def _nft(namespace: str, script: str) -> None:
        try:
            done = subprocess.run(
                ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
                input=script,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except FileNotFoundError as exc:
            raise LabError("iproute2 not installed") from exc
        if done.returncode != 0:
            raise LabError(f"nft in {namespace}: {done.stderr.strip()}\n{script}")

    @staticmethod
    def exec_prefix(namespace: str) -> list[str]:
        """Prefix for a command that must run inside `namespace` (`ip netns exec`)."""
        return ["ip", "netns", "exec", namespace]
