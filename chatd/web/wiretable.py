"""The wire table for the browser: chatd.messages' MsgId and Errno as an ES module at /wire.js.

The web client imports its msgids and errnos from this module (`import { MsgId, Errno } from
"./wire.js"`), so chatd/messages.py stays the only place the numbers are written down. The
text is made once, when the web site is built, and served from memory.
"""

import time
from enum import IntEnum

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request

from chatd.messages import Errno, MsgId

PATH = b"wire.js"
"""Where the site serves the module, under its root: /wire.js, beside app.js."""
CONTENT_TYPE = b"text/javascript; charset=utf-8"


def _frozen(name: str, table: type[IntEnum]) -> str:
    members = "".join(f"  {member.name}: {int(member)},\n" for member in table)
    return f"export const {name} = Object.freeze({{\n{members}}});\n"


def module_text() -> str:
    """The module: `export const MsgId = Object.freeze({LOGIN: 1, ...});` and the same for
    Errno, one member per line, in the tables' order."""
    return ("// The wire table of docs/protocol.md, made by chatd/web/wiretable.py from\n"
            "// chatd/messages.py when the node started.\n"
            + _frozen("MsgId", MsgId) + _frozen("Errno", Errno))


class WireModule(Resource):
    """/wire.js: the module text, with Last-Modified (the time it was made) and conditional
    GETs answered 304, as the static files have (their file's time)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = module_text().encode("utf-8")
        self.made = time.time()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE)
        if request.setLastModified(self.made) is http.CACHED:
            return b""
        request.setHeader(b"content-length", b"%d" % len(self.body))
        return self.body
