"""Schema migrations: schema.sql is the idempotent baseline, STEPS change its shape in order.

Real deployments have data, so a table that exists is never created again: it is changed by a
numbered step, applied once per database and recorded in SchemaVersion. One node migrates at a
time (MySQL: GET_LOCK on a named lock; SQLite: BEGIN IMMEDIATE), the others wait and then find
the work done. New tables that change nothing else may still go into schema.sql with
CREATE TABLE IF NOT EXISTS. A step is one statement, written in MySQL's words (SQLite's are
derived as for schema.sql), so a step that fails half-way on MySQL, whose DDL is not
transactional, cannot have been half applied.
"""

import sqlite3
from typing import Any

from chatd.store.base import StoreUnavailable
from chatd.store.schema import mysql_statements, sqlite_statement

LOCK_NAME = "chatd_schema"
LOCK_WAIT_SECONDS = 120

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS SchemaVersion (
    version INT UNSIGNED NOT NULL PRIMARY KEY,
    applied TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""

TABLE = ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

# (version, statement). Append only; a published step never changes.
STEPS: list[tuple[int, str]] = [
    # When a member joined, as the lowest mid of that moment (chatd/mids.py): a member reads
    # a group's history from there, and the longest-standing member succeeds the creator.
    # Members from before this step have 0: they joined before any history was kept.
    (1, "ALTER TABLE GroupUser ADD COLUMN joined BIGINT UNSIGNED NOT NULL DEFAULT 0"),
    # Every accepted chat message once, under its conversation: a 1:1 message under its two
    # users (userlo < userhi, or both the same), a group message under (0, groupid). mid
    # orders it and dates it. Two secondary indexes, not three: every message pays for each.
    (2, """CREATE TABLE History (
    mid BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    userlo INT UNSIGNED NOT NULL,
    userhi INT UNSIGNED NOT NULL,
    sender INT UNSIGNED NOT NULL,
    message MEDIUMTEXT NOT NULL,
    KEY ix_history_conversation (userlo, userhi, mid),
    KEY ix_history_hi (userhi, mid)
""" + TABLE),
    # Read up to `mid`, per user and conversation (peer 0 for a group, groupid 0 for a peer).
    (3, """CREATE TABLE ReadMarker (
    userid INT UNSIGNED NOT NULL,
    groupid INT UNSIGNED NOT NULL,
    peer INT UNSIGNED NOT NULL,
    mid BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (userid, groupid, peer)
""" + TABLE),
    # userid has blocked blockedid.
    (4, """CREATE TABLE Block (
    userid INT UNSIGNED NOT NULL,
    blockedid INT UNSIGNED NOT NULL,
    PRIMARY KEY (userid, blockedid),
    KEY ix_block_blocked (blockedid)
""" + TABLE),
    # Where to push a user's device when it is away (chatd/store/push.py): a Web Push
    # endpoint and its keys, or an FCM token in `endpoint`; one per device and kind.
    (40, """CREATE TABLE PushSubscription (
    userid INT UNSIGNED NOT NULL,
    device VARCHAR(64) NOT NULL,
    kind VARCHAR(8) NOT NULL,
    endpoint TEXT NOT NULL,
    p256dh VARCHAR(128) NOT NULL,
    auth VARCHAR(64) NOT NULL,
    PRIMARY KEY (userid, device, kind)
""" + TABLE),
    # A muted conversation, keyed like ReadMarker; `mutedto` ms since the epoch, -1 for ever.
    (41, """CREATE TABLE Mute (
    userid INT UNSIGNED NOT NULL,
    groupid INT UNSIGNED NOT NULL,
    peer INT UNSIGNED NOT NULL,
    mutedto BIGINT NOT NULL,
    PRIMARY KEY (userid, groupid, peer)
""" + TABLE),
]

LATEST = STEPS[-1][0]


def _pending(applied: set[int]) -> list[tuple[int, str]]:
    return [(version, stmt) for version, stmt in STEPS if version not in applied]


def migrate_mysql(conn: Any) -> list[int]:
    """Bring a MySQL database to the latest version; return the versions applied here.

    Blocking (PyMySQL connection, autocommit off), called once before the reactor runs.
    """
    with conn.cursor() as c:
        c.execute("SELECT GET_LOCK(%s, %s)", (LOCK_NAME, LOCK_WAIT_SECONDS))
        if c.fetchone()[0] != 1:
            raise StoreUnavailable(f"another node held the schema lock for {LOCK_WAIT_SECONDS}s")
        try:
            for stmt in [*mysql_statements(), VERSION_TABLE]:
                c.execute(stmt)
            c.execute("SELECT version FROM SchemaVersion")
            done = []
            for version, stmt in _pending({int(r[0]) for r in c.fetchall()}):
                c.execute(stmt)
                c.execute("INSERT INTO SchemaVersion (version) VALUES (%s)", (version,))
                conn.commit()
                done.append(version)
            conn.commit()
            return done
        finally:
            c.execute("SELECT RELEASE_LOCK(%s)", (LOCK_NAME,))


def migrate_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Bring a SQLite database to the latest version in one transaction (SQLite's DDL is
    transactional); BEGIN IMMEDIATE makes a second process wait for the first."""
    conn.isolation_level = None
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in [*mysql_statements(), VERSION_TABLE]:
            for out in sqlite_statement(stmt):
                conn.execute(out)
        applied = {int(r[0]) for r in conn.execute("SELECT version FROM SchemaVersion")}
        done = []
        for version, stmt in _pending(applied):
            for out in sqlite_statement(stmt):
                conn.execute(out)
            conn.execute("INSERT INTO SchemaVersion (version) VALUES (?)", (version,))
            done.append(version)
        conn.execute("COMMIT")
        return done
    except BaseException:
        conn.execute("ROLLBACK")
        raise
