"""Logging setup: plain or JSON lines, ids as fields, and no token or secret ever written out.

Redaction happens twice on purpose: a filter rewrites each record's message (so every handler, even
one a test attaches, sees the clean text), and the formatters redact the final line again (exception
text and fields formatted later cannot slip through). Tornado's default access log prints the URI,
which carries `access_token` on WebSocket upgrades; `make_log_function` replaces it with a line that
logs the path without its query and the route pattern instead.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any, Protocol

import tornado.web

from server.settings import Settings

REDACTED = "[REDACTED]"
_MARK = "_multistream_handler"

# Order matters: the JSON-key and query forms keep their key, the bare JWT form catches the rest.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"(?i)\b(basic)\s+[A-Za-z0-9+/=]{8,}"), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"(?i)(\"[\w-]*(?:token|secret|password|passwd|api_?key|signature|authorization)\""
            r"\s*:\s*\")[^\"]*\""
        ),
        rf'\1{REDACTED}"',
    ),
    (
        re.compile(
            r"(?i)(['\"]?[\w-]*(?:token|secret|password|passwd|api_?key|signature)['\"]?\s*[=:]\s*)"
            r"['\"]?[^&\s\"',;)}\]]+"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s/]+@"), rf"\1{REDACTED}@"),
)
# Every pattern above needs one of these substrings (case-folded). Most lines, the access log's
# above all, hold none, and skip the patterns: the backtracking `[\w-]*` ones cost ~0.3 ms a line.
_TRIGGERS = (
    "bearer",
    "basic",
    "token",
    "secret",
    "passw",
    "apikey",
    "api_key",
    "signature",
    "authorization",
    "eyj",
    "://",
)
# Ids services put in their messages (`session=%s stream=%s`) become JSON fields.
_ID_IN_MESSAGE = re.compile(r"\b(session|stream|viewer|pc|order|instance)=([A-Za-z0-9_.:-]+)")
_ID_FIELDS = ("session", "stream", "viewer", "pc", "order", "instance")
# Ids in API paths (`/session/<id>/…`, `/stream/<id>/…`) for access lines of positional routes.
_ID_IN_PATH = re.compile(r"/(session|stream)/([A-Za-z0-9_-]{1,64})(?=/|$)")
# Extra attributes a caller may pass with `extra=` that are copied into JSON lines.
_EXTRA_FIELDS = (*_ID_FIELDS, "route", "method", "path", "status", "duration_ms", "remote_ip")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with bearer tokens, JWTs, credential parameters and known secrets removed."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    if not _may_hold_secret(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _may_hold_secret(text: str) -> bool:
    """Whether any of `_PATTERNS` could match: a few substring tests instead of six regex scans."""
    folded = text.casefold()
    if not text.isascii():
        # `(?i)` equates dotless ı with i too (casefold already maps İ, ſ and the Kelvin sign).
        folded = folded.replace("\u0131", "i")
    return any(word in folded for word in _TRIGGERS)


def _secrets_of(settings: Settings) -> tuple[str, ...]:
    values = [settings.token_secret.reveal(), settings.pix_webhook_secret.reveal()]
    if settings.store_url:
        match = re.search(r"://[^:/@\s]+:([^@\s/]+)@", settings.store_url)
        if match:
            values.append(match.group(1))
    # Very short values would blank out ordinary words; the patterns still cover their usual forms.
    return tuple(v for v in values if len(v) >= 8)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and exception text with secrets and tokens removed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message, self._secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True


def _iso_utc(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then ids and request fields when present."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, Any] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        for key, value in _ID_IN_MESSAGE.findall(message):
            line.setdefault(key, value)
        for key in _EXTRA_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return redact(json.dumps(line, default=str, ensure_ascii=False), self._secrets)


class PlainFormatter(logging.Formatter):
    """Human-readable lines with UTC timestamps, redacted like the JSON ones."""

    converter = time.gmtime  # type: ignore[assignment]  # UTC timestamps

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def setup_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing an earlier one from here) and return it."""
    secrets = _secrets_of(settings)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if settings.log_json else PlainFormatter(secrets))
    handler.addFilter(RedactingFilter(secrets))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if settings.debug else logging.INFO)
    # aioice/aiortc log every STUN check at INFO; keep their warnings, not their chatter.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if settings.debug else logging.WARNING)
    return handler


class RequestObserver(Protocol):
    """Receives one observation per finished request (the metrics' latency histogram)."""

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None: ...


def route_label(pattern: str) -> str:
    """`/session/(?P<session_id>[^/]+)/status$` → `/session/{session_id}/status` (a bounded label)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(pattern[i + 1])
            i += 2
            continue
        if char == "(":
            depth, j = 1, i + 1
            while j < len(pattern) and depth:
                if pattern[j] == "\\":
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(pattern[j], 0)
                j += 1
            name = re.match(r"\(\?P<(\w+)>", pattern[i:j])
            out.append("{" + (name.group(1) if name else "") + "}")
            i = j
            continue
        if char not in "^$":
            out.append(char)
        i += 1
    return "".join(out)


def make_log_function(
    observer: RequestObserver | None = None,
) -> Callable[[tornado.web.RequestHandler], None]:
    """Tornado `log_function`: one access line per request, path without query, latency observed.

    The route label is the matched URL pattern (never the raw path, whose ids would make unbounded
    metric labels); requests no route matched are labelled `unmatched`.
    """
    access = logging.getLogger("tornado.access")
    labels: dict[type, list[tuple[Any, str]]] = {}

    def route_of(handler: tornado.web.RequestHandler) -> str:
        cls = type(handler)
        if cls not in labels:
            rules = getattr(handler.application.wildcard_router, "rules", [])
            labels[cls] = [
                (rule.matcher, rule.name or route_label(rule.matcher.regex.pattern))
                for rule in rules
                if rule.target is cls and hasattr(rule.matcher, "regex")
            ]
        candidates = labels[cls]
        if len(candidates) == 1:
            return candidates[0][1]
        for matcher, label in candidates:
            if matcher.match(handler.request) is not None:
                return str(label)
        return "unmatched"

    def log_request(handler: tornado.web.RequestHandler) -> None:
        request = handler.request
        status = handler.get_status()
        seconds = request.request_time()
        route = route_of(handler)
        if observer is not None:
            observer.observe_request(route, request.method or "", status, seconds)
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        # Unset when Tornado refused the method before routing arguments were decoded (405).
        kwargs = getattr(handler, "path_kwargs", None) or {}
        ids = dict(_ID_IN_PATH.findall(request.path))
        extra = {
            "route": route,
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "remote_ip": request.remote_ip,
            "session": kwargs.get("session_id") or ids.get("session"),
            "stream": kwargs.get("stream_id") or ids.get("stream"),
        }
        access.log(
            level,
            "%d %s %s %.2fms",
            status,
            request.method,
            request.path,
            seconds * 1000,
            extra=extra,
        )

    return log_request
