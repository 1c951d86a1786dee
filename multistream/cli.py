"""The `multistream` command: `serve` runs the server, `migrate` converts legacy documents, `users`
manages broadcaster accounts, `orders` settles payments by hand."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multistream.app import listen, make_app, make_http_server, make_metrics_app
from server.lifespan import open_services
from server.settings import Settings, split_address

log = logging.getLogger("multistream")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "store_url": getattr(args, "store", None),
        "data_dir": Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        "ice_hosts": tuple(args.ice_hosts.split(",")) if getattr(args, "ice_hosts", None) else None,
        "allowed_origins": tuple(args.allowed_origins.split(","))
        if getattr(args, "allowed_origins", None)
        else None,
        "ice_servers": _csv(getattr(args, "ice_servers", None)),
        "udp_ports": _ports(getattr(args, "udp_ports", None)),
        "video_codecs": _csv(getattr(args, "video_codecs", None)),
        "screen_bitrate_bps": getattr(args, "screen_bitrate", None),
        "camera_bitrate_bps": getattr(args, "camera_bitrate", None),
        "max_bitrate_bps": getattr(args, "max_bitrate", None),
        "record": False if getattr(args, "no_record", False) else None,
        "passthrough": False if getattr(args, "no_passthrough", False) else None,
        "debug": True if getattr(args, "debug", False) else None,
        "log_json": True if getattr(args, "log_json", False) else None,
    }
    return Settings.from_env(**overrides)


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(p.strip() for p in value.split(",") if p.strip()) if value else None


def _ports(value: str | None) -> tuple[int, int] | None:
    from server.settings import _port_range

    return _port_range(value) if value else None


def _setup_logging(settings: Settings) -> None:
    try:
        from server.logs import setup_logging  # structured logs, when present
    except ImportError:
        logging.basicConfig(
            level=logging.DEBUG if settings.debug else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    else:
        setup_logging(settings)


async def serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with open_services(settings) as services:
        drain = services.drain

        def on_signal(sig: signal.Signals) -> None:
            # Readiness and new sessions turn 503 at once; a second signal skips the deadline.
            log.info("signal=%s instance=%s", sig.name, settings.instance_id)
            drain.begin()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        app = make_app(services.settings, services)
        server = make_http_server(app, services.settings)
        metrics_server = None
        if settings.metrics_address:
            metrics_host, metrics_port = split_address(settings.metrics_address)
            metrics_server = make_http_server(
                make_metrics_app(services.settings, services), services.settings
            )
            bound = listen(metrics_server, metrics_port, metrics_host)
            log.info("metrics on http://%s:%d/metrics", metrics_host, bound)
        port = listen(server, settings.port, settings.host)
        services.ownership.bind(port)
        log.info(
            "listening on http://%s:%d/ instance=%s", settings.host, port, settings.instance_id
        )
        if settings.signup != "closed" and not await services.accounts.any_user():
            # Zero-setup: the first visitor creates the broadcaster account from the web page.
            log.info(
                "no broadcaster account yet: open http://%s:%d/login to create the first one "
                "(or run: multistream users add NAME)",
                settings.host,
                port,
            )
        await stop.wait()
        log.info("shutting down instance=%s", settings.instance_id)
        await drain.run(services, server)
        if metrics_server is not None:
            metrics_server.stop()
    drain.mark("exit")
    return 0


async def migrate(settings: Settings, batch_size: int) -> int:
    from server.migrate import migrate_legacy

    async with open_services(settings) as services:
        result = await migrate_legacy(services.store, batch_size=batch_size, progress=print)
    print(f"done: {result}")
    return 0


async def orders_mark_paid(settings: Settings, txid: str) -> int:
    """Operator override: mark the order with this txid paid (demos, payments settled by hand)."""
    from server.errors import DomainError

    async with open_services(settings) as services:
        try:
            order = await services.payments.mark_paid(txid)
        except DomainError as exc:
            print(f"multistream: {exc.message}", file=sys.stderr)
            return 1
    print(
        f"order {order['id']} txid={order['txid']} status={order['status']} "
        f"amount_centavos={order['amount_centavos']} streams={','.join(order['streams'])}"
    )
    return 0


async def users(settings: Settings, args: argparse.Namespace) -> int:
    """`multistream users add|list|disable|enable|token`: the operator's side of accounts."""
    from server.accounts import public_user
    from server.errors import DomainError

    async with open_services(settings) as services:
        accounts = services.accounts
        try:
            if args.users_command == "add":
                password = _password(args)
                user = await accounts.create_user(args.username, password, args.display_name)
                kind = "password" if password else "token-only"
                print(f"added {user['username']} id={user['id']} ({kind})")
            elif args.users_command == "list":
                for user in await accounts.list_users():
                    shown = public_user(user)
                    state = "disabled" if shown["disabled"] else "active"
                    print(
                        f"{shown['username']}\t{shown['id']}\t{state}\t{shown['created_at']}\t"
                        f"{shown['display_name']}"
                    )
            elif args.users_command in ("disable", "enable"):
                disabled = args.users_command == "disable"
                user = await accounts.set_disabled(args.username, disabled)
                print(f"{user['username']} {'disabled' if disabled else 'enabled'}")
            elif args.users_command == "token":
                user = await accounts.by_username(args.username)
                _, secret = await accounts.issue_token(user, args.name)
                print(secret)  # alone on stdout, for scripts: TOKEN=$(multistream users token ana)
        except DomainError as exc:
            print(f"multistream: {exc.message}", file=sys.stderr)
            return 1
    return 0


def _password(args: argparse.Namespace) -> str | None:
    """From `--password-stdin` (scripts), a prompt (people), or none (`--no-password`)."""
    if args.no_password:
        return None
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("multistream: the passwords differ")
    return first


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multistream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve_p = sub.add_parser("serve", help="run the HTTP/WebSocket/WebRTC server")
    serve_p.add_argument("--host", help="bind address (default 127.0.0.1; MULTISTREAM_HOST)")
    serve_p.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    serve_p.add_argument(
        "--store",
        help="store URL: sqlite:///path or mongodb://... (default: "
        "embedded SQLite in the data dir)",
    )
    serve_p.add_argument("--data-dir", help="data directory (default ./data)")
    serve_p.add_argument("--ice-hosts", help="comma-separated ICE host addresses (e.g. 127.0.0.1)")
    serve_p.add_argument("--allowed-origins", help="comma-separated CORS origins")
    # Media plane (each also a MULTISTREAM_* variable; see server/settings.py).
    serve_p.add_argument("--ice-servers", help="comma-separated stun:/turn: URLs (default none)")
    serve_p.add_argument("--udp-ports", help="UDP port range for media, e.g. 40000-40100")
    serve_p.add_argument("--video-codecs", help="preference order, e.g. H264,VP8")
    serve_p.add_argument("--screen-bitrate", type=int, help="screen output bitrate (bps)")
    serve_p.add_argument("--camera-bitrate", type=int, help="camera output bitrate (bps)")
    serve_p.add_argument("--max-bitrate", type=int, help="ceiling for any video output (bps)")
    serve_p.add_argument("--no-record", action="store_true", help="do not record live streams")
    serve_p.add_argument(
        "--no-passthrough",
        action="store_true",
        help="encode every output on the server instead of forwarding the publisher's packets",
    )
    serve_p.add_argument(
        "--debug", action="store_true", help="Tornado debug mode (never in production)"
    )
    serve_p.add_argument("--log-json", action="store_true", help="structured JSON logs")

    mig = sub.add_parser("migrate", help="convert legacy livestreams into broadcast sessions")
    mig.add_argument("--store", help="store URL (default: the embedded SQLite store)")
    mig.add_argument("--data-dir", help="data directory (default ./data)")
    mig.add_argument("--batch-size", type=int, default=500)

    orders = sub.add_parser("orders", help="operate on payment orders")
    orders_sub = orders.add_subparsers(dest="orders_command", required=True)
    paid = orders_sub.add_parser("mark-paid", help="mark the order with this PIX txid as paid")
    paid.add_argument("txid")
    paid.add_argument("--store", help="store URL (default: the embedded SQLite store)")
    paid.add_argument("--data-dir", help="data directory (default ./data)")

    users_p = sub.add_parser("users", help="broadcaster accounts")
    users_sub = users_p.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser(
        "add", help="create an account (any time, whatever MULTISTREAM_SIGNUP)"
    )
    add.add_argument("username")
    add.add_argument("--display-name")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    how.add_argument(
        "--no-password", action="store_true", help="token-only account (scripts, OBS): no log-in"
    )
    users_sub.add_parser("list", help="every account: name, id, state, created, display name")
    for name, text in (("disable", "refuse its log-ins and tokens"), ("enable", "undo disable")):
        one = users_sub.add_parser(name, help=text)
        one.add_argument("username")
    tok = users_sub.add_parser("token", help="print a new API token for the account")
    tok.add_argument("username")
    tok.add_argument("--name", default="CLI token", help="a label shown on the dashboard")
    for p in users_sub.choices.values():
        p.add_argument("--store", help="store URL (default: the embedded SQLite store)")
        p.add_argument("--data-dir", help="data directory (default ./data)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"multistream: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings)
    if args.command == "serve":
        return asyncio.run(serve(settings))
    if args.command == "migrate":
        return asyncio.run(migrate(settings, args.batch_size))
    if args.command == "users":
        return asyncio.run(users(settings, args))
    if args.command == "orders" and args.orders_command == "mark-paid":
        return asyncio.run(orders_mark_paid(settings, args.txid))
    return 2


if __name__ == "__main__":
    sys.exit(main())
