"""Throwaway servers for integration tests (chatd.devservers), with the test policy: under
CI=true a server that cannot be started fails the test; elsewhere the test is skipped with
the reason. The shared MariaDB is started once per test process and stopped at exit, or
found through CHATD_TEST_MYSQL_URL."""

import atexit
import os
from typing import Any

from twisted.trial.unittest import FailTest, SkipTest

from chatd.devservers import S3, MariaDB, Nginx, Redis, RedisHA, create_database, free_port

__all__ = ["free_port", "mysql_database", "private_mariadb", "start_nginx", "start_redis",
           "start_redis_ha", "start_s3", "unavailable"]


def unavailable(reason: str) -> Exception:
    """Fail under CI (a missing server is a broken machine there), skip elsewhere."""
    return FailTest(reason) if os.environ.get("CI") == "true" else SkipTest(reason)


def _started(server: Any, what: str) -> Any:
    """`server` started, or destroyed and the test failed (CI) or skipped."""
    try:
        server.start()
    except (RuntimeError, OSError) as e:
        server.destroy()
        raise unavailable(f"cannot start a private {what}: {e}") from None
    return server


def private_mariadb() -> MariaDB:
    """A MariaDB of the caller's own (to stop and restart); the caller destroys it."""
    return _started(MariaDB(), "MariaDB")


def start_redis() -> Redis:
    return _started(Redis(), "Redis")


def start_s3() -> S3:
    """moto's S3 server with an empty bucket; the caller destroys it."""
    return _started(S3(), "S3 server (moto)")


def start_redis_ha(down_after_ms: int = 1000) -> RedisHA:
    """A master, a replica and three sentinels; the caller destroys them."""
    return _started(RedisHA(down_after_ms), "Redis with sentinels")


def start_nginx(node_ports: list[int], proxy_protocol: bool = False,
                web_ports: list[int] | None = None) -> Nginx:
    """nginx in front of nodes; with `proxy_protocol` they must listen through haproxy:."""
    return _started(Nginx(node_ports, proxy_protocol=proxy_protocol, web_ports=web_ports),
                    "nginx")


_shared: dict[str, object] = {}


def _server_url() -> str:
    """URL of the shared MariaDB: CHATD_TEST_MYSQL_URL, or a private one started on demand."""
    given = os.environ.get("CHATD_TEST_MYSQL_URL")
    if given:
        return given
    if "error" in _shared:
        raise unavailable(str(_shared["error"]))
    if "server" not in _shared:
        try:
            server = private_mariadb()
        except (FailTest, SkipTest) as e:
            _shared["error"] = str(e)
            raise
        atexit.register(server.destroy)
        _shared["server"] = server
    return _shared["server"].url  # type: ignore[attr-defined]


def mysql_database(server_url: str | None = None) -> str:
    """A new, empty database on the shared MariaDB (or on `server_url`); its mysql:// URL."""
    return create_database(server_url or _server_url())
