"""Throwaway MariaDB, Redis and nginx processes in temporary directories, on free loopback
ports: for the integration tests and for `make cluster`. Never the machine's own services.
Failing to start raises RuntimeError with the server's own words."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymysql

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not accept connections on {port} in {timeout:.0f}s")


def _binary(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if path:
            return path
    return None


class MariaDB:
    """A private mariadbd: own datadir, socket and port, no grant tables, nothing durable."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="chatd-mariadb-")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.dir, "mariadbd.log")

    def start(self) -> None:
        server = _binary("mariadbd", "mysqld")
        install = _binary("mariadb-install-db", "mysql_install_db")
        if not server or not install:
            raise RuntimeError("mariadbd is not installed (apt-get install mariadb-server)")
        datadir = os.path.join(self.dir, "data")
        if not os.path.isdir(datadir):
            subprocess.run(
                [install, "--no-defaults", f"--datadir={datadir}", "--user=root",
                 "--auth-root-authentication-method=normal", "--skip-test-db"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)
        self.proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={datadir}", f"--port={self.port}",
             f"--socket={self.dir}/sock", "--bind-address=127.0.0.1", "--user=root",
             "--skip-grant-tables", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
             "--innodb-flush-log-at-trx-commit=2", "--max-connections=1000",
             f"--log-error={self.log_path}", f"--pid-file={self.dir}/pid"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, self.proc, START_TIMEOUT, "mariadbd")
        except RuntimeError as e:
            raise RuntimeError(f"{e}; log: {self.log_tail()}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/mysql"


def create_database(server_url: str) -> str:
    """A new, empty database on the server; returns its mysql:// URL."""
    parts = urlsplit(server_url)
    database = f"chatd_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host=parts.hostname, port=parts.port or 3306,
                           user=parts.username or "root", password=parts.password or "")
    try:
        with conn.cursor() as c:
            c.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()
    return urlunsplit(parts._replace(path=f"/{database}"))


class Redis:
    """A private redis-server on a fixed free port; restartable on the same port. With
    `replica_of`, a replica of the server on that port."""

    def __init__(self, replica_of: int | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="chatd-redis-")
        self.port = free_port()
        self.replica_of = replica_of
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = _binary("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        replica = ["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile",
             os.path.join(self.dir, "redis.log"), *replica],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_redis(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class S3:
    """A private S3-compatible server (moto's standalone server, `moto[server]`) on a free
    port, with one bucket; the test credentials go in the environment boto3 reads."""

    BUCKET = "chatd-media"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The --media-store URL of its bucket."""
        return f"s3://{self.BUCKET}?endpoint={self.endpoint}&region=us-east-1"

    def start(self) -> None:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "chatd-test")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "chatd-test")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc, START_TIMEOUT, "moto_server")
        import boto3
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1"
                     ).create_bucket(Bucket=self.BUCKET)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()


def wait_for_redis(port: int, proc: subprocess.Popen, what: str) -> None:
    """Wait until `proc` answers on `port`. A free port may be taken by another process
    between finding it and binding it (other test runs start Redis servers too): the server
    that answers must say it is `proc`."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} (port {port} "
                               "taken?)")
        try:
            info = redis_command(port, "INFO", "server")
        except OSError:
            info = None
        if isinstance(info, bytes) and b"process_id:%d\r\n" % proc.pid in info:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on {port} in {START_TIMEOUT:.0f}s")


def redis_command(port: int, *args: str | int) -> object:
    """One command to the Redis server (or sentinel) on a loopback port, and its reply:
    bytes, int, a list, or a RedisError."""
    request = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in (str(arg).encode() for arg in args))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        return _reply(conn.makefile("rb"))


class RedisError(Exception):
    """An error reply."""


def _reply(stream: Any) -> object:
    line = stream.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return None if rest == b"-1" else stream.read(int(rest) + 2)[:-2]
    if kind == b"*":
        return None if rest == b"-1" else [_reply(stream) for _ in range(int(rest))]
    raise RuntimeError(f"not a Redis reply: {line!r}")


SERVICE = "chatd"


class Sentinel:
    """A private `redis-server FILE --sentinel` watching the master of SERVICE on
    `master_port`, with its own directory and config file (the sentinel rewrites it as the
    master moves). Quorum 2 of the three a RedisHA runs."""

    def __init__(self, master_port: int, down_after_ms: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="chatd-sentinel-")
        self.port = free_port()
        self.master_port = master_port
        self.down_after_ms = down_after_ms
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = _binary("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"logfile {os.path.join(self.dir, 'sentinel.log')}\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {SERVICE} {max(3000, 3 * self.down_after_ms)}\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n")
        self.proc = subprocess.Popen([binary, conf, "--sentinel"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        wait_for_redis(self.port, self.proc, "redis sentinel")

    def master(self) -> tuple[str, int]:
        """Where this sentinel says the master is."""
        reply = redis_command(self.port, "SENTINEL", "get-master-addr-by-name", SERVICE)
        if not isinstance(reply, list) or len(reply) != 2:
            raise RuntimeError(f"sentinel {self.port} names no master: {reply!r}")
        return reply[0].decode(), int(reply[1])

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisHA:
    """A master, a replica and three sentinels (quorum 2), each a private process:
    what `--redis sentinel://...` points at. `down_after_ms`: how long the master may be
    silent before the sentinels fail over."""

    def __init__(self, down_after_ms: int = 1000) -> None:
        self.servers = [Redis()]
        self.servers.append(Redis(replica_of=self.servers[0].port))
        self.sentinels = [Sentinel(self.servers[0].port, down_after_ms) for _ in range(3)]

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"sentinel://{hosts}/{SERVICE}/{db}"

    def start(self) -> None:
        """Start everything; return once the replica is in sync and every sentinel knows the
        replica and the other two sentinels (what a failover needs)."""
        for server in self.servers:
            server.start()
        self._until(lambda: b"master_link_status:up" in _info(self.servers[1].port),
                    "the replica to sync")
        for sentinel in self.sentinels:
            sentinel.start()
        try:
            self._until(lambda: all(self._knows_all(s) for s in self.sentinels),
                        "the sentinels to find the replica and each other")
        except RuntimeError as e:
            raise RuntimeError(f"{e}: {[self._state(s) for s in self.sentinels]}") from None

    def _state(self, sentinel: Sentinel) -> dict[bytes, bytes]:
        state = redis_command(sentinel.port, "SENTINEL", "master", SERVICE)
        if not isinstance(state, list):
            raise RuntimeError(f"sentinel {sentinel.port}: {state!r}")
        return dict(zip(state[::2], state[1::2], strict=True))

    def _knows_all(self, sentinel: Sentinel) -> bool:
        fields = self._state(sentinel)
        return fields[b"num-slaves"] == b"1" and fields[b"num-other-sentinels"] == b"2"

    def master(self) -> Redis:
        """The server the sentinels name as master now."""
        port = self.sentinels[0].master()[1]
        for server in self.servers:
            if server.port == port:
                return server
        raise RuntimeError(f"the sentinels name an unknown master: {port}")

    def moved(self, old: Redis) -> Redis | None:
        """The new master once every sentinel names one other than `old` and that server
        says it is the master; None until then."""
        ports = {s.master()[1] for s in self.sentinels}
        if len(ports) != 1 or old.port in ports:
            return None
        port = ports.pop()
        role = redis_command(port, "ROLE")
        return self.master() if isinstance(role, list) and role[0] == b"master" else None

    def _until(self, check: Any, what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.1)

    def destroy(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.destroy()


def _info(port: int) -> bytes:
    reply = redis_command(port, "INFO", "replication")
    return reply if isinstance(reply, bytes) else b""


NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
DEPLOY_CONF = os.path.join(os.path.dirname(__file__), "..", "deploy", "nginx.conf")


class Nginx:
    """A private nginx running deploy/nginx.conf with its upstreams and ports replaced: the
    stream server in front of `node_ports`, the http server in front of `web_ports`; with
    `proxy_protocol` (as deployed) the nodes must listen through haproxy:."""

    def __init__(self, node_ports: list[int], port: int | None = None,
                 web_ports: list[int] | None = None, web_port: int | None = None,
                 proxy_protocol: bool = True) -> None:
        self.dir = tempfile.mkdtemp(prefix="chatd-nginx-")
        self.port = port or free_port()
        self.web_port = web_port or free_port()
        self.node_ports = node_ports
        self.web_ports = web_ports or node_ports
        self.proxy_protocol = proxy_protocol  # off: nodes listen on plain tcp:
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"

    def config(self) -> str:
        with open(DEPLOY_CONF, encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"(?m)^\s*server 127\.0\.0\.1:\d+[^\n]*\n", "", text)
        for upstream, ports in (("chatd", self.node_ports), ("chatd_web", self.web_ports)):
            servers = "".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n"
                              for p in ports)
            head = f"upstream {upstream} {{\n        zone {upstream} 64k;\n        least_conn;\n"
            text = text.replace(head, head + servers, 1)
        if not self.proxy_protocol:
            text = re.sub(r"(?m)^\s*proxy_protocol on;\n", "", text)
        text = re.sub(r"listen 8000\b", f"listen 127.0.0.1:{self.port}", text)
        return re.sub(r"listen 8080\b", f"listen 127.0.0.1:{self.web_port}", text)

    def start(self) -> None:
        binary = _binary("nginx")
        if not binary or not os.path.exists(NGINX_STREAM_MODULE):
            raise RuntimeError("nginx with the stream module is not installed "
                               "(apt-get install nginx libnginx-mod-stream)")
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(self.config())
        self.proc = subprocess.Popen(
            [binary, "-p", self.dir, "-c", conf, "-g",
             f"daemon off; pid {self.dir}/nginx.pid; error_log {self.dir}/error.log;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, self.proc, START_TIMEOUT, "nginx")
        except RuntimeError as e:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                raise RuntimeError(f"{e}: {f.read()[-800:]}") from None

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
