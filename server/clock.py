"""UTC time as the store keeps it: ISO-8601 strings that sort lexically in time order."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Millisecond precision, always `+00:00`, so string order is time order in both stores."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def now_iso() -> str:
    return iso(utc_now())


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)
