"""`chatd-admin`: the operator's command line over a node's admin API (docs/operations.md).

    chatd-admin --url http://127.0.0.1:9600 --token-file /etc/chatd/admin-token online
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9600"
TIMEOUT = 10.0


class AdminError(Exception):
    """The node refused or could not be reached; the text says why."""


class AdminClient:
    """Requests to /admin/v1 with the bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self.base = url.rstrip("/") + "/admin/v1/"
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as e:
            raise AdminError(f"{e.code}: {_error_text(e)}") from None
        except (urllib.error.URLError, OSError) as e:
            raise AdminError(f"cannot reach {self.base}: {getattr(e, 'reason', e)}") from None


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        return json.loads(e.read())["error"]
    except (ValueError, KeyError, TypeError):
        return e.reason


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Columns padded to their widest cell."""
    cells = [headers] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def show_nodes(reply: dict[str, Any]) -> str:
    return table(["NODE", "ID", "SESSIONS", "PROTO1", "PROTO2"],
                 [[n["node"], n["node_id"], n["sessions"], n["proto1"], n["proto2"]]
                  for n in reply["nodes"]])


def show_online(reply: dict[str, Any]) -> str:
    return table(["ID", "NAME", "NODE", "PROTO"],
                 [[u["id"], u["name"], u["node"], u["proto"]] for u in reply["online"]])


def show_user(u: dict[str, Any]) -> str:
    where = u["online"]
    lines = [
        f"id        {u['id']}",
        f"name      {u['name']}",
        "online    " + (f"on node {where['node']} (proto {where['proto']})" if where else "no"),
        "banned    " + (f"yes since {u['ban']['since']}: {u['ban']['reason']}" if u["banned"]
                        else "no"),
        f"offline   {u['offline']} messages waiting",
        "friends   " + (", ".join(f"{f['name']} ({f['id']})" for f in u["friends"]) or "-"),
        "groups    " + (", ".join(f"{g['groupname']} ({g['groupid']})" for g in u["groups"])
                        or "-"),
    ]
    return "\n".join(lines)


def show_result(reply: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in reply.items())


def export_to(path: str) -> Callable[[Any], str]:
    """Show an export by writing it to `path` (- : standard output) and counting it."""
    def write(data: dict[str, Any]) -> str:
        text = json.dumps(data, indent=2, ensure_ascii=False)
        if path == "-":
            return text
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        return (f"wrote {path} (friends {len(data['friends'])}, groups {len(data['groups'])}, "
                f"messages {len(data['messages'])})")
    return write


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatd-admin", description="Operate a chatd cluster through any node's admin "
        "API (twistd chatd --admin ... --admin-token-file ...).")
    parser.add_argument("--url", default=os.environ.get("CHATD_ADMIN_URL", DEFAULT_URL),
                        help=f"the node's admin listener [env CHATD_ADMIN_URL; {DEFAULT_URL}]")
    parser.add_argument("--token-file", default=os.environ.get("CHATD_ADMIN_TOKEN_FILE"),
                        help="file with the bearer token [env CHATD_ADMIN_TOKEN_FILE]")
    parser.add_argument("--json", action="store_true", help="print the JSON reply")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("nodes", help="live nodes and their session counts")
    sub.add_parser("online", help="who is online, on which node and dialect")
    for name, text in (("user", "a user: online where, friends, groups, backlog, ban"),
                       ("kick", "end the user's session (the client is told why)"),
                       ("unban", "let a banned user log in again"),
                       ("delete", "delete the account, as the user's DELETE_ACCOUNT does"),
                       ("password", "set a new password read from standard input")):
        sub.add_parser(name, help=text).add_argument("id", type=int)
    ban = sub.add_parser("ban", help="refuse the user's logins and end the session")
    ban.add_argument("id", type=int)
    ban.add_argument("--reason", default="", help="kept with the ban (up to 200 characters)")
    sub.add_parser("broadcast", help="a notice to everyone online").add_argument("text")
    export = sub.add_parser("export", help="write the user's data as JSON to FILE")
    export.add_argument("id", type=int)
    export.add_argument("file", help="where to write it (- for standard output)")
    return parser


Request = tuple[str, str, dict[str, Any] | None, Callable[[Any], str]]


def request_for(args: argparse.Namespace, stdin: Any) -> Request:
    """(method, path, body, how to show the reply) of a command."""
    command = args.command
    if command == "nodes":
        return "GET", "nodes", None, show_nodes
    if command == "online":
        return "GET", "online", None, show_online
    if command == "user":
        return "GET", f"users/{args.id}", None, show_user
    if command == "ban":
        return "POST", f"users/{args.id}/ban", {"reason": args.reason}, show_result
    if command == "password":
        password = stdin.readline().rstrip("\r\n")
        return "POST", f"users/{args.id}/password", {"password": password}, show_result
    if command == "broadcast":
        return "POST", "broadcast", {"msg": args.text}, show_result
    if command == "export":
        return "GET", f"users/{args.id}/export", None, export_to(args.file)
    return "POST", f"users/{args.id}/{command}", {}, show_result


def _token(path: str | None) -> str:
    if not path:
        raise AdminError("--token-file (or CHATD_ADMIN_TOKEN_FILE) is required")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise AdminError(f"cannot read the token file: {e}") from None


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        method, path, body, show = request_for(args, sys.stdin)
        reply = AdminClient(args.url, _token(args.token_file)).call(method, path, body)
    except AdminError as e:
        print(f"chatd-admin: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(reply, indent=2) if args.json else show(reply))


if __name__ == "__main__":
    main()
