"""Broadcaster passwords: argon2id hashes (argon2-cffi, RFC 9106's low-memory profile).

Hashing costs ~0.2 s of CPU and 64 MiB by design, so it runs on a thread, never on the event loop.
A log-in for an unknown account still verifies against a fixed dummy hash, so the answer takes the
same time whether or not the name exists.
"""

from __future__ import annotations

import asyncio
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

PASSWORD_MIN: Final = 8
PASSWORD_MAX: Final = 256

_HASHER: Final = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4 (argon2-cffi's defaults)
_DUMMY: Final = _HASHER.hash("not the password of any account")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; a missing hash costs the same and answers False."""
    return await asyncio.to_thread(_verify, stored, password)


def needs_rehash(stored: str) -> bool:
    """True when `stored` was made with weaker parameters than today's (rehash at next log-in)."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True
