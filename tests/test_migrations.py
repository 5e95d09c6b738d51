"""Schema migrations on both dialects: a database made by the schema before migrations, with
rows in every table, is upgraded with its data intact; nodes starting together migrate once."""

import sqlite3
import threading

import pymysql
from twisted.trial.unittest import TestCase

from chatd.store import open_store
from chatd.store.migrations import LATEST, STEPS, migrate_mysql
from chatd.store.mysql import parse_mysql_url
from chatd.store.schema import mysql_statements, sqlite_statements
from tests.servers import mysql_database

HASH = "scrypt$1$8$1$c2FsdA==$aGFzaA=="

# One row in every table of the schema as it was before migrations existed.
ROWS = [
    "INSERT INTO User (id, name, password) VALUES (1, 'alice', '" + HASH + "')",
    "INSERT INTO User (id, name, password) VALUES (2, 'bob', '" + HASH + "')",
    "INSERT INTO Friend (userid, friendid) VALUES (1, 2)",
    "INSERT INTO Friend (userid, friendid) VALUES (2, 1)",
    "INSERT INTO AllGroup (id, groupname, groupdesc) VALUES (7, 'team', 'd')",
    "INSERT INTO GroupUser (groupid, userid, grouprole) VALUES (7, 1, 'creator')",
    "INSERT INTO GroupUser (groupid, userid, grouprole) VALUES (7, 2, 'normal')",
    "INSERT INTO OfflineMessage (userid, mid, message) VALUES (2, 99, '{\"msg\":\"kept\"}')",
    "INSERT INTO ServerSecret (name, secret) VALUES ('token', '" + "ab" * 32 + "')",
    "INSERT INTO TokenRevocation (userid, revoked) VALUES (1, 5000)",
]


class MigrationTests:
    """Mixed into a TestCase that makes `url` (an empty database) and `execute_old(stmts)`."""

    def old_database(self) -> str:
        url = self.url()
        self.execute_old(list(self.old_schema()) + ROWS)
        return url

    async def test_a_database_of_the_old_schema_keeps_its_data(self):
        store = open_store(self.old_database())
        self.addCleanup(store.close)
        self.assertEqual(await store.friends(1), [(2, "bob")])
        self.assertEqual(await store.friends(2), [(1, "alice")])
        user = await store.user(1)
        self.assertEqual((user.name, user.password, user.tokens_revoked), ("alice", HASH, 5000))
        welcome = await store.welcome(2, 10)
        self.assertEqual(welcome.offline, [(99, '{"msg":"kept"}')])
        self.assertEqual([(g.id, g.name, g.desc, [(m.id, m.role) for m in g.members])
                          for g in welcome.groups],
                         [(7, "team", "d", [(1, "creator"), (2, "normal")])])
        self.assertEqual(await store.secret("token"), bytes.fromhex("ab" * 32))
        self.assertEqual(self.versions(), [v for v, _ in STEPS])
        self.assertEqual(self.query("SELECT userid, joined FROM GroupUser ORDER BY userid"),
                         [(1, 0), (2, 0)])

    async def test_an_old_groups_creator_is_its_owner_and_nothing_else_changed(self):
        """Groups with roles (steps 30-35): the stored 'creator' is the owner; the new
        settings, mutes and announcements start empty, every group open."""
        store = open_store(self.old_database())
        self.addCleanup(store.close)
        self.assertEqual(await store.moderators(7), {1: "creator"})
        self.assertEqual(await store.members_and_mutes(7), ({1, 2}, {}))
        group = (await store.welcome(2, 10)).groups[0]
        self.assertEqual((group.announcement, group.join), ("", "open"))
        settings = await store.settings(1)
        self.assertEqual((settings.friend_requests, settings.discoverable), (None, None))

    async def test_starting_again_applies_nothing_and_keeps_new_rows(self):
        url = self.old_database()
        open_store(url).close()
        self.execute_old(["INSERT INTO Block (userid, blockedid) VALUES (1, 2)"])
        open_store(url).close()
        self.assertEqual(self.versions(), [v for v, _ in STEPS])
        self.assertEqual(self.query("SELECT userid, blockedid FROM Block"), [(1, 2)])

    def test_a_new_database_gets_every_step(self):
        self.url()
        open_store(self.database_url).close()
        self.assertEqual(self.versions()[-1], LATEST)

    def versions(self) -> list[int]:
        return [r[0] for r in self.query("SELECT version FROM SchemaVersion ORDER BY version")]


class SQLiteMigrations(MigrationTests, TestCase):

    def url(self) -> str:
        self.path = self.mktemp() + ".sqlite3"
        self.database_url = f"sqlite:{self.path}"
        return self.database_url

    def old_schema(self) -> list[str]:
        return sqlite_statements()

    def execute_old(self, statements: list[str]) -> None:
        conn = sqlite3.connect(self.path)
        with conn:
            for stmt in statements:
                conn.execute(stmt)
        conn.close()

    def query(self, sql: str) -> list[tuple]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


class MySQLMigrations(MigrationTests, TestCase):

    def url(self) -> str:
        self.database_url = mysql_database()
        return self.database_url

    def old_schema(self) -> list[str]:
        return mysql_statements()

    def connect(self):
        conn = pymysql.connect(**parse_mysql_url(self.database_url), autocommit=True)
        self.addCleanup(conn.close)
        return conn

    def execute_old(self, statements: list[str]) -> None:
        with self.connect().cursor() as c:
            for stmt in statements:
                c.execute(stmt)

    def query(self, sql: str) -> list[tuple]:
        with self.connect().cursor() as c:
            c.execute(sql)
            return [tuple(r) for r in c.fetchall()]

    def test_nodes_starting_together_migrate_once(self):
        """Four nodes start at once on an old database: the lock lets one apply the steps;
        the others wait for it and find nothing left to do."""
        self.old_database()
        applied: list[list[int]] = []
        errors: list[BaseException] = []

        def start() -> None:
            conn = pymysql.connect(**parse_mysql_url(self.database_url))
            try:
                applied.append(migrate_mysql(conn))
            except BaseException as e:
                errors.append(e)
            finally:
                conn.close()
        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(applied), [[], [], [], [v for v, _ in STEPS]])
        self.assertEqual(self.versions(), [v for v, _ in STEPS])
