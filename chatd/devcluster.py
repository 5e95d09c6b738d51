"""`make cluster`: a demonstration cluster in the foreground. Private MariaDB and Redis in
temporary directories, three chatd nodes each with its admin listener (docs/operations.md),
nginx on port 8000 for chat clients (passing client addresses with the PROXY protocol) and on
port 8080 for the web client; Ctrl-C, SIGTERM and SIGHUP stop all of it."""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from types import FrameType

from chatd.devservers import (
    START_TIMEOUT,
    MariaDB,
    Nginx,
    Redis,
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
             "--admin-token-file", token_file],
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


def run(nodes: int, port: int, web_port: int, cost: int) -> None:
    """Start everything, print where it is, wait for Ctrl-C, SIGTERM or SIGHUP (its terminal
    closed), stop everything."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    workdir = tempfile.mkdtemp(prefix="chatd-cluster-")
    started: list[MariaDB | Redis | NodeProcess | Nginx] = []
    try:
        print("starting MariaDB and Redis ...", flush=True)
        mariadb, redis = MariaDB(), Redis()
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
              f"  MariaDB:  {db}\n  Redis:    {redis.url}\n\n"
              "Ctrl-C (or SIGTERM, SIGHUP) stops the cluster.", flush=True)
        signal.pause()
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
    args = parser.parse_args(argv)
    run(args.nodes, args.port, args.web_port, args.password_cost)


if __name__ == "__main__":
    main()
