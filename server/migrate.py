"""`multistream migrate`: turn pre-multistream `livestreams` into sessions with one camera stream.

The legacy document shape accepted (everything but `id` may be missing):

    {"id": str,                      # required: 1-200 characters
     "title": str,                   # default "Untitled livestream"; cut to 200 characters
     "status": str,                  # live|active|started|streaming|online -> session live
                                     # ended|stopped|finished|closed|offline|done|archived -> ended
                                     # failed|error -> ended, stream failed; missing -> ended
     "created_at": time,             # default: ended_at, else the time of the migration
     "ended_at": time | None,        # an ended session without one keeps ended_at null
     "price_centavos": int,          # 0..MAX_AMOUNT_CENTAVOS, default 0 -> pricing.base
     "resolution": str,              # optional camera preset name ("480p", ...), else the default
     "pix": {"key", "merchant_name", "merchant_city"}}   # optional, kept when all three are strings

where a time is an ISO-8601 string (`Z` or an offset; no offset means UTC), a datetime, or epoch
seconds (numbers above 1e11 are read as epoch milliseconds, as JavaScript clients wrote them).
In MongoDB the collection is paged by `_id`, so legacy documents must have a string `_id` equal
to `id` (or no `id`, which is then read from `_id`); ObjectId-keyed documents are not reached and the
final summary says how many were missed. A document that breaks these rules (an unknown status, a negative price, a bad time...) is skipped
and logged with its id and reason; the rest still convert.

Idempotent: the session id is the legacy id itself when it is a valid API id (`[A-Za-z0-9_-]{1,64}`,
so old clients' links keep working), otherwise a hash of it; the camera stream's id is a hash of
the legacy id. A legacy id whose session already exists is counted as already migrated and left
untouched. The stream is written before the session, so an interrupted run leaves at most a stream
that the next run overwrites with the same content.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from server.clock import iso, utc_now
from server.domain import KIND_RULES
from server.pricing import MAX_AMOUNT_CENTAVOS
from store.protocol import Doc, DuplicateKey, Store

log = logging.getLogger(__name__)

LEGACY_COLLECTION: Final = "livestreams"
DEFAULT_TITLE = "Untitled livestream"
_API_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LIVE = frozenset({"live", "active", "started", "streaming", "online"})
_ENDED = frozenset({"ended", "stopped", "finished", "closed", "offline", "done", "archived"})
_FAILED = frozenset({"failed", "error"})
_EPOCH_MS_ABOVE = 1e11  # 1e11 seconds is the year 5138; 1e11 milliseconds is 1973
_MAX_REASONS = 100


class LegacyDocError(ValueError):
    """Why one legacy document cannot be converted."""


@dataclass
class MigrationResult:
    """Counts of one run; `skipped_reasons` keeps the first reasons (all of them are logged)."""

    total: int = 0
    seen: int = 0
    converted: int = 0
    already: int = 0
    skipped: int = 0
    batches: int = 0
    skipped_reasons: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.seen} legacy livestreams read in {self.batches} batches: "
            f"{self.converted} converted, {self.already} already migrated, {self.skipped} skipped"
        )
        if self.seen < self.total:
            text += f"; {self.total - self.seen} not reachable (ids that are not strings)"
        return text


def session_id_for(legacy_id: str) -> str:
    """The legacy id itself when the API accepts it, else a stable hash of it."""
    if _API_ID.fullmatch(legacy_id):
        return legacy_id
    return "lgc_" + hashlib.sha256(f"livestreams:{legacy_id}".encode()).hexdigest()[:32]


def stream_id_for(legacy_id: str) -> str:
    return "str_lgc_" + hashlib.sha256(f"livestreams:{legacy_id}:camera".encode()).hexdigest()[:32]


def _time(value: object, name: str) -> str | None:
    """A legacy time as the store's UTC ISO string, or None when absent."""
    if value is None or value == "":
        return None
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise LegacyDocError(f"{name} is not an ISO-8601 time: {value[:40]!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise LegacyDocError(f"{name} is not a valid epoch time: {value!r}")
        seconds = value / 1000 if value > _EPOCH_MS_ABOVE else value
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise LegacyDocError(f"{name} is out of range: {value!r}") from None
    else:
        raise LegacyDocError(f"{name} has type {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment)


def _statuses(raw: object, ended_at: str | None) -> tuple[str, str]:
    """(session status, camera stream status) for a legacy status."""
    if raw is None:
        # Unknown liveness: never advertise a stream nobody may be sending as live.
        return "ended", "stopped"
    if not isinstance(raw, str):
        raise LegacyDocError(f"status has type {type(raw).__name__}")
    status = raw.strip().lower()
    if status in _LIVE and ended_at is None:
        # The old server's media is gone: the session is live, its camera waits for a publisher.
        return "live", "pending"
    if status in _LIVE or status in _ENDED:
        return "ended", "stopped"
    if status in _FAILED:
        return "ended", "failed"
    raise LegacyDocError(f"unknown status {raw[:40]!r}")


def _pix(raw: object) -> dict[str, str] | None:
    keys = ("key", "merchant_name", "merchant_city")
    if isinstance(raw, dict) and all(isinstance(raw.get(k), str) and raw[k] for k in keys):
        return {k: raw[k] for k in keys}
    return None


def convert(legacy: Doc, now: str) -> tuple[Doc, Doc]:
    """The (session, camera stream) documents for one legacy livestream; raise `LegacyDocError`."""
    legacy_id = legacy.get("id")
    if not isinstance(legacy_id, str) or not 1 <= len(legacy_id) <= 200:
        raise LegacyDocError("id is missing or not a 1-200 character string")
    title = legacy.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        title = DEFAULT_TITLE
    if not isinstance(title, str):
        raise LegacyDocError(f"title has type {type(title).__name__}")
    price = legacy.get("price_centavos")
    price = 0 if price is None else price
    if isinstance(price, bool) or not isinstance(price, int):
        raise LegacyDocError(f"price_centavos is not an integer: {price!r}")
    if not 0 <= price <= MAX_AMOUNT_CENTAVOS:
        raise LegacyDocError(f"price_centavos out of range: {price}")
    ended_at = _time(legacy.get("ended_at"), "ended_at")
    created_at = _time(legacy.get("created_at"), "created_at") or ended_at or now
    session_status, stream_status = _statuses(legacy.get("status"), ended_at)
    rules = KIND_RULES["camera"]
    resolution = legacy.get("resolution")
    preset = (
        rules.presets.get(resolution if isinstance(resolution, str) else "")
        or (rules.presets[rules.default_preset])
    )
    session_id = session_id_for(legacy_id)
    session: Doc = {
        "id": session_id,
        "title": title.strip()[:200],
        "status": session_status,
        "created_at": created_at,
        "ended_at": ended_at,
        "pricing": {
            "base": price,
            "addons": {kind: 0 for kind in KIND_RULES},
            "bundle_discount_pct": 0,
        },
        "pix": _pix(legacy.get("pix")),
        "legacy": True,
        "legacy_id": legacy_id,
        "instance_id": None,
        "signaling_url": "",
        "migrated_at": now,
    }
    stream: Doc = {
        "id": stream_id_for(legacy_id),
        "session_id": session_id,
        "kind": "camera",
        "status": stream_status,
        "quality": {
            "preset": preset.name,
            "width": preset.width,
            "height": preset.height,
            "fps": rules.default_fps,
            "content_hint": rules.default_content_hint,
        },
        "created_at": created_at,
        # When a live legacy session starts publishing again, the service stamps `started_at`.
        "started_at": None if stream_status == "pending" else created_at,
        "stopped_at": None if stream_status == "pending" else ended_at,
    }
    return session, stream


async def _migrate_one(store: Store, legacy: Doc, now: str) -> str:
    """'converted' or 'already'; raise `LegacyDocError` for a document that cannot convert."""
    session, stream = convert(legacy, now)
    existing = await store.get("broadcast_sessions", session["id"])
    if existing is not None:
        if existing.get("legacy_id") == legacy["id"]:
            return "already"
        raise LegacyDocError(f"session id {session['id']!r} is taken by a non-legacy session")
    await store.upsert("broadcast_streams", stream)
    try:
        await store.insert("broadcast_sessions", session)
    except DuplicateKey:
        # Another migrate run won the race between our `get` and `insert`.
        return "already"
    return "converted"


async def migrate_legacy(
    store: Store,
    batch_size: int = 200,
    progress: Callable[[str], object] | None = None,
) -> MigrationResult:
    """Convert every `livestreams` document not yet converted, one batch (ordered by id) at a time.

    `progress` receives one line per batch (the CLI prints them). Safe to re-run and to interrupt.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError("batch_size must be a positive integer")
    result = MigrationResult(total=await store.count(LEGACY_COLLECTION))
    now = iso(utc_now())
    last_id: str | None = None
    while True:
        batch = await store.find(
            LEGACY_COLLECTION,
            order_by="id",
            limit=batch_size,
            after=None if last_id is None else ("id", last_id),
        )
        if not batch:
            break
        result.batches += 1
        counts = {"converted": 0, "already": 0, "skipped": 0}
        for legacy in batch:
            result.seen += 1
            try:
                outcome = await _migrate_one(store, legacy, now)
            except LegacyDocError as exc:
                outcome = "skipped"
                doc_id = str(legacy.get("id"))[:80]
                log.warning("legacy livestream=%s skipped: %s", doc_id, exc)
                if len(result.skipped_reasons) < _MAX_REASONS:
                    result.skipped_reasons.append((doc_id, str(exc)))
            counts[outcome] += 1
        result.converted += counts["converted"]
        result.already += counts["already"]
        result.skipped += counts["skipped"]
        line = (
            f"batch {result.batches}: legacy livestreams {result.seen - len(batch) + 1}-"
            f"{result.seen} of {result.total}: {counts['converted']} converted, "
            f"{counts['already']} already migrated, {counts['skipped']} skipped"
        )
        if progress is not None:
            progress(line)
        else:  # with a progress callback (the CLI prints) a log line would say it twice
            log.info("migrate %s", line)
        next_id = batch[-1].get("id")
        if not isinstance(next_id, str) or len(batch) < batch_size:
            break
        last_id = next_id
    if result.seen < result.total:
        log.warning(
            "migrate: %d legacy livestreams could not be paged by id (non-string ids)",
            result.total - result.seen,
        )
    return result
