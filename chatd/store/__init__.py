"""Storage of users, friends, groups and offline messages: MySQL in production, SQLite alone."""

from chatd.metrics import Stats
from chatd.store.base import (
    GroupRecord,
    JoinRefused,
    Member,
    NameTaken,
    Store,
    StoreUnavailable,
    Unread,
    UserDetails,
    UserRecord,
)
from chatd.store.mysql import MySQLDialect
from chatd.store.sqlite import SQLiteDialect

__all__ = ["GroupRecord", "JoinRefused", "Member", "NameTaken", "Store", "StoreUnavailable",
           "Unread", "UserDetails", "UserRecord", "open_store"]


def open_store(url: str, stats: Stats | None = None) -> Store:
    """Create the schema if needed (blocking, before the reactor runs) and return the store.

    `sqlite:PATH` or `mysql://user:pass@host:port/db`; raises ValueError for anything else and
    StoreUnavailable when the database cannot be used.
    """
    if url.startswith("sqlite:"):
        dialect: SQLiteDialect | MySQLDialect = SQLiteDialect(url[len("sqlite:"):])
    elif url.startswith("mysql://"):
        dialect = MySQLDialect(url)
    else:
        raise ValueError(f"database URL must be sqlite:PATH or mysql://...: {url}")
    dialect.create_schema()
    return Store(dialect, stats)
