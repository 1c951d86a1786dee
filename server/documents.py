"""The shapes of the documents the services write: sessions, streams, preferences, orders, chat.

The store keeps any JSON-shaped dict (`store.protocol.Doc`); what goes into each collection is the
domain's business, so the shapes live here. Services build their documents as these `TypedDict`s, so
a misspelt or missing field is a type error where the document is made, not a `KeyError` later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, cast

from server.domain import Pip
from store.protocol import Doc


class Quality(TypedDict):
    """A stream's quality (`server.quality.validate_quality`): a preset of its kind, filled in."""

    preset: str
    width: int
    height: int
    fps: int
    content_hint: str


class SessionDoc(TypedDict):
    """`broadcast_sessions`. (`chat_muted`, and `replay_on` on others, are added by later writes.)"""

    id: str
    title: str
    status: str  # domain.SESSION_STATUSES
    created_at: str
    ended_at: str | None
    pricing: dict[str, Any]  # server.pricing.validate_pricing
    pix: dict[str, Any] | None  # key, merchant_name, merchant_city (server.payments.receiver)
    legacy: bool
    instance_id: str
    signaling_url: str
    # The broadcaster's picture-in-picture: the layout of every viewer without one of its own.
    default_pip: Pip
    # Shown on the stream list and the watch page: the owner's name unless the start named another.
    broadcaster_name: str | None
    owner_id: str  # the broadcaster's account (`users`)
    owner_name: str  # its display name when the session started (the stream list shows it)


class StreamDoc(TypedDict):
    """`broadcast_streams`: one kind of one session."""

    id: str
    session_id: str
    kind: str  # domain.STREAM_KINDS
    status: str  # domain.STREAM_STATUSES
    quality: Quality
    created_at: str
    started_at: str | None
    stopped_at: str | None


class PreferencesDoc(TypedDict):
    """`viewer_preferences`, keyed `<session_id>:<viewer_id>`."""

    id: str
    session_id: str
    viewer_id: str
    enabled_streams: list[str]
    mode: str  # domain.VIEW_MODES
    pip: Pip
    # False while `pip` follows the session's `default_pip` (the viewer never chose a layout);
    # a document without the field predates the default and keeps its layout.
    pip_custom: bool
    updated_at: str


class StoredPreferences(PreferencesDoc):
    """As written: plus the instance that must replay the write (`SessionSync`), if another."""

    replay_on: str | None


class OrderDoc(TypedDict):
    """`orders`: one PIX charge for the streams a viewer enabled."""

    id: str
    session_id: str
    viewer_id: str
    txid: str
    status: str
    amount_centavos: int
    streams: list[str]
    pix_copia_e_cola: str | None
    created_at: str
    expires_at: str
    paid_at: str | None
    end_to_end_id: str | None


class ChatMessageDoc(TypedDict):
    """`chat_messages`: ordered by `seq`; deleting sets `deleted`, never removes."""

    id: str
    session_id: str
    seq: str
    author: dict[str, Any]
    text: str
    created_at: str
    deleted: bool


def as_session(document: Doc) -> SessionDoc:
    """A stored session read back, in the shape the session service wrote it (the store checks no
    shapes; every writer of `broadcast_sessions` builds a `SessionDoc`)."""
    return cast(SessionDoc, document)


def as_stream(document: Doc) -> StreamDoc:
    """A stored stream read back, in the shape the session service wrote it."""
    return cast(StreamDoc, document)


def as_preferences(document: Doc) -> PreferencesDoc:
    """Stored preferences read back, in the shape the session service wrote them."""
    return cast(PreferencesDoc, document)


def as_doc(document: Mapping[str, Any]) -> Doc:
    """A typed document handed to code that takes any stored document (the listeners, the media
    plane): the same object, seen as the store sees it. The one cast between the two views."""
    return cast(Doc, document)
