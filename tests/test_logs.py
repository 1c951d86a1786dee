"""Log formatting and redaction: JSON lines with ids, and no token or secret in any output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from server.logs import REDACTED, JsonFormatter, RedactingFilter, redact, route_label, setup_logging
from server.settings import Secret, Settings

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoidmlld2VyIiwic2lkIjoic2VzXzEifQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        (f"GET /stream/s1/signal/ws?access_token={JWT}&x=1", JWT),
        ("GET /ws?access_token=opaque-token-value-123 (127.0.0.1)", "opaque-token-value-123"),
        (f"headers={{'Authorization': 'Bearer {JWT}'}}", JWT),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        (f'{{"viewer_token": "{JWT}"}}', JWT),
        ('{"broadcaster_token":"not-a-jwt-but-secret"}', "not-a-jwt-but-secret"),
        (f"token {JWT} in prose", JWT),
        ("store mongodb://app:s3cr3t-pass@db-0:27017/x?replicaSet=rs0", "s3cr3t-pass"),
        ("webhook secret=hunter2hunter2 rejected", "hunter2hunter2"),
    ],
)
def test_redact_removes_tokens_and_credentials(text: str, leak: str) -> None:
    out = redact(text)
    assert leak not in out
    assert REDACTED in out


def test_redact_removes_known_secret_values_and_keeps_ordinary_text() -> None:
    assert redact("value is ZmFrZS1zZWNyZXQ", ["ZmFrZS1zZWNyZXQ"]) == f"value is {REDACTED}"
    plain = "session=ses_abc stream=str_1 viewer=vwr_9 joined; 3 tokens issued"
    assert redact(plain) == plain
    # The query value goes, the parameter name and the rest of the query stay.
    assert redact("/ws?access_token=abc123xyz&mode=x") == f"/ws?access_token={REDACTED}&mode=x"


@pytest.mark.parametrize(
    "text",
    [
        "200 GET /api/v1/livestream/session/ses_abc/status 1.20ms",
        "passwd=hunter2hunter2",
        "api_key: 'k-12345678'",
        "x-apikey=k-12345678",
        "BASIC dXNlcjpwYXNzd29yZA==",
        "sıgnature=abcdef012345",  # dotless i: `(?i)` matches it with i
        "ſecret=abcdef012345",  # long s
        "toKen=abcdef012345",  # Kelvin sign
        "AUTHORIZATION: Bearer x.y.z",
        f"prose {JWT} prose",
        "https://user:pw-123456@host/x",
    ],
)
def test_redact_fast_path_agrees_with_every_pattern(text: str) -> None:
    """Lines skipped by the cheap pre-check are exactly those no redaction pattern changes."""
    from server.logs import _PATTERNS

    slow = text
    for pattern, replacement in _PATTERNS:
        slow = pattern.sub(replacement, slow)
    assert redact(text) == slow


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("multistream.test", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_ts_level_logger_msg_and_ids() -> None:
    formatter = JsonFormatter()
    line = formatter.format(_record("session=%s stream=%s state=%s", "ses_1", "str_2", "connected"))
    doc = json.loads(line)
    assert doc["level"] == "INFO" and doc["logger"] == "multistream.test"
    assert doc["msg"] == "session=ses_1 stream=str_2 state=connected"
    assert doc["session"] == "ses_1" and doc["stream"] == "str_2"
    assert doc["ts"].endswith("Z") and doc["ts"][10] == "T"
    extra = json.loads(formatter.format(_record("ice failed", session="ses_9", pc="pc_3")))
    assert extra["session"] == "ses_9" and extra["pc"] == "pc_3"


def test_filter_redacts_messages_args_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(["the-token-secret-value"]))
    logger = logging.getLogger("multistream.test.redaction")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("uri=%s", f"/x?access_token={JWT}")
        try:
            raise ValueError("bad signature for the-token-secret-value")
        except ValueError:
            logger.exception("verify failed with Bearer %s", JWT)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert JWT not in out and "the-token-secret-value" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    assert "ValueError" in lines[1]["exc"] and REDACTED in lines[1]["exc"]


def test_setup_logging_installs_one_redacting_handler(tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        log_json=True,
        token_secret=Secret("token-secret-" + "q" * 20),
        pix_webhook_secret=Secret("webhook-secret-" + "w" * 20),
        store_url="mongodb://user:mongo-password-1@127.0.0.1:1/db",
    )
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    stream = io.StringIO()
    try:
        setup_logging(settings, stream)
        handler = setup_logging(settings, stream)  # idempotent: replaces, never stacks
        ours = [h for h in root.handlers if h not in before]
        assert ours == [handler]
        logging.getLogger("multistream.x").info(
            "secrets %s %s %s",
            settings.token_secret.reveal(),
            settings.pix_webhook_secret.reveal(),
            "mongo-password-1",
        )
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
        root.setLevel(level)
    out = stream.getvalue()
    assert out.count(REDACTED) == 3, out
    assert "token-secret-" not in out and "webhook-secret-" not in out and "mongo-pass" not in out


@pytest.mark.parametrize(
    ("pattern", "label"),
    [
        (r"/api/v1/livestream/session/([^/]+)/status$", "/api/v1/livestream/session/{}/status"),
        (r"/s/(?P<session_id>[^/]+)/x/(screen|camera)$", "/s/{session_id}/x/{}"),
        (r"/a/((?:b|c)+)/d\.json$", "/a/{}/d.json"),
        (r"/healthz$", "/healthz"),
    ],
)
def test_route_label_replaces_groups(pattern: str, label: str) -> None:
    assert route_label(pattern) == label
