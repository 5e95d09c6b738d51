"""Reading stored messages page by page: HISTORY backwards, SYNC forwards (docs/protocol.md,
History)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from chatd.messages import MsgId
from client.protocol import Frame

HISTORY_PAGE = 100
"""The server's largest HISTORY `limit`."""
MAX_SYNC_PAGES = 100
"""A catch-up stops after this many SYNC pages (50,000 messages); `history` shows the rest."""

Request = Callable[[Frame], Awaitable[Frame]]


class HistoryFailed(Exception):
    """The server refused a page; the argument is its reply, with `errno` and `errmsg`."""


async def fetch_history(request: Request, target: Frame, count: int) -> tuple[list[Frame], bool]:
    """The last `count` messages of a conversation (`target` is {"peer": id} or
    {"groupid": id}), oldest first, and whether older ones exist."""
    messages: list[Frame] = []
    before: Frame = {}
    while True:
        limit = min(HISTORY_PAGE, count - len(messages))
        reply = await request({"msgid": MsgId.HISTORY, **target, **before, "limit": limit})
        if reply.get("errno"):
            raise HistoryFailed(reply)
        page = list(reply.get("messages") or [])
        messages = page + messages
        more = bool(reply.get("more")) and bool(page)
        if not more or len(messages) >= count:
            return messages, more
        before = {"before": page[0]["mid"]}


async def sync_pages(request: Request, after: int) -> AsyncIterator[list[Frame]]:
    """Pages of every message after mid `after`, oldest first, until the server has no more."""
    for _ in range(MAX_SYNC_PAGES):
        reply = await request({"msgid": MsgId.SYNC, "after": after})
        if reply.get("errno"):
            raise HistoryFailed(reply)
        page = list(reply.get("messages") or [])
        yield page
        if not reply.get("more") or not page:
            return
        after = page[-1]["mid"]
