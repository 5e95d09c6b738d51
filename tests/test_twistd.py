"""`twistd chatd` the way a user runs it: the plugin, its options, schema creation, and one
clear line (never a traceback) when it cannot start."""

import os
import socket
import sqlite3
import subprocess
import sys

import pymysql
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import TestCase

from chatd.connections import default_max_connections, raise_file_limit
from tests.harness import connect, login, register
from tests.nodeproc import start_node
from tests.servers import mysql_database

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
TABLES = {"User", "Friend", "AllGroup", "GroupUser", "OfflineMessage", "ServerSecret",
          "TokenRevocation", "SchemaVersion", "History", "ReadMarker", "Block", "Ban",
          "Media"}


def twistd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TWISTD, "--nodaemon", "--pidfile=", "chatd", *args],
                          capture_output=True, text=True, timeout=60)


class PluginTests(TestCase):
    def test_the_plugin_is_found(self):
        names = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("chatd", names)

    def test_help_documents_every_option(self):
        result = twistd("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in ("--listen", "--db", "--redis", "--node-id", "--max-frame",
                       "--password-cost", "--idle-timeout", "--ack-timeout", "CHATD_DB",
                       "CHATD_REDIS", "--max-send-buffer", "--max-conns-per-address",
                       "--hash-wait", "--login-failures", "--address-failures",
                       "--login-backoff", "--max-registrations", "--offline-quota",
                       "--max-friends", "--max-groups-created", "--max-group-members",
                       "haproxy:", "--admin", "--admin-token-file", "--log-format",
                       "--web", "--web-origin", "--web-trusted-proxy", "--max-connections",
                       "--login-timeout", "--web-header-timeout", "--web-idle-timeout",
                       "--web-body-rate", "--web-body-window", "--web-max-request-line",
                       "--web-max-headers", "--web-max-header-size",
                       "--web-max-uploads-per-address"):
            self.assertIn(option, result.stdout)

    def assertOneLineFailure(self, result: subprocess.CompletedProcess, words: str) -> None:
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn(words, output)
        self.assertNotIn("Traceback", output)

    def test_a_bad_option_is_one_line_and_a_failure(self):
        self.assertOneLineFailure(twistd("--max-frame", "5"),
                                  "--max-frame must be between 1024 and 16777216")
        self.assertOneLineFailure(twistd("--redis", "http://x"), "--redis: not a redis://")
        self.assertOneLineFailure(twistd("--node-id", "5000"), "--node-id must be between")
        self.assertOneLineFailure(twistd("--log-format", "xml"),
                                  "--log-format must be one of text, json")

    def test_bad_admin_options_are_one_line_and_a_failure(self):
        short = self.mktemp()
        with open(short, "w") as f:
            f.write("tooshort\n")
        self.assertOneLineFailure(twistd("--admin-token-file", short),
                                  "--admin-token-file needs --admin")
        self.assertOneLineFailure(twistd("--admin", "tcp:0", "--admin-token-file", short),
                                  "the token must be one line of at least 16 characters")
        self.assertOneLineFailure(twistd("--admin", "tcp:0", "--admin-token-file", "/nonexistent"),
                                  "--admin-token-file: [Errno 2]")
        db = os.path.join(self.mktemp() + ".sqlite3")
        self.assertOneLineFailure(twistd("--db", f"sqlite:{db}", "--listen", "tcp:0",
                                         "--admin", "bogus:1"),
                                  "chatd: bad listener endpoint: --admin 'bogus:1'")

    def test_bad_web_options_are_one_line_and_a_failure(self):
        self.assertOneLineFailure(twistd("--web-origin", "chat.example"),
                                  "--web-origin: not an origin (scheme://host[:port])")
        self.assertOneLineFailure(twistd("--web", "nonsense:1", "--listen", "tcp:0"),
                                  "chatd: bad listener endpoint: --web 'nonsense:1'")
        self.assertOneLineFailure(twistd("--web-header-timeout", "0"),
                                  "--web-header-timeout must be between 1 and 300")
        self.assertOneLineFailure(twistd("--web-max-uploads-per-address", "0"),
                                  "--web-max-uploads-per-address must be between 1")

    def test_max_connections_leaves_descriptors_below_the_file_limit(self):
        """The node raises its soft file limit to the hard one; --max-connections may not
        take the descriptors kept for the store, Redis, the logs and the admin listener."""
        limit = raise_file_limit()  # the node, our child, finds the same
        self.assertOneLineFailure(twistd("--max-connections", str(limit)),
                                  "--max-connections must be between 1 and "
                                  f"{default_max_connections(limit)}")

    def test_an_unreachable_database_is_one_line_and_a_failure(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.assertOneLineFailure(
            twistd("--db", f"mysql://root@127.0.0.1:{port}/chat", "--listen", "tcp:0"),
            "chatd: cannot use MySQL database chat")
        self.assertOneLineFailure(
            twistd("--db", "postgres://x", "--listen", "tcp:0"), "chatd: database URL must be")

    def test_a_taken_port_is_one_line_and_a_failure(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            db = os.path.join(self.mktemp() + ".sqlite3")
            self.assertOneLineFailure(
                twistd("--db", f"sqlite:{db}", "--listen", f"tcp:{port}:interface=127.0.0.1"),
                f"chatd: cannot listen on tcp:{port}")
            self.assertOneLineFailure(
                twistd("--db", f"sqlite:{db}", "--listen", "tcp:0",
                       "--web", f"tcp:{port}:interface=127.0.0.1"),
                f"chatd: cannot listen on tcp:{port}")


class RunningNodeTests(TestCase):
    async def test_a_fresh_sqlite_file_gets_its_tables_and_serves(self):
        node = await start_node(self)
        tables = {r[0] for r in sqlite3.connect(node.db_path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertTrue(TABLES <= tables, tables)
        client = await connect(self, node)
        uid = await register(client, "alice")
        self.assertEqual((await login(client, uid))["name"], "alice")

    async def test_an_empty_mysql_database_gets_its_tables_and_serves(self):
        url = mysql_database()
        node = await start_node(self, "--db", url)
        await node.restart()
        host, port_db = url.split("@")[1].split(":")
        port, database = port_db.split("/")
        conn = pymysql.connect(host=host, port=int(port), user="root", database=database)
        with conn.cursor() as c:
            c.execute("SELECT table_name, table_collation FROM information_schema.tables"
                      " WHERE table_schema = %s", (database,))
            rows = dict(c.fetchall())
        conn.close()
        self.assertEqual(set(rows), TABLES)
        self.assertTrue(all(v.startswith("utf8mb4") for v in rows.values()), rows)
        client = await connect(self, node)
        uid = await register(client, "😀 bob")
        self.assertEqual((await login(client, uid))["name"], "😀 bob")
