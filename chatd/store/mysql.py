"""The production store: MySQL or MariaDB through PyMySQL, utf8mb4, reconnecting pool."""

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
from twisted.enterprise import adbapi

from chatd.store.base import StoreUnavailable
from chatd.store.migrations import LOCK_WAIT_SECONDS, migrate_mysql

POOL_MIN = 2
POOL_MAX = 8


def parse_mysql_url(url: str) -> dict[str, object]:
    """`mysql://user:pass@host:port/db?unix_socket=PATH` to PyMySQL connect arguments."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    if parts.scheme != "mysql" or not database:
        raise ValueError(f"not a mysql://user:pass@host:port/database URL: {url}")
    args: dict[str, object] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": database,
    }
    socket = parse_qs(parts.query).get("unix_socket")
    if socket:
        args["unix_socket"] = socket[0]
    return args


class MySQLDialect:
    """PyMySQL with `%s` placeholders; lost connections are retried once by the Store."""

    name = "mysql"
    inline_rows = True
    for_update = " FOR UPDATE"
    insert_ignore = "INSERT IGNORE"
    lost_connection = (pymysql.err.OperationalError, pymysql.err.InterfaceError)
    integrity_error = pymysql.err.IntegrityError

    def __init__(self, url: str) -> None:
        self.url = url
        self.connect_args = {
            **parse_mysql_url(url),
            "charset": "utf8mb4",
            "autocommit": False,
            "connect_timeout": 5,
            "read_timeout": 30,
            "write_timeout": 30,
        }

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def make_pool(self) -> adbapi.ConnectionPool:
        return adbapi.ConnectionPool(
            "pymysql", cp_reconnect=True, cp_min=POOL_MIN, cp_max=POOL_MAX,
            **self.connect_args)

    def revive(self, cursor: Any) -> None:
        cursor.connection.ping(reconnect=True)

    def create_schema(self) -> None:
        try:
            # a node waiting for another's migration must not time out its own connection
            conn = pymysql.connect(**{**self.connect_args,
                                      "read_timeout": LOCK_WAIT_SECONDS + 60})
            try:
                migrate_mysql(conn)
            finally:
                conn.close()
        except pymysql.err.Error as e:
            where = f"{self.connect_args['host']}:{self.connect_args['port']}"
            raise StoreUnavailable(
                f"cannot use MySQL database {self.connect_args['database']} at {where}: {e}"
            ) from e
