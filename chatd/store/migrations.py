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
    # Uploads and attachments (chatd/store/media.py): the bytes live in the media store under
    # `id`; state 0 = a slot, 1 = bytes arriving, 2 = complete. `kept` is when a message
    # last named it (ms; 0 = never: deleted a day after `created`), or KEEP_FOR_EVER.
    (10, """CREATE TABLE Media (
    id VARCHAR(32) NOT NULL PRIMARY KEY,
    owner INT UNSIGNED NOT NULL,
    name VARCHAR(255) NOT NULL,
    mime VARCHAR(127) NOT NULL,
    size BIGINT UNSIGNED NOT NULL,
    state INT UNSIGNED NOT NULL,
    created BIGINT UNSIGNED NOT NULL,
    kept BIGINT UNSIGNED NOT NULL,
    width INT UNSIGNED NOT NULL,
    height INT UNSIGNED NOT NULL,
    thumb INT UNSIGNED NOT NULL,
    KEY ix_media_owner (owner),
    KEY ix_media_kept (kept, created)
""" + TABLE),
    # SET_PROFILE's avatar: the id of one of the user's uploaded images ('' for none).
    (11, "ALTER TABLE User ADD COLUMN avatar VARCHAR(32) NOT NULL DEFAULT ''"),
    # A user's own settings (SETTINGS); NULL: the node's default (--friend-requests,
    # --discoverable), so that changing a default reaches everyone who never chose.
    (30, """CREATE TABLE UserSetting (
    userid INT UNSIGNED NOT NULL PRIMARY KEY,
    friend_requests VARCHAR(8) NULL,
    discoverable TINYINT NULL
""" + TABLE),
    # userid asked targetid to be friends at `created` (ms since the epoch); answered or
    # expired requests are deleted.
    (31, """CREATE TABLE FriendRequest (
    userid INT UNSIGNED NOT NULL,
    targetid INT UNSIGNED NOT NULL,
    created BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (userid, targetid),
    KEY ix_request_target (targetid, created)
""" + TABLE),
    # Shown at the top of the group (UPDATE_GROUP).
    (32, "ALTER TABLE AllGroup ADD COLUMN announcement VARCHAR(1000) NOT NULL DEFAULT ''"),
    # Who may join: 'open' (anyone with the id, as before) or 'invite' (JOIN_BY_INVITE).
    (33, "ALTER TABLE AllGroup ADD COLUMN joinmode VARCHAR(8) NOT NULL DEFAULT 'open'"),
    # The member's GROUP_CHAT is refused until this time (ms since the epoch; 0: never).
    (34, "ALTER TABLE GroupUser ADD COLUMN muted BIGINT UNSIGNED NOT NULL DEFAULT 0"),
    # Invite codes of groups, usable until `expires` (ms since the epoch) or revoked.
    (35, """CREATE TABLE GroupInvite (
    code VARCHAR(64) NOT NULL PRIMARY KEY,
    groupid INT UNSIGNED NOT NULL,
    expires BIGINT UNSIGNED NOT NULL,
    KEY ix_invite_group (groupid)
""" + TABLE),
    # The user's name as chatd/names.py `key` makes it, to refuse look-alike names and to find
    # users by name; NULL for users from before this step until the node fills it in.
    (36, "ALTER TABLE User ADD COLUMN namekey VARCHAR(200) NULL"),
    (37, "CREATE INDEX ix_user_namekey ON User (namekey)"),
    # SET_PROFILE's bio.
    (38, "ALTER TABLE User ADD COLUMN bio VARCHAR(500) NOT NULL DEFAULT ''"),
    # Message actions (docs/protocol.md): who reacted to a message with which emoji (up to
    # 32 bytes of UTF-8, one emoji), which mids a user hid from their own history, and which
    # were recalled by whom (the kept frame itself becomes a tombstone).
    (20, """CREATE TABLE Reaction (
    mid BIGINT UNSIGNED NOT NULL,
    userid INT UNSIGNED NOT NULL,
    emoji VARCHAR(32) NOT NULL,
    PRIMARY KEY (mid, emoji, userid)
""" + TABLE),
    (21, """CREATE TABLE Hidden (
    mid BIGINT UNSIGNED NOT NULL,
    userid INT UNSIGNED NOT NULL,
    PRIMARY KEY (mid, userid)
""" + TABLE),
    (22, """CREATE TABLE Recalled (
    mid BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    userid INT UNSIGNED NOT NULL
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
    # When the account was deleted (ms since the epoch; 0: it was not): its name stays
    # reserved for a while (chatd/store/deletion.py).
    (39, "ALTER TABLE User ADD COLUMN deleted BIGINT UNSIGNED NOT NULL DEFAULT 0"),
]

# Steps are listed by the capability that brought them; they apply in version order.
STEPS.sort(key=lambda step: step[0])

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
