"""Broadcast sessions, their streams and each viewer's preferences: the control plane's one service.

Handlers call exactly one method here per request. The service validates what it is given, writes the
store, and then tells its listeners (media plane, chat, payments) what changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from server import pricing
from server.auth import Claims, TokenService
from server.clock import now_iso
from server.cursor import decode as decode_cursor
from server.cursor import encode as encode_cursor
from server.documents import (
    PreferencesDoc,
    SessionDoc,
    StoredPreferences,
    StreamDoc,
    as_doc,
    as_session,
    as_stream,
)
from server.domain import (
    DEFAULT_VIEW_MODE,
    PIP_CORNERS,
    PIP_SIZE_MAX,
    PIP_SIZE_MIN,
    STREAM_KINDS,
    VIEW_MODES,
    Pip,
    default_pip,
)
from server.entitlement import Entitlement
from server.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable
from server.events import SessionEvents
from server.ids import new_id
from server.presence import Presence
from server.quality import validate_quality
from server.settings import Settings
from server.validation import (
    check_id,
    get_enum,
    get_int,
    get_kinds,
    get_object,
    get_str,
    only_fields,
)
from store.protocol import Doc, Store

log = logging.getLogger(__name__)

_ACTIVE = ("pending", "live")
# A display name for the session's broadcaster (as long as a chat name).
BROADCASTER_NAME_MAX = 40


class Payments(Protocol):
    """What the session service needs from payments (wired when the payment service exists)."""

    def validate_receiver(self, raw: object) -> dict[str, Any]: ...

    async def order_for(
        self, session: Doc, viewer_id: str, enabled: list[str], quote: dict[str, Any]
    ) -> dict[str, Any] | None: ...

    async def require_entitled(
        self, session: Doc, viewer_id: str, kinds: Iterable[str]
    ) -> None: ...

    async def balance(
        self, session: Doc, viewer_id: str, payment: dict[str, Any] | None
    ) -> dict[str, int]: ...


class Owners(Protocol):
    """What the session service needs from the ownership leases (`server.ownership`)."""

    async def claim(self, session_id: str) -> dict[str, Any]: ...

    async def describe(self, session_id: str) -> dict[str, Any] | None: ...


class Relays(Protocol):
    """What the session service needs from the viewer assignment (`server.assignment`)."""

    async def describe(self, session_id: str) -> dict[str, Any]: ...


class Draining(Protocol):
    """Lets the service refuse new work while the process drains."""

    @property
    def draining(self) -> bool: ...


def public_session(
    session: Mapping[str, Any], streams: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The session as clients see it: its own fields plus its streams."""
    out = {k: v for k, v in session.items() if k not in ("pix", "replay_on")}
    if session.get("pix"):
        pix = session["pix"]
        # The receiver's key is public on every PIX code anyway; name and city identify the payee.
        out["pix"] = {k: pix[k] for k in ("key", "merchant_name", "merchant_city") if k in pix}
    out["streams"] = [public_stream(s) for s in streams]
    return out


def public_stream(stream: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: stream.get(k)
        for k in ("id", "session_id", "kind", "status", "quality", "started_at", "stopped_at")
    }


class SessionService:
    """Creates and controls sessions and streams; stores and quotes viewer preferences."""

    def __init__(
        self,
        store: Store,
        tokens: TokenService,
        presence: Presence,
        settings: Settings,
        drain: Draining | None = None,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.presence = presence
        self.settings = settings
        self.drain = drain
        self.payments: Payments | None = None
        self.ownership: Owners | None = None
        self.assignment: Relays | None = None
        # The one media authorisation rule (signaling here, recordings in the media library).
        self.entitlement = Entitlement(self)
        self._listeners: list[SessionEvents] = []

    def add_listener(self, listener: SessionEvents) -> None:
        self._listeners.append(listener)

    # -- reading -------------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> Doc:
        check_id(session_id, "session")
        session = await self.store.get("broadcast_sessions", session_id)
        if session is None:
            raise NotFound("session not found", code="session_not_found")
        return session

    async def get_stream(self, stream_id: str) -> Doc:
        check_id(stream_id, "stream")
        stream = await self.store.get("broadcast_streams", stream_id)
        if stream is None:
            raise NotFound("stream not found", code="stream_not_found")
        return stream

    async def streams_of(self, session_id: str) -> list[Doc]:
        streams = await self.store.find("broadcast_streams", {"session_id": session_id}, limit=16)
        order = {kind: i for i, kind in enumerate(STREAM_KINDS)}
        return sorted(streams, key=lambda s: order.get(s["kind"], 99))

    async def status(self, session_id: str) -> dict[str, Any]:
        session = await self.get_session(session_id)
        streams = await self.streams_of(session_id)
        return {
            "session": public_session(session, streams),
            "streams": [public_stream(s) for s in streams],
            "viewer_count": self.presence.count(session_id),
            "price_list": pricing.price_list(session["pricing"]),
            "signaling_url": self._signaling_url(session),
            "owner": (
                await self.ownership.describe(session_id)
                if self.ownership is not None and session["status"] == "live"
                else None
            ),
            **(
                {"relay": await self.assignment.describe(session_id)}
                if self.assignment is not None
                and self.settings.relay
                and session["status"] == "live"
                else {}
            ),
        }

    async def live_sessions(
        self, limit: object = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of live sessions, newest first, and the cursor of the next page (or None).

        Keyset pagination on (created_at, id): every live session is reachable however many are
        created meanwhile, which an "only the newest 100" list could not promise.
        """
        size = _page_size(limit)
        page: list[Doc] = []
        live = {"status": "live"}
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor, 2)
            # Same timestamp, smaller id; then strictly older (the store has no OR).
            page = await self.store.find(
                "broadcast_sessions",
                {**live, "created_at": created_at},
                order_by="id",
                descending=True,
                before=("id", last_id),
                limit=size + 1,
            )
            before: tuple[str, str] | None = ("created_at", created_at)
        else:
            before = None
        if len(page) <= size:
            page += await self.store.find(
                "broadcast_sessions",
                live,
                order_by="created_at",
                descending=True,
                before=before,
                limit=size + 1 - len(page),
            )
        more = len(page) > size
        page = page[:size]
        out = []
        for session in page:
            item = public_session(session, await self.streams_of(session["id"]))
            item["viewer_count"] = self.presence.count(session["id"])
            item["price_list"] = pricing.price_list(session["pricing"])
            out.append(item)
        last = page[-1] if page else None
        return {
            "sessions": out,
            "next": encode_cursor(last["created_at"], last["id"]) if more and last else None,
        }

    def _signaling_url(self, session: Doc) -> str:
        # Media for a session stays on the instance that ingests it; clients signal there.
        return str(session.get("signaling_url") or "")

    # -- broadcaster ---------------------------------------------------------------------------

    def _refuse_if_draining(self) -> None:
        if self.drain is not None and self.drain.draining:
            raise Unavailable("server is draining; try another instance", code="draining")

    async def start_session(
        self, body: dict[str, Any], *, owner: Doc, legacy: bool = False
    ) -> dict[str, Any]:
        """Start a session for the broadcaster account `owner`."""
        self._refuse_if_draining()
        only_fields(
            body,
            ("title", "streams", "pricing", "quality", "pix", "default_pip", "broadcaster_name"),
        )
        title = get_str(body, "title", max_len=200, default="Untitled session")
        default = _read_pip(get_object(body, "default_pip"), default_pip(), "default_pip")
        # The name viewers see: the account's, unless this session is presented under another.
        broadcaster_name = get_str(
            body, "broadcaster_name", max_len=BROADCASTER_NAME_MAX, default=None
        )
        owner_name = owner.get("display_name") or owner["username"]
        kinds = get_kinds(body, "streams", STREAM_KINDS, allow_empty=False) or list(STREAM_KINDS)
        price = pricing.validate_pricing(body.get("pricing"))
        quality_raw = get_object(body, "quality") or {}
        only_fields(quality_raw, STREAM_KINDS, "quality")
        extra = set(quality_raw) - set(kinds)
        if extra:
            raise Invalid(f"quality given for streams not started: {', '.join(sorted(extra))}")
        pix = self._validate_receiver(body.get("pix"))
        if pix is None and not pricing.is_free(price):
            raise Invalid(
                "a priced session needs a pix receiver (key, merchant_name, merchant_city)",
                code="pix_required",
            )

        now = now_iso()
        session_id = new_id("ses")
        session: SessionDoc = {
            "id": session_id,
            "title": title,
            "status": "live",
            "created_at": now,
            "ended_at": None,
            "pricing": price,
            "pix": pix,
            "legacy": legacy,
            "instance_id": self.settings.instance_id,
            "signaling_url": self.settings.public_url,
            "default_pip": default,
            "broadcaster_name": broadcaster_name or owner_name,
            "owner_id": owner["id"],
            "owner_name": owner_name,
        }
        streams = [self._new_stream(session_id, kind, quality_raw.get(kind), now) for kind in kinds]
        await self.store.insert("broadcast_sessions", session)
        for stream in streams:
            await self.store.insert("broadcast_streams", stream)
        if self.ownership is not None:
            await self.ownership.claim(session_id)  # the starting instance serves its media
        log.info("session=%s started streams=%s owner=%s", session_id, ",".join(kinds), owner["id"])
        return {
            "session": public_session(session, streams),
            "broadcaster_token": self.tokens.issue_broadcaster(session_id),
        }

    def _new_stream(self, session_id: str, kind: str, quality: object, now: str) -> StreamDoc:
        return {
            "id": new_id("str"),
            "session_id": session_id,
            "kind": kind,
            "status": "pending",
            "quality": validate_quality(kind, quality),
            "created_at": now,
            "started_at": None,
            "stopped_at": None,
        }

    def _validate_receiver(self, raw: object) -> dict[str, Any] | None:
        if raw is None:
            return None
        if self.payments is not None:
            return self.payments.validate_receiver(raw)
        if not isinstance(raw, dict):
            raise Invalid("pix must be an object")
        only_fields(raw, ("key", "merchant_name", "merchant_city"), "pix")
        return {
            "key": get_str(raw, "key", where="pix", max_len=77),
            "merchant_name": get_str(raw, "merchant_name", where="pix", max_len=25),
            "merchant_city": get_str(raw, "merchant_city", where="pix", max_len=15),
        }

    async def _own_live_session(self, claims: Claims, session_id: str) -> Doc:
        session = await self.get_session(session_id)
        if claims.role != "broadcaster" or claims.session_id != session_id:
            raise Forbidden("only this session's broadcaster may do that")
        if session["status"] != "live":
            raise Conflict("session has ended", code="session_ended")
        return session

    async def start_stream(self, claims: Claims, session_id: str, kind: str) -> dict[str, Any]:
        """(Re)open one stream for publishing while the others go on; idempotent."""
        self._refuse_if_draining()
        _check_kind(kind)
        session = await self._own_live_session(claims, session_id)
        stream = next((s for s in await self.streams_of(session_id) if s["kind"] == kind), None)
        if stream is None:
            # A session may add a kind it did not start with (e.g. the camera joins later).
            created = self._new_stream(session["id"], kind, None, now_iso())
            await self.store.insert("broadcast_streams", created)
            stream = as_doc(created)
        elif stream["status"] not in _ACTIVE:
            updated = await self.store.update(
                "broadcast_streams",
                stream["id"],
                {"status": "pending", "stopped_at": None, "replay_on": self._replay_on(session)},
                expect={"status": stream["status"]},
            )
            if updated is None:
                raise Conflict("stream changed concurrently; retry", code="concurrent_update")
            stream = updated
        else:
            return public_stream(stream)
        log.info("session=%s stream=%s kind=%s start", session_id, stream["id"], kind)
        for listener in self._listeners:
            await listener.stream_started(as_stream(stream))
        return public_stream(stream)

    async def stop_stream(self, claims: Claims, session_id: str, kind: str) -> dict[str, Any]:
        """Stop one stream; viewers of the others are not disturbed. Idempotent."""
        _check_kind(kind)
        session = await self._own_live_session(claims, session_id)
        stream = next((s for s in await self.streams_of(session_id) if s["kind"] == kind), None)
        if stream is None:
            raise NotFound(f"session has no {kind} stream", code="stream_not_found")
        if stream["status"] in _ACTIVE:
            updated = await self.store.update(
                "broadcast_streams",
                stream["id"],
                {
                    "status": "stopped",
                    "stopped_at": now_iso(),
                    "replay_on": self._replay_on(session),
                },
                expect={"status": stream["status"]},
            )
            stream = updated or await self.get_stream(stream["id"])
            log.info("session=%s stream=%s kind=%s stop", session_id, stream["id"], kind)
            for listener in self._listeners:
                await listener.stream_stopped(as_stream(stream))
        return public_stream(stream)

    async def active_stream(self, session_id: str, kind: str) -> Doc | None:
        """The session's stream of `kind` while it is pending or live, else None."""
        for stream in await self.streams_of(session_id):
            if stream["kind"] == kind and stream["status"] in _ACTIVE:
                return stream
        return None

    async def mark_stream(
        self, stream_id: str, status: str, expect_any: tuple[str, ...]
    ) -> Doc | None:
        """Record what the media plane saw of a stream's publisher (`live` once media flows,
        `stopped`/`failed` when it goes), if the stream is still in one of `expect_any`. The
        session service is the one writer of stream status; None when nothing changed hands."""
        stream = await self.store.get("broadcast_streams", stream_id)
        if stream is None or stream["status"] not in expect_any:
            return None
        fields: dict[str, Any] = {"status": status}
        if status == "live" and stream["status"] != "live":
            fields["started_at"] = now_iso()
        if status in ("stopped", "failed"):
            fields["stopped_at"] = now_iso()
        updated = await self.store.update(
            "broadcast_streams", stream_id, fields, expect={"status": stream["status"]}
        )
        if updated is not None and stream["status"] != status:
            log.info(
                "session=%s stream=%s status %s -> %s",
                stream["session_id"],
                stream_id,
                stream["status"],
                status,
            )
        return updated

    async def release_streams(self) -> int:
        """Drain: streams this instance ingested go back to `pending`. Their media is gone, the
        session is not, and a publisher may reconnect (after a restart, or through another
        instance). Answers how many were released."""
        released = 0
        sessions = await self.store.find(
            "broadcast_sessions",
            {"status": "live", "instance_id": self.settings.instance_id},
            limit=1000,
        )
        for session in sessions:
            streams = await self.store.find(
                "broadcast_streams", {"session_id": session["id"], "status": "live"}, limit=10
            )
            for stream in streams:
                updated = await self.store.update(
                    "broadcast_streams",
                    stream["id"],
                    {"status": "pending"},
                    expect={"status": "live"},
                )
                if updated is not None:
                    released += 1
                    log.info("session=%s stream=%s released by drain", session["id"], stream["id"])
        return released

    async def end_session(self, claims: Claims, session_id: str) -> dict[str, Any]:
        """End the session and every stream in it. Ending twice answers the ended session."""
        session = await self.get_session(session_id)
        if claims.role != "broadcaster" or claims.session_id != session_id:
            raise Forbidden("only this session's broadcaster may end it")
        return await self.end(session)

    async def end(self, session: Doc) -> dict[str, Any]:
        """End without an authorisation check: used by `end_session`, drain and the CLI."""
        now = now_iso()
        replay_on = self._replay_on(session)
        if session["status"] == "live":
            updated = await self.store.update(
                "broadcast_sessions",
                session["id"],
                {"status": "ended", "ended_at": now, "replay_on": replay_on},
                expect={"status": "live"},
            )
            session = updated or await self.get_session(session["id"])
        streams = await self.streams_of(session["id"])
        for i, stream in enumerate(streams):
            if stream["status"] in _ACTIVE:
                streams[i] = (
                    await self.store.update(
                        "broadcast_streams",
                        stream["id"],
                        {"status": "stopped", "stopped_at": now, "replay_on": replay_on},
                    )
                    or stream
                )
        log.info("session=%s ended", session["id"])
        for listener in self._listeners:
            await listener.session_ended(as_session(session))
        return {"session": public_session(session, streams)}

    async def set_default_layout(
        self, claims: Claims, session_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """The broadcaster moves its picture-in-picture: the session's default changes, and so
        does the layout of every viewer still on the default (their composites move live: each
        viewer's preferences change, which the media plane follows as for any layout change)."""
        session = await self._own_live_session(claims, session_id)
        only_fields(body, ("pip",))
        pip = _read_pip(get_object(body, "pip"), session_pip(session), "pip")
        if pip != session_pip(session):
            session = (
                await self.store.update("broadcast_sessions", session_id, {"default_pip": pip})
                or session
            )
            moved = 0
            async for prefs in self._default_layout_viewers(session_id):
                updated: StoredPreferences = {
                    **prefs,  # type: ignore[typeddict-item]
                    "pip": pip,
                    "updated_at": now_iso(),
                    "replay_on": self._replay_on(session),
                }
                await self.store.upsert("viewer_preferences", updated)
                for listener in self._listeners:
                    await listener.preferences_changed(updated)
                moved += 1
            log.info(
                "session=%s default layout %s %d%% (%d viewers follow)",
                session_id,
                pip["corner"],
                pip["size_pct"],
                moved,
            )
        return {"default_pip": dict(pip)}

    async def _default_layout_viewers(self, session_id: str) -> Any:
        """Every stored preference of the session that still follows the broadcaster's layout."""
        last: str | None = None
        while True:
            page = await self.store.find(
                "viewer_preferences",
                {"session_id": session_id},
                order_by="viewer_id",
                after=("viewer_id", last) if last is not None else None,
                limit=500,
            )
            for prefs in page:
                if prefs.get("pip_custom") is False:
                    yield prefs
            if len(page) < 500:
                return
            last = page[-1]["viewer_id"]

    # -- viewers -------------------------------------------------------------------------------

    def default_preferences(
        self, session: Doc, viewer_id: str, streams: list[Doc]
    ) -> PreferencesDoc:
        return {
            "id": f"{session['id']}:{viewer_id}",
            "session_id": session["id"],
            "viewer_id": viewer_id,
            "enabled_streams": [s["kind"] for s in streams if s["status"] in _ACTIVE],
            "mode": DEFAULT_VIEW_MODE,
            "pip": session_pip(session),
            "pip_custom": False,
            "updated_at": now_iso(),
        }

    def _replay_on(self, session: Doc) -> str | None:
        """The instance that must replay a preferences write (`SessionSync`): the session's owner
        when this write happens elsewhere, else None. The owner then queries only the writes meant
        for it, so its poll costs nothing however many preferences it writes itself."""
        owner = session.get("instance_id")
        return owner if owner and owner != self.settings.instance_id else None

    async def preferences_for(
        self, session_id: str, viewer_id: str, session: Doc | None = None
    ) -> Doc:
        prefs = await self.store.get("viewer_preferences", f"{session_id}:{viewer_id}")
        if prefs is None:
            session = session or await self.get_session(session_id)
            return as_doc(
                self.default_preferences(session, viewer_id, await self.streams_of(session_id))
            )
        return prefs

    async def join(self, session_id: str, token: str | None) -> dict[str, Any]:
        """Admit a viewer; a viewer presenting its earlier token of this session is the same viewer."""
        self._refuse_if_draining()
        session = await self.get_session(session_id)
        if session["status"] != "live":
            raise Conflict("session has ended", code="session_ended")
        viewer_id = None
        if token:
            # Expired-but-authentic tokens still identify the viewer so its layout comes back.
            claims = self.tokens.verify(token, allow_expired=True)
            if claims.role == "viewer" and claims.session_id == session_id:
                viewer_id = claims.viewer_id
        is_new = viewer_id is None
        viewer_id = viewer_id or new_id("vwr")
        streams = await self.streams_of(session_id)
        # A new viewer's id was drawn just now: it has no saved preferences to read.
        prefs = (
            None
            if is_new
            else await self.store.get("viewer_preferences", f"{session_id}:{viewer_id}")
        )
        if prefs is None:
            fresh: StoredPreferences = {
                **self.default_preferences(session, viewer_id, streams),
                "replay_on": self._replay_on(session),
            }
            await self.store.upsert("viewer_preferences", fresh)
            prefs = as_doc(fresh)
            # Announced like any change, so other instances' sync sees it as local, not remote.
            for listener in self._listeners:
                await listener.preferences_changed(fresh)
        log.info("session=%s viewer=%s join new=%s", session_id, viewer_id, is_new)
        answer = {
            "viewer_id": viewer_id,
            "viewer_token": self.tokens.issue_viewer(session_id, viewer_id),
            "preferences": public_preferences(prefs),
            "quote": pricing.quote(session["pricing"], prefs["enabled_streams"]),
            "signaling_url": self._signaling_url(session),
        }
        await self._attach_payment(answer, session, viewer_id, prefs)
        return answer

    def _viewer_of(self, claims: Claims, session_id: str) -> str:
        if claims.session_id != session_id:
            raise Forbidden("token belongs to another session")
        if claims.role != "viewer" or claims.viewer_id is None:
            raise Forbidden("a viewer token is required")
        return claims.viewer_id

    async def get_preferences(self, claims: Claims, session_id: str) -> dict[str, Any]:
        viewer_id = self._viewer_of(claims, session_id)
        session = await self.get_session(session_id)
        prefs = await self.preferences_for(session_id, viewer_id, session)
        return {
            "preferences": public_preferences(prefs),
            "quote": pricing.quote(session["pricing"], prefs["enabled_streams"]),
        }

    async def put_preferences(
        self, claims: Claims, session_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Validate and save a viewer's layout; fields left out keep their saved values."""
        viewer_id = self._viewer_of(claims, session_id)
        session = await self.get_session(session_id)
        if session["status"] != "live":
            raise Conflict("session has ended", code="session_ended")
        only_fields(body, ("enabled_streams", "mode", "pip", "pip_custom"))
        streams = await self.streams_of(session_id)
        current = await self.preferences_for(session_id, viewer_id, session)
        session_kinds = [s["kind"] for s in streams]
        enabled = get_kinds(body, "enabled_streams", STREAM_KINDS)
        if enabled is not None:
            missing = [k for k in enabled if k not in session_kinds]
            if missing:
                raise Invalid(f"session has no {', '.join(missing)} stream", code="unknown_stream")
        mode = get_enum(body, "mode", VIEW_MODES, default=current["mode"])
        pip = _read_pip(get_object(body, "pip"), current["pip"], "pip")
        # A layout the viewer sets is its own; `pip_custom: false` goes back to the broadcaster's.
        custom = bool(current.get("pip_custom", True)) or "pip" in body
        if body.get("pip_custom") is False:
            custom, pip = False, session_pip(session)
        elif body.get("pip_custom") is True:
            custom = True
        prefs: StoredPreferences = {
            "id": f"{session_id}:{viewer_id}",
            "session_id": session_id,
            "viewer_id": viewer_id,
            "enabled_streams": current["enabled_streams"] if enabled is None else enabled,
            "mode": mode,
            "pip": pip,
            "pip_custom": custom,
            "updated_at": now_iso(),
            "replay_on": self._replay_on(session),
        }
        await self.store.upsert("viewer_preferences", prefs)
        for listener in self._listeners:
            await listener.preferences_changed(prefs)
        answer = {
            "preferences": public_preferences(prefs),
            "quote": pricing.quote(session["pricing"], prefs["enabled_streams"]),
        }
        await self._attach_payment(answer, session, viewer_id, as_doc(prefs))
        return answer

    async def _attach_payment(
        self, answer: dict[str, Any], session: Doc, viewer_id: str, prefs: Doc
    ) -> None:
        if self.payments is None or pricing.is_free(session["pricing"]):
            return
        payment = await self.payments.order_for(
            session, viewer_id, list(prefs["enabled_streams"]), answer["quote"]
        )
        if payment is not None:
            answer["payment"] = payment
        answer["balance"] = await self.payments.balance(session, viewer_id, payment)

    # -- signaling authorisation -----------------------------------------------------------------

    async def authorize_publish(self, claims: Claims, stream_id: str) -> tuple[Doc, Doc]:
        """A broadcaster may publish only its own session's streams, while they are open."""
        stream = await self.get_stream(stream_id)
        if claims.role != "broadcaster":
            raise Forbidden("only the broadcaster may publish", code="not_publisher")
        if claims.session_id != stream["session_id"]:
            raise Forbidden("token belongs to another session")
        session = await self.get_session(stream["session_id"])
        if session["status"] != "live":
            raise Conflict("session has ended", code="session_ended")
        if stream["status"] not in _ACTIVE:
            raise Conflict(f"stream is {stream['status']}; start it first", code="stream_not_open")
        return session, stream

    async def authorize_subscribe(self, claims: Claims, stream_id: str) -> tuple[Doc, Doc, Doc]:
        """A viewer may subscribe only to a stream of its session that its preferences enable."""
        stream = await self.get_stream(stream_id)
        self._viewer_of(claims, stream["session_id"])
        session = await self.get_session(stream["session_id"])
        if session["status"] != "live":
            raise Conflict("session has ended", code="session_ended")
        prefs = await self.entitlement.require(claims, session, [stream["kind"]])
        assert prefs is not None  # a viewer's token (checked above)
        return session, stream, prefs

    async def authorize_composite(self, claims: Claims, session_id: str) -> tuple[Doc, Doc]:
        self._viewer_of(claims, session_id)
        session = await self.get_session(session_id)
        if session["status"] != "live":
            raise Conflict("session has ended", code="session_ended")
        prefs = await self.entitlement.require_enabled(claims, session)
        assert prefs is not None  # a viewer's token (checked above)
        return session, prefs

    async def owner_claims(self, user: Doc, session_id: str) -> Claims:
        """The broadcaster's claims on a session its account owns (API token, log-in), else 403."""
        session = await self.get_session(session_id)
        if session.get("owner_id") != user["id"]:
            raise Forbidden("this session belongs to another broadcaster", code="not_owner")
        expires = int(time.time()) + self.settings.token_ttl_s
        return Claims(role="broadcaster", session_id=session_id, viewer_id=None, expires_at=expires)

    def verify(self, token: str | None) -> Claims:
        if not token:
            raise Unauthorized("missing bearer token", code="missing_token")
        return self.tokens.verify(token)


def public_preferences(prefs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "enabled_streams": list(prefs["enabled_streams"]),
        "mode": prefs["mode"],
        "pip": dict(prefs["pip"]),
        "pip_custom": bool(prefs.get("pip_custom", True)),
        "updated_at": prefs.get("updated_at"),
    }


def session_pip(session: Mapping[str, Any]) -> Pip:
    """The broadcaster's layout (sessions from before it existed: the product default)."""
    pip = session.get("default_pip") or default_pip()
    return {"corner": str(pip["corner"]), "size_pct": int(pip["size_pct"])}


def _read_pip(raw: dict[str, Any] | None, current: Mapping[str, Any], where: str) -> Pip:
    """A picture-in-picture choice; fields left out keep `current`."""
    pip: Pip = {"corner": str(current["corner"]), "size_pct": int(current["size_pct"])}
    if raw is not None:
        only_fields(raw, ("corner", "size_pct"), where)
        pip["corner"] = get_enum(raw, "corner", PIP_CORNERS, where=where, default=pip["corner"])
        pip["size_pct"] = get_int(
            raw, "size_pct", PIP_SIZE_MIN, PIP_SIZE_MAX, where=where, default=pip["size_pct"]
        )
    return pip


MAX_PAGE = 100


def _page_size(raw: object) -> int:
    """`?limit=`: 1..100, default 100 (the size of the list before it was paginated)."""
    if raw is None:
        return MAX_PAGE
    # ASCII digits only: `int()` would also take " 5", "+5", "5_0" and other scripts' digits.
    if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 6):
        raise Invalid("limit must be an integer", code="invalid_limit")
    size = int(raw)
    if not 1 <= size <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", code="invalid_limit")
    return size


def _check_kind(kind: str) -> None:
    if kind not in STREAM_KINDS:
        raise NotFound(f"no stream kind {kind[:20]!r}", code="stream_not_found")
