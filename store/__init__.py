"""Persistence: the `Store` protocol, its SQLite and MongoDB backends, and the URL that picks one."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from store.protocol import DuplicateKey, Store

DEFAULT_MONGO_DB = "multistream"

__all__ = ["DEFAULT_MONGO_DB", "DuplicateKey", "Store", "mongo_db_name", "open_store"]


def mongo_db_name(url: str) -> str:
    """The database a MongoDB URL names in its path, or `multistream`."""
    db_name = unquote(urlsplit(url).path.lstrip("/")) or DEFAULT_MONGO_DB
    if any(ch in db_name for ch in '/\\. "$\x00'):
        raise ValueError(f"invalid MongoDB database name {db_name!r} in the store URL")
    return db_name


def open_store(url: str) -> Store:
    """Build (not yet open) the backend a store URL names.

    `sqlite:///abs/path.sqlite3` is the embedded store; `mongodb://…` and `mongodb+srv://…` use
    MongoDB, with the database from the URL path (default `multistream`). Call `await store.open()`.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        prefix = "sqlite:///"
        if not url.startswith(prefix) or len(url) == len(prefix):
            raise ValueError(f"SQLite store URLs look like sqlite:///abs/path.sqlite3, got {url!r}")
        path = Path("/" + unquote(url[len(prefix) :].split("?", 1)[0]).lstrip("/"))
        from store.sqlite import SqliteStore

        return SqliteStore(path)
    if scheme in {"mongodb", "mongodb+srv"}:
        db_name = mongo_db_name(url)
        from pymongo import AsyncMongoClient

        from store.mongo import MongoStore

        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url, tz_aware=True)
        return MongoStore(client, db_name)
    # Never echo the URL: a MongoDB URL may carry a password.
    raise ValueError(
        f"unsupported store URL scheme {scheme!r}: use sqlite:///abs/path.sqlite3 "
        "or mongodb://host/db (mongodb+srv:// also works)"
    )
