"""Settings, built once from the environment (and CLI overrides) into a frozen dataclass.

Every knob of the server lives here so that handlers and services never read `os.environ` and a test
can build an app with exactly the settings it wants.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class Secret:
    """A string that never shows itself in `repr`, `str` or logs; call `.reveal()` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not lo <= value <= hi:  # also refuses nan
        raise ValueError(f"{name} must be between {lo:g} and {hi:g}, got {raw!r}")
    return value


def _lease(env: Mapping[str, str]) -> tuple[float, float]:
    """(lease, heartbeat): a heartbeat at most a third of the lease, so two renewals can be lost
    (a slow store, a GC pause) before the lease runs out under a live owner."""
    ttl = _float(env, "MULTISTREAM_LEASE_TTL", Settings.lease_ttl_s, 1.0, 600.0)
    beat = _float(
        env, "MULTISTREAM_LEASE_HEARTBEAT", min(Settings.lease_heartbeat_s, ttl / 3), 0.1, 200.0
    )
    if beat * 3 > ttl:
        raise ValueError(
            f"MULTISTREAM_LEASE_HEARTBEAT ({beat:g} s) must be at most a third of "
            f"MULTISTREAM_LEASE_TTL ({ttl:g} s)"
        )
    return ttl, beat


def _url(env: Mapping[str, str], name: str) -> str:
    """An http(s) base URL without a trailing slash, or empty."""
    raw = env.get(name, "").strip().rstrip("/")
    if raw and not (raw.startswith("http://") or raw.startswith("https://")):
        raise ValueError(f"{name} must be an http:// or https:// URL, got {raw!r}")
    return raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _rate(env: Mapping[str, str], name: str, default: tuple[int, int]) -> tuple[int, int]:
    """`BURST/PER_MINUTE`, e.g. `30/60`: 30 at once, then one a second."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        burst_s, per_min_s = raw.split("/", 1)
        burst, per_min = int(burst_s), int(per_min_s)
    except ValueError:
        raise ValueError(
            f"{name} must look like BURST/PER_MINUTE (e.g. 30/60), got {raw!r}"
        ) from None
    if not (1 <= burst <= 1_000_000 and 1 <= per_min <= 1_000_000):
        raise ValueError(f"{name} values must be between 1 and 1000000, got {raw!r}")
    return burst, per_min


SIGNUP_MODES = ("first", "open", "closed")


def _signup(raw: str) -> str:
    value = raw.strip().lower() or "first"
    if value not in SIGNUP_MODES:
        raise ValueError(
            f"MULTISTREAM_SIGNUP must be one of {', '.join(SIGNUP_MODES)}, got {raw!r}"
        )
    return value


def _port_range(raw: str) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        lo_s, hi_s = raw.split("-", 1)
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        raise ValueError(f"MULTISTREAM_UDP_PORTS must look like 40000-40100, got {raw!r}") from None
    if not 1024 <= lo <= hi <= 65535:
        raise ValueError(f"MULTISTREAM_UDP_PORTS out of range: {raw!r}")
    return lo, hi


def _address(raw: str) -> str:
    """`host:port` (port 0 picks a free one), or empty."""
    if not raw:
        return ""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"MULTISTREAM_METRICS_ADDRESS must look like 127.0.0.1:9100, got {raw!r}")
    return raw


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# Composite encoders per core by default: a 1080p15 text composite costs ~10-15 % of a core.
COMPOSITE_ENCODERS_PER_CORE = 4


def default_composite_budget() -> int:
    return COMPOSITE_ENCODERS_PER_CORE * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Defaults are safe: loopback-free ICE, same-origin CORS, debug off."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # `None` means the embedded SQLite store at `data_dir/multistream.sqlite3`.
    store_url: str | None = None
    debug: bool = False
    # Exact origins (scheme://host[:port]) allowed cross-origin; empty means same origin only.
    allowed_origins: tuple[str, ...] = ()
    token_secret: Secret = field(default_factory=lambda: Secret(""))
    token_ttl_s: int = 12 * 3600
    max_body_bytes: int = 1024 * 1024
    # Slow clients: seconds to send a request's headers (also the keep-alive idle limit), and to
    # send its body once the headers are in. A client dribbling bytes is closed at the limit.
    header_timeout_s: int = 30
    body_timeout_s: int = 60
    # `/metrics`: when set, a scrape must send `Authorization: Bearer <token>`.
    metrics_token: Secret = field(default_factory=lambda: Secret(""))
    # `host:port` of a separate listener for `/metrics` (and the probes); empty means the main port.
    # When set, the main port no longer serves `/metrics`.
    metrics_address: str = ""
    # WebRTC. Empty ICE servers on purpose: aiortc would otherwise contact a public STUN server.
    ice_servers: tuple[str, ...] = ()
    # Host addresses offered as ICE candidates; empty means every interface (aioice's behaviour).
    ice_hosts: tuple[str, ...] = ()
    udp_ports: tuple[int, int] | None = None
    video_codecs: tuple[str, ...] = ("H264", "VP8")
    screen_bitrate_bps: int = 2_500_000
    camera_bitrate_bps: int = 1_200_000
    max_bitrate_bps: int = 8_000_000
    record: bool = True
    # Forward the publisher's own packets to viewers of the same codec (no decode/encode per
    # output); off means every output goes through the server's shared encoders.
    passthrough: bool = True
    # Seconds a viewer's peer connection may take to connect (ICE + DTLS) before it is closed, and
    # how many not-yet-connected viewer connections one session may hold at once (429 above).
    peer_connect_timeout_s: int = 20
    max_pending_peers: int = 64
    # Per-client token buckets on anonymous and expensive writes ("burst/per-minute"); the state
    # is in the store, so every instance sharing it enforces one limit. 429 + Retry-After above.
    rate_session_start: tuple[int, int] = (10, 10)
    rate_join: tuple[int, int] = (30, 60)
    rate_offer: tuple[int, int] = (30, 120)
    rate_webhook: tuple[int, int] = (120, 1200)
    # Log-in attempts, per client address and, separately, per account name (password guessing
    # spread over many addresses still meets the second bucket).
    rate_login: tuple[int, int] = (10, 10)
    # Who may create a broadcaster account from the web page: `first` (default) only while no
    # account exists -- the zero-setup path: the first visitor of a fresh server becomes its
    # broadcaster; more accounts come from `multistream users add` --, `open` anyone, `closed` nobody.
    signup: str = "first"
    # How long a web log-in (the session cookie) lasts.
    login_ttl_s: int = 14 * 86400
    # The client address for rate limits is the TCP peer unless this names a header set by a
    # trusted reverse proxy (e.g. X-Forwarded-For; its last hop is used). Off by default: a
    # client could otherwise pick its own address.
    trusted_proxy_header: str = ""
    # Adaptive delivery: per-viewer bandwidth estimate, pacing, resend budget and quality ladder.
    # Off: every viewer gets the top rung unpaced, as before adaptive delivery existed.
    adaptive: bool = True
    # Composite encoders (layout x codec x rung) this instance runs at most, and one session at
    # most; over budget a viewer gets the nearest running layout (server/media/planner.py).
    composite_budget: int = field(default_factory=lambda: default_composite_budget())
    composite_budget_session: int = 0  # 0: half the instance budget (at least 1)
    # Payments.
    pix_webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    order_ttl_s: int = 30 * 60
    # Operations.
    drain_deadline_s: int = 30
    log_json: bool = False
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # Base URL other instances and clients use to reach this instance's signaling (scale-out).
    public_url: str = ""
    # Scale-out ownership (server.ownership): a session's owner renews its lease every heartbeat;
    # a lease not renewed for `lease_ttl_s` may be taken over by another instance. Other instances
    # forward signaling to the owner at `internal_url` (default: the bound host and port).
    # 8 s / 2 s: after a crash a viewer's video is back within ~TTL + 0.5 s (under the 10 s goal;
    # 10 s / 3 s measured 9.8 s), and three renewals may be lost before a live owner loses a lease.
    lease_ttl_s: float = 8.0
    lease_heartbeat_s: float = 2.0
    internal_url: str = ""
    # Relay (server/media/relay.py, server/assignment.py): viewers of a session owned elsewhere may
    # be served here from one server-to-server link per source, and this instance offers itself
    # to the viewer assignment. Default: on when `internal_url` is set (a cluster), else off.
    relay: bool = False
    # A relay link with no local viewer left closes after this long (a viewer's reconnect or the
    # next join reuses it meanwhile).
    relay_linger_s: float = 5.0

    @property
    def store_location(self) -> str:
        """The store URL actually used: the configured one or the embedded SQLite file."""
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'multistream.sqlite3').resolve()}"

    @property
    def session_composite_budget(self) -> int:
        """Composite encoders one session may run: as configured, else half the instance's."""
        return self.composite_budget_session or max(1, self.composite_budget // 2)

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `MULTISTREAM_*` variables; keyword overrides (from the CLI) win over the env."""
        env = os.environ if env is None else env
        lease = _lease(env)
        settings = cls(
            host=env.get("MULTISTREAM_HOST", cls.host),
            port=_int(env, "MULTISTREAM_PORT", cls.port, 0, 65535),
            data_dir=Path(env.get("MULTISTREAM_DATA_DIR", "data")),
            store_url=env.get("MULTISTREAM_STORE") or None,
            debug=_bool(env, "MULTISTREAM_DEBUG", False),
            allowed_origins=_split(env.get("MULTISTREAM_ALLOWED_ORIGINS", "")),
            token_secret=Secret(env.get("MULTISTREAM_TOKEN_SECRET", "")),
            token_ttl_s=_int(env, "MULTISTREAM_TOKEN_TTL", cls.token_ttl_s, 60, 30 * 86400),
            max_body_bytes=_int(env, "MULTISTREAM_MAX_BODY", cls.max_body_bytes, 1024, 64 << 20),
            header_timeout_s=_int(env, "MULTISTREAM_HEADER_TIMEOUT", cls.header_timeout_s, 1, 3600),
            body_timeout_s=_int(env, "MULTISTREAM_BODY_TIMEOUT", cls.body_timeout_s, 1, 3600),
            metrics_token=Secret(env.get("MULTISTREAM_METRICS_TOKEN", "")),
            metrics_address=_address(env.get("MULTISTREAM_METRICS_ADDRESS", "")),
            ice_servers=_split(env.get("MULTISTREAM_ICE_SERVERS", "")),
            ice_hosts=_split(env.get("MULTISTREAM_ICE_HOSTS", "")),
            udp_ports=_port_range(env.get("MULTISTREAM_UDP_PORTS", "")),
            video_codecs=_split(env.get("MULTISTREAM_VIDEO_CODECS", "H264,VP8")),
            screen_bitrate_bps=_int(
                env, "MULTISTREAM_SCREEN_BITRATE", cls.screen_bitrate_bps, 100_000, 50_000_000
            ),
            camera_bitrate_bps=_int(
                env, "MULTISTREAM_CAMERA_BITRATE", cls.camera_bitrate_bps, 100_000, 50_000_000
            ),
            max_bitrate_bps=_int(
                env, "MULTISTREAM_MAX_BITRATE", cls.max_bitrate_bps, 100_000, 100_000_000
            ),
            record=_bool(env, "MULTISTREAM_RECORD", True),
            passthrough=_bool(env, "MULTISTREAM_PASSTHROUGH", True),
            peer_connect_timeout_s=_int(
                env, "MULTISTREAM_PEER_CONNECT_TIMEOUT", cls.peer_connect_timeout_s, 1, 600
            ),
            max_pending_peers=_int(
                env, "MULTISTREAM_MAX_PENDING_PEERS", cls.max_pending_peers, 1, 100_000
            ),
            rate_session_start=_rate(env, "MULTISTREAM_RATE_SESSION_START", cls.rate_session_start),
            rate_join=_rate(env, "MULTISTREAM_RATE_JOIN", cls.rate_join),
            rate_offer=_rate(env, "MULTISTREAM_RATE_OFFER", cls.rate_offer),
            rate_webhook=_rate(env, "MULTISTREAM_RATE_WEBHOOK", cls.rate_webhook),
            rate_login=_rate(env, "MULTISTREAM_RATE_LOGIN", cls.rate_login),
            signup=_signup(env.get("MULTISTREAM_SIGNUP", cls.signup)),
            login_ttl_s=_int(env, "MULTISTREAM_LOGIN_TTL", cls.login_ttl_s, 300, 365 * 86400),
            trusted_proxy_header=env.get("MULTISTREAM_TRUSTED_PROXY_HEADER", "").strip(),
            adaptive=_bool(env, "MULTISTREAM_ADAPTIVE", True),
            composite_budget=_int(
                env, "MULTISTREAM_COMPOSITE_BUDGET", default_composite_budget(), 1, 10_000
            ),
            composite_budget_session=_int(
                env, "MULTISTREAM_COMPOSITE_BUDGET_SESSION", 0, 0, 10_000
            ),
            pix_webhook_secret=Secret(env.get("MULTISTREAM_PIX_WEBHOOK_SECRET", "")),
            order_ttl_s=_int(env, "MULTISTREAM_ORDER_TTL", cls.order_ttl_s, 60, 7 * 86400),
            drain_deadline_s=_int(env, "MULTISTREAM_DRAIN_DEADLINE", cls.drain_deadline_s, 0, 3600),
            log_json=_bool(env, "MULTISTREAM_LOG_JSON", False),
            instance_id=env.get("MULTISTREAM_INSTANCE_ID") or uuid.uuid4().hex[:12],
            public_url=env.get("MULTISTREAM_PUBLIC_URL", ""),
            lease_ttl_s=lease[0],
            lease_heartbeat_s=lease[1],
            internal_url=_url(env, "MULTISTREAM_INTERNAL_URL"),
            relay=_bool(env, "MULTISTREAM_RELAY", bool(_url(env, "MULTISTREAM_INTERNAL_URL"))),
            relay_linger_s=_float(env, "MULTISTREAM_RELAY_LINGER", cls.relay_linger_s, 0.0, 600.0),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean) if clean else settings

    def with_secrets(self) -> Settings:
        """Fill a missing token secret from `data_dir/token.secret`, creating it on first start."""
        if self.token_secret:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "token.secret"
        if not path.exists():
            # Create with owner-only permissions before writing, so the secret is never world-readable.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return replace(self, token_secret=Secret(path.read_text().strip()))
