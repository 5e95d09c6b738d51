"""The embedded default store: one SQLite file, one connection, zero set-up."""

import sqlite3

from twisted.enterprise import adbapi

from chatd.store.base import StoreUnavailable
from chatd.store.migrations import migrate_sqlite

MIGRATION_WAIT_SECONDS = 120


def _open(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=5000")


class SQLiteDialect:
    """sqlite3 behind adbapi with a single connection (cp_min = cp_max = 1)."""

    name = "sqlite"
    inline_rows = False
    for_update = ""
    insert_ignore = "INSERT OR IGNORE"
    lost_connection: tuple[type[Exception], ...] = ()
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: str) -> None:
        self.path = path

    def sql(self, text: str) -> str:
        return text

    def make_pool(self) -> adbapi.ConnectionPool:
        return adbapi.ConnectionPool(
            "sqlite3", self.path, check_same_thread=False,
            cp_min=1, cp_max=1, cp_openfun=_open)

    def revive(self, cursor: object) -> None:
        return None

    def create_schema(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=MIGRATION_WAIT_SECONDS)
            try:
                migrate_sqlite(conn)
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {e}") from e
