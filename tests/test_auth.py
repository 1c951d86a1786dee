"""Tokens: signed, expiring, typed; forged or wrong-key tokens are refused."""

from __future__ import annotations

import time

import jwt
import pytest

from server.auth import TokenService
from server.errors import Unauthorized
from server.settings import Secret

SVC = TokenService(Secret("k" * 40), ttl_s=60)


def test_round_trip() -> None:
    c = SVC.verify(SVC.issue_viewer("ses_1", "vwr_1"))
    assert (c.role, c.session_id, c.viewer_id) == ("viewer", "ses_1", "vwr_1")
    b = SVC.verify(SVC.issue_broadcaster("ses_1"))
    assert (b.role, b.viewer_id) == ("broadcaster", None)


def test_wrong_key_and_garbage_rejected() -> None:
    other = TokenService(Secret("z" * 40), ttl_s=60)
    for token in (other.issue_broadcaster("ses_1"), "abc", "a.b.c", "", "x" * 5000):
        with pytest.raises(Unauthorized):
            SVC.verify(token)


def test_alg_none_and_tampered_claims_rejected() -> None:
    forged = jwt.encode(
        {
            "role": "broadcaster",
            "sid": "ses_1",
            "iss": "multistream",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        key="",
        algorithm="none",
    )
    with pytest.raises(Unauthorized):
        SVC.verify(forged)
    bad_role = jwt.encode(
        {
            "role": "admin",
            "sid": "ses_1",
            "iss": "multistream",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        "k" * 40,
        algorithm="HS256",
    )
    with pytest.raises(Unauthorized):
        SVC.verify(bad_role)


def test_expired() -> None:
    short = TokenService(Secret("k" * 40), ttl_s=-10)
    token = short.issue_viewer("ses_1", "vwr_1")
    with pytest.raises(Unauthorized) as exc:
        SVC.verify(token)
    assert exc.value.code == "token_expired"
    assert SVC.verify(token, allow_expired=True).viewer_id == "vwr_1"


def test_remembered_token_still_expires(monkeypatch) -> None:
    """A token verified once is answered from memory, with the same time checks as PyJWT's."""
    svc = TokenService(Secret("k" * 40), ttl_s=60)
    token = svc.issue_viewer("ses_1", "vwr_1")
    issued = time.time()
    assert svc.verify(token).viewer_id == "vwr_1"
    assert svc.verify(token).viewer_id == "vwr_1"  # remembered
    monkeypatch.setattr(time, "time", lambda: issued + 120)
    with pytest.raises(Unauthorized) as exc:
        svc.verify(token)
    assert exc.value.code == "token_expired"
    assert svc.verify(token, allow_expired=True).viewer_id == "vwr_1"


def test_remembered_tokens_are_bounded() -> None:
    from server import auth

    svc = TokenService(Secret("k" * 40), ttl_s=60)
    tokens = [svc.issue_viewer("ses_1", f"vwr_{i}") for i in range(auth._VERIFIED_MAX + 10)]
    for token in tokens:
        svc.verify(token)
    assert len(svc._verified) == auth._VERIFIED_MAX
    assert svc.verify(tokens[0]).viewer_id == "vwr_0"  # forgotten, verified again


def test_empty_secret_refused() -> None:
    with pytest.raises(ValueError):
        TokenService(Secret(""), ttl_s=60)
