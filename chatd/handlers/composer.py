"""The parts of a chat message beyond its text (an attachment, a quote, mentions), and the
order of one sender's messages while a part is being looked up.

Each capability that adds a field to ONE_CHAT and GROUP_CHAT is a `Part` registered here in
`build_node`, so that chat.py stays the message path and knows none of them. A message that
names no part's field costs one dictionary lookup per part. A part may need the store (is this
upload the sender's? what does the quoted message say?): then the message waits, and so does
every later chat message of the same session, released in arrival order once it is sent or
refused, so that a photo and the line typed after it arrive in the order they were sent.

Kept frames are shown again later (HISTORY, SYNC, offline delivery); a part may change what it
put there before a device sees it again (`show`: a fresh download URL, a recalled quote).
"""

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.delivery.session import Session
from chatd.messages import ChatError, error_frame

log = Logger()

# A held chat request: the handler to run again, and the request.
Held = tuple[Callable[[Session, dict[str, Any]], Any], dict[str, Any]]


class Part(Protocol):
    """One optional part of a chat message, named by its request field."""

    field: str  # the request field of ONE_CHAT / GROUP_CHAT that asks for this part

    def add(self, session: Session, req: dict[str, Any], frame: dict[str, Any],
            members: list[int]) -> Awaitable[None] | None:
        """Check `req[field]` and put into `frame` what recipients see; raise ChatError to
        refuse the message. `members` are the recipients (a group's other members). Return an
        awaitable when the answer needs the store."""

    def show(self, frames: list[dict[str, Any]], viewer: int) -> Awaitable[None] | None:
        """Adjust kept frames in place before `viewer` sees them again."""


class Composer:
    """The registered parts, and the chat requests held behind a part's lookup, by session."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        # the request fields that name a part, and the sessions whose chat messages wait:
        # the message path reads both without a call (chat.py)
        self.fields: set[str] = set()
        self.holding: dict[Session, deque[Held]] = {}

    def register(self, part: Part) -> None:
        self.parts.append(part)
        self.fields.add(part.field)

    def held(self, session: Session, handler: Callable[[Session, dict[str, Any]], Any],
             req: dict[str, Any]) -> bool:
        """True when an earlier message of this session is still being composed: then the
        request waits behind it."""
        queue = self.holding.get(session)
        if queue is None:
            return False
        queue.append((handler, req))
        return True

    def compose(self, session: Session, req: dict[str, Any], frame: dict[str, Any],
                members: list[int]) -> Deferred[None] | None:
        """Let each part named in `req` add to `frame`. None when done at once; else a
        Deferred, and the session's later chat messages wait until `release`."""
        waits = []
        for part in self.parts:
            if part.field in req:
                wait = part.add(session, req, frame, members)
                if wait is not None:
                    waits.append(Deferred.fromCoroutine(wait) if not isinstance(wait, Deferred)
                                 else wait)
        if not waits:
            return None
        self.holding[session] = deque()
        return gatherResults(waits, consumeErrors=True).addCallbacks(_done, _first)

    def release(self, session: Session) -> None:
        """The message being composed is sent or refused: run the requests held behind it,
        in order, until one of them waits again. A session that logged out meanwhile has
        none: they were not its user's any more."""
        queue = self.holding.pop(session, None)
        while queue and session.user_id is not None:
            handler, req = queue.popleft()
            _run(handler, session, req)
            if session in self.holding:
                self.holding[session].extend(queue)
                return

    async def show(self, frames: list[dict[str, Any]], viewer: int) -> None:
        """Let every part adjust kept frames before `viewer` sees them again."""
        for part in self.parts:
            wait = part.show(frames, viewer)
            if wait is not None:
                await wait


def _done(_: object) -> None:
    return None


def _first(failure: Failure) -> Failure:
    """The refusal itself, not gatherResults' wrapper around it."""
    return failure.value.subFailure  # type: ignore[no-any-return]


def _run(handler: Callable[[Session, dict[str, Any]], Any], session: Session,
         req: dict[str, Any]) -> None:
    """Run a held chat request as the protocol would have: an error frame for a refusal."""
    try:
        result = handler(session, req)
    except ChatError as e:
        session.send(error_frame(e, req["msgid"], req.get("cid")))
        return
    if result is not None:
        Deferred.fromCoroutine(result).addErrback(_failed, session, req)


def _failed(failure: Failure, session: Session, req: dict[str, Any]) -> None:
    if failure.check(ChatError):
        session.send(error_frame(failure.value, req["msgid"], req.get("cid")))
        return
    log.failure("held chat message of user {uid} failed", failure, uid=session.user_id)
