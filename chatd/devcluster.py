"""`make cluster`: a demonstration cluster in the foreground. Private MariaDB and Redis in
temporary directories, three chatd nodes each with its admin listener (docs/operations.md),
nginx on port 8000 for chat clients (passing client addresses with the PROXY protocol) and on
port 8080 for the web client; Ctrl-C, SIGTERM and SIGHUP stop all of it.

`make cluster HA=1` (--ha) runs Redis as a master, a replica and three sentinels instead, the
nodes finding the master through the sentinels (--redis sentinel://...), and says how to fail
over. A Redis server that dies is started again as a replica of the new master, so the
failover can be tried again."""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from chatd.devservers import (
    START_TIMEOUT,
    MariaDB,
    Nginx,
    Redis,
    RedisHA,
    create_database,
    free_port,
    wait_for_port,
)

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


class NodeProcess:
    """One `twistd chatd` node writing its log to a file."""

    def __init__(self, number: int, db: str, redis: str, workdir: str, cost: int,
                 token_file: str) -> None:
        self.number = number
        self.port = free_port()
        self.admin_port = free_port()
        self.web_port = free_port()
        self.log = os.path.join(workdir, f"node{number}.log")
        self.proc = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", "--logfile", self.log, "chatd",
             "--listen", f"haproxy:tcp:{self.port}:interface=127.0.0.1", "--db", db,
             "--redis", redis, "--node-id", str(number), "--password-cost", str(cost),
             "--web", f"tcp:{self.web_port}:interface=127.0.0.1", "--web-trusted-proxy",
             "127.0.0.1",
             "--admin", f"tcp:{self.admin_port}:interface=127.0.0.1",
             "--admin-token-file", token_file,
             "--media-store", f"file:{os.path.join(workdir, 'media')}",  # shared by all
             "--push-vapid-key", os.path.join(workdir, "vapid.pem")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def wait(self) -> None:
        try:
            wait_for_port(self.port, self.proc, START_TIMEOUT, f"node {self.number}")
        except RuntimeError as e:
            with open(self.log, errors="replace") as f:
                raise RuntimeError(f"{e}: {f.read()[-1500:]}") from None

    def destroy(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


DOWN_AFTER_MS = 2000  # the sentinels' down-after-milliseconds in the demonstration


class HighAvailability:
    """The Redis of --ha: RedisHA, watched every second so that a failover is reported and
    a server that died comes back as a replica of the new master."""

    def __init__(self) -> None:
        self.servers = RedisHA(DOWN_AFTER_MS)
        self.url = self.servers.url()
        self.master = self.servers.servers[0]

    def start(self) -> None:
        self.servers.start()

    def describe(self) -> str:
        master, sentinel = self.master, self.servers.sentinels[0]
        return (f"Redis:    master 127.0.0.1:{master.port} (pid {master.proc.pid}), replica "
                f"127.0.0.1:{self.servers.servers[1].port}, sentinels "
                f"{', '.join(str(s.port) for s in self.servers.sentinels)} "
                f"(down-after {DOWN_AFTER_MS} ms)\n"
                f"  fail over: kill -9 {master.proc.pid}   (the master dies), or\n"
                f"             redis-cli -p {sentinel.port} SENTINEL FAILOVER chatd   (planned)")

    def watch(self) -> None:
        """Report a new master; start a dead server again as its replica."""
        try:
            master = self.servers.master()
        except (OSError, RuntimeError):
            return  # a sentinel busy with the failover: next second
        if master is not self.master:
            self.master = master
            print(f"failover: the master is now 127.0.0.1:{master.port} (pid "
                  f"{master.proc.pid}); kill -9 {master.proc.pid} to fail over again",
                  flush=True)
        for server in self.servers.servers:
            if server is not master and server.proc is not None and server.proc.poll() is not None:
                server.replica_of = master.port
                server.start()
                print(f"redis 127.0.0.1:{server.port} started again as a replica", flush=True)

    def destroy(self) -> None:
        self.servers.destroy()


def run(nodes: int, port: int, web_port: int, cost: int, ha: bool = False) -> None:
    """Start everything, print where it is, wait for Ctrl-C, SIGTERM or SIGHUP (its terminal
    closed), stop everything."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    workdir = tempfile.mkdtemp(prefix="chatd-cluster-")
    started: list[MariaDB | Redis | HighAvailability | NodeProcess | Nginx] = []
    try:
        print("starting MariaDB and Redis ...", flush=True)
        mariadb, redis = MariaDB(), HighAvailability() if ha else Redis()
        started += [mariadb, redis]
        mariadb.start()
        redis.start()
        db = create_database(mariadb.url)
        token_file = os.path.join(workdir, "admin-token")
        with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
        print(f"starting {nodes} chatd nodes ...", flush=True)
        chat_nodes = [NodeProcess(i + 1, db, redis.url, workdir, cost, token_file)
                      for i in range(nodes)]
        started += chat_nodes
        for node in chat_nodes:
            node.wait()
        nginx = Nginx([n.port for n in chat_nodes], port, [n.web_port for n in chat_nodes],
                      web_port)
        started.append(nginx)
        nginx.start()
        print(f"\n  clients:  telnet 127.0.0.1 {port}   or   .venv/bin/chat-client --port {port}")
        print(f"  web:      {nginx.url}")
        for node in chat_nodes:
            print(f"  node {node.number}:   127.0.0.1:{node.port} (PROXY protocol, from nginx)"
                  f"   web 127.0.0.1:{node.web_port}   admin http://127.0.0.1:{node.admin_port}"
                  f"   log {node.log}")
        print(f"  admin token file: {token_file}\n"
              f"  try:  .venv/bin/chatd-admin --url http://127.0.0.1:{chat_nodes[0].admin_port}"
              f" --token-file {token_file} nodes\n"
              f"  MariaDB:  {db}\n  Redis:    {redis.url}", flush=True)
        if isinstance(redis, HighAvailability):
            print(f"  {redis.describe()}", flush=True)
        print("\nCtrl-C (or SIGTERM, SIGHUP) stops the cluster.", flush=True)
        while True:
            if isinstance(redis, HighAvailability):
                redis.watch()
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        print(f"make cluster: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the clean-up
        print(f"stopping ... (node logs kept in {workdir})", flush=True)
        for server in reversed(started):
            server.destroy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="make cluster", description=__doc__,
        epilog="Needs mariadb-server, redis-server, nginx and libnginx-mod-stream installed.")
    parser.add_argument("--nodes", type=int, default=3, help="chatd nodes to run (default 3)")
    parser.add_argument("--port", type=int, default=8000, help="nginx port (default 8000)")
    parser.add_argument("--web-port", type=int, default=8080,
                        help="nginx port of the web client (default 8080)")
    parser.add_argument("--password-cost", type=int, default=14,
                        help="scrypt cost of the nodes (default 14)")
    parser.add_argument("--ha", action="store_true",
                        help="Redis as a master, a replica and three sentinels (make cluster "
                        "HA=1)")
    args = parser.parse_args(argv)
    run(args.nodes, args.port, args.web_port, args.password_cost, args.ha)


if __name__ == "__main__":
    main()
