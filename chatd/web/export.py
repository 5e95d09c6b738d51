"""/export on the web listener: "Download my data" (docs/protocol.md, Deleting an account).

The user proves who they are with their resume token in an `Authorization: Bearer` header,
never a cookie, so another site's page cannot make a browser fetch someone's data: a
cross-origin request with that header needs a CORS preflight this site never answers. What
the export holds is built by the handlers (chatd.handlers.accountdata); this is the edge.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import ujson
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from chatd.messages import ServiceUnavailable

log = Logger()

Exporter = Callable[[str], Awaitable[dict[str, Any] | None]]  # token -> the data, or None


class ExportResource(Resource):
    """GET /export: 200 with the JSON file, 401 without a valid token, 503 while the
    database is down."""

    isLeaf = True

    def __init__(self, export: Exporter) -> None:
        super().__init__()
        self.export = export

    def render_GET(self, request: Request) -> int:
        Deferred.fromCoroutine(self._answer(request))
        return NOT_DONE_YET

    async def _answer(self, request: Request) -> None:
        scheme, _, token = (request.getHeader("authorization") or "").partition(" ")
        try:
            data = await self.export(token.strip()) if scheme.lower() == "bearer" else None
        except ServiceUnavailable:
            return _reply(request, 503, {"error": "unavailable, try again"})
        except Exception:
            log.failure("export")
            return _reply(request, 500, {"error": "internal error"})
        if data is None:
            request.setHeader("www-authenticate", 'Bearer realm="chatd"')
            return _reply(request, 401, {"error": "a valid resume token is required"})
        request.setHeader("content-disposition",
                          f'attachment; filename="chatd-{data["profile"]["id"]}.json"')
        return _reply(request, 200, data)


def _reply(request: Request, status: int, body: dict[str, Any]) -> None:
    if request.finished or request.channel is None:
        return
    request.setResponseCode(status)
    request.setHeader("content-type", "application/json")
    request.setHeader("cache-control", "no-store")
    request.write(ujson.dumps(body, ensure_ascii=False).encode() + b"\n")
    request.finish()
