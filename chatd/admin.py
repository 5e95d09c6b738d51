"""The operators' listener (`--admin`): a twisted.web site with /metrics, /health and, when a
token file is given, the JSON admin API under /admin/v1 (docs/operations.md)."""

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import ujson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from chatd.connections import ADMIN
from chatd.handlers.operator import Operator
from chatd.messages import ServiceUnavailable

log = Logger()

HEALTH_TIMEOUT = 3.0
MAX_BODY = 65536
MAX_NOTICE = 32768
MAX_PASSWORD = 128
MAX_REASON = 200


class Problem(Exception):
    """An HTTP error with a JSON body {"error": text}."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _reply(request: Request, status: int, body: Any) -> None:
    if request.finished or request.channel is None:
        return  # the operator's client went away
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.write(ujson.dumps(body).encode() + b"\n")
    request.finish()


def _answer(request: Request, work: Awaitable[tuple[int, Any]]) -> int:
    """Run `work` and reply with its (status, body); a Problem or an outage replies too."""
    async def run() -> None:
        try:
            status, body = await work
        except Problem as e:
            status, body = e.status, {"error": e.text}
        except ServiceUnavailable as e:
            status, body = 503, {"error": f"unavailable: {e}"}
        except Exception:
            log.failure("admin request {path}", path=request.path)
            status, body = 500, {"error": "internal error"}
        _reply(request, status, body)
    Deferred.fromCoroutine(run())
    return NOT_DONE_YET


class MetricsPage(Resource):
    """Prometheus text from prometheus_client, collected on the reactor thread: its own
    MetricsResource runs collectors on a thread pool, where reading the node's live maps would
    race with the reactor."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self.registry)


class HealthPage(Resource):
    """200 when the node listens, its store and bus answer and it has joined its cluster
    with the same settings as every other node; 503 naming what failed. A node still
    joining may yet refuse to start, so it is not reported healthy."""

    isLeaf = True

    def __init__(self, node: Any, clock: IReactorTime) -> None:
        super().__init__()
        self.node = node
        self.clock = clock

    def render_GET(self, request: Request) -> int:
        return _answer(request, self.check())

    async def check(self) -> tuple[int, dict[str, Any]]:
        store = self._probe(Deferred.fromCoroutine(self.node.store.ping()))
        bus = self._probe(self.node.router.bus.ping())
        store_state, bus_state = await gatherResults([store, bus])
        parts = {"listening": "ok" if self.node.factory.numPorts else "not listening",
                 "store": store_state, "bus": bus_state, "cluster": self._agreement()}
        failing = sorted(k for k, v in parts.items() if v != "ok")
        return (503 if failing else 200), {"status": "failing" if failing else "ok",
                                           "failing": failing, **parts}

    def _agreement(self) -> str:
        """Whether this node has joined (chatd/cluster/agreement.py) and the other nodes
        share its settings; a node alone has nothing to join."""
        agreement = self.node.router.bus.agreement
        if agreement is None:
            return "ok"
        if not agreement.joined:
            return "joining"
        conflicts = agreement.conflicts()
        return f"failing: {'; '.join(conflicts)}" if conflicts else "ok"

    def _probe(self, d: Deferred[Any]) -> Deferred[str]:
        d.addTimeout(HEALTH_TIMEOUT, self.clock)
        return d.addCallbacks(lambda _: "ok", lambda f: f"failing: {f.getErrorMessage()}")


def _user_id(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2 ** 63:
        raise Problem(400, f"not a user id: {text!r}")
    return int(text)


def _text(body: dict[str, Any], key: str, low: int, high: int) -> str:
    value = body.get(key, "" if low == 0 else None)
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise Problem(400, f"{key}: a string of {low}-{high} characters is required")
    return value


class AdminAPI(Resource):
    """/admin/v1/...: bearer-token JSON API over an Operator."""

    isLeaf = True

    def __init__(self, operator: Operator, token: bytes) -> None:
        super().__init__()
        self.operator = operator
        self.token = token
        self.routes: dict[tuple[bytes, str], Callable[..., Awaitable[tuple[int, Any]]]] = {
            (b"GET", "nodes"): self.nodes,
            (b"GET", "online"): self.online,
            (b"GET", "user"): self.user,
            (b"POST", "kick"): self.kick,
            (b"POST", "ban"): self.ban,
            (b"POST", "unban"): self.unban,
            (b"POST", "password"): self.password,
            (b"POST", "broadcast"): self.broadcast,
            (b"POST", "delete"): self.delete,
            (b"GET", "export"): self.export,
        }

    def render(self, request: Request) -> int | bytes:
        if not self._authorized(request):
            request.setHeader(b"www-authenticate", b'Bearer realm="chatd"')
            _reply(request, 401, {"error": "a valid bearer token is required"})
            return NOT_DONE_YET
        return _answer(request, self._dispatch(request))

    def _authorized(self, request: Request) -> bool:
        given = request.getHeader(b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.token)

    async def _dispatch(self, request: Request) -> tuple[int, Any]:
        """users/ID/ACTION, users/ID or a plain name (nodes, online, broadcast)."""
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        args: list[Any] = []
        if len(path) in (2, 3) and path[0] == "users":
            args = [_user_id(path[1])]
            name = path[2] if len(path) == 3 else "user"
        elif len(path) == 1:
            name = path[0]
        else:
            raise Problem(404, "no such endpoint")
        method = self.routes.get((request.method, name))
        if method is None:
            known = any(n == name for _, n in self.routes)
            raise Problem(405 if known else 404, "no such endpoint")
        if request.method == b"POST":
            args.append(self._body(request))
        return await method(*args)

    def _body(self, request: Request) -> dict[str, Any]:
        data = request.content.read(MAX_BODY + 1) if request.content else b""
        if len(data) > MAX_BODY:
            raise Problem(413, f"body over {MAX_BODY} bytes")
        try:
            body = ujson.loads(data) if data.strip() else {}
        except ValueError:
            raise Problem(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise Problem(400, "body is not a JSON object")
        return body

    async def nodes(self) -> tuple[int, Any]:
        reports = await self.operator.reports()
        return 200, {"nodes": [
            {"node": r["node"], "node_id": r["node_id"], "sessions": len(r["sessions"]),
             "proto1": sum(1 for s in r["sessions"] if s[2] != 2),
             "proto2": sum(1 for s in r["sessions"] if s[2] == 2)} for r in reports]}

    async def online(self) -> tuple[int, Any]:
        reports = await self.operator.reports()
        users = [{"id": uid, "name": name, "node": r["node"], "node_id": r["node_id"],
                  "proto": proto} for r in reports for uid, name, proto in r["sessions"]]
        return 200, {"online": sorted(users, key=lambda u: u["id"])}

    async def user(self, user_id: int) -> tuple[int, Any]:
        details = await self.operator.user(user_id)
        if details is None:
            raise Problem(404, f"no such user: {user_id}")
        return 200, details

    async def kick(self, user_id: int, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"id": user_id, "online": await self.operator.kick(user_id)}

    async def ban(self, user_id: int, body: dict[str, Any]) -> tuple[int, Any]:
        online = await self.operator.ban(user_id, _text(body, "reason", 0, MAX_REASON))
        if online is None:
            raise Problem(404, f"no such user: {user_id}")
        return 200, {"id": user_id, "banned": True, "online": online}

    async def unban(self, user_id: int, body: dict[str, Any]) -> tuple[int, Any]:
        await self.operator.unban(user_id)
        return 200, {"id": user_id, "banned": False}

    async def password(self, user_id: int, body: dict[str, Any]) -> tuple[int, Any]:
        if not await self.operator.set_password(
                user_id, _text(body, "password", 1, MAX_PASSWORD)):
            raise Problem(404, f"no such user: {user_id}")
        return 200, {"id": user_id, "password": "changed"}

    async def delete(self, user_id: int, body: dict[str, Any]) -> tuple[int, Any]:
        if not await self.operator.delete(user_id):
            raise Problem(404, f"no such user: {user_id}")
        return 200, {"id": user_id, "deleted": True}

    async def export(self, user_id: int) -> tuple[int, Any]:
        data = await self.operator.export(user_id)
        if data is None:
            raise Problem(404, f"no such user: {user_id}")
        return 200, data

    async def broadcast(self, body: dict[str, Any]) -> tuple[int, Any]:
        await self.operator.broadcast(_text(body, "msg", 1, MAX_NOTICE))
        return 200, {"sent": True}


def admin_site(node: Any, registry: CollectorRegistry, token: bytes | None,
               clock: IReactorTime) -> Site:
    """The site: /metrics and /health always, /admin/v1 only with a token."""
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"health", HealthPage(node, clock))
    if token:
        admin = Resource()
        admin.putChild(b"v1", AdminAPI(node.operator, token))
        root.putChild(b"admin", admin)
    site = _Site(root)
    site.noisy = False
    site.connections = node.factory.connections
    return site


class _Channel(HTTPChannel):
    """Counted under the admin listener for /metrics and never refused: operators must
    reach a node under attack (--max-connections keeps descriptors for them)."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.connections.opened(ADMIN)

    def connectionLost(self, reason: Failure) -> None:
        self.site.connections.closed(ADMIN)
        super().connectionLost(reason)


class _Site(Site):
    """Logs admin API requests only: probes and scrapes every few seconds are noise."""

    protocol = _Channel

    def log(self, request: Request) -> None:
        if request.path.startswith(b"/admin/"):
            super().log(request)
