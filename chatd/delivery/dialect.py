"""What an original-dialect session gets of a frame made for the modern dialect.

Frames are encoded once and delivered as they are to every session of every recipient, on
any node. The original C++ client knows msgids 1-10 and shows `msg`: it must see a chat line
it can show for what the modern dialect says with new frames or fields (an attachment, a
recall), and nothing of the rest. Each capability registers here, in `build_node`, how the
frames or fields it adds read in the original dialect; the inbox of an original-dialect
session passes every frame through `original`. A frame of a registered msgid is known by its
first key (chatd builds every frame with `msgid` first, and encoding keeps the order), a
prefix test; a frame that names nothing registered passes with that test, one
regular-expression search when fields are registered, and no decoding. An original-dialect
group member gets every copy through here: the search was 13 % of a group message's
instructions with three alternatives in one pattern.
"""

import re
from collections.abc import Callable
from typing import Any

from chatd.codec import decode, encode

# A frame as the modern dialect has it -> the frame an original-dialect session gets instead,
# or None for nothing.
Convert = Callable[[dict[str, Any]], dict[str, Any] | None]


class Dialect:
    """Converters by msgid (a new frame) and by field (a new field of an old frame)."""

    def __init__(self) -> None:
        self._by_msgid: dict[int, Convert] = {}
        self._by_field: dict[str, Convert] = {}
        # what names a registered frame (its start) or field (a search): a frame that has
        # neither passes unchanged; the inbox tests both inline, without a call
        self.heads: tuple[bytes, ...] = ()
        self.fields: re.Pattern[bytes] | None = None
        # the last frame the inbox found plain: the copies of a group message are one bytes
        # object, so its other members' inboxes skip the tests (a search of the frame each)
        self.last_plain: bytes | None = None

    def frame(self, msgid: int, convert: Convert) -> None:
        """How frames of `msgid` read in the original dialect (frames built with `msgid` as
        their first key)."""
        self._by_msgid[msgid] = convert
        self._compile()

    def field(self, name: str, convert: Convert) -> None:
        """How a frame carrying the field `name` reads in the original dialect."""
        self._by_field[name] = convert
        self._compile()

    def _compile(self) -> None:
        self.heads = tuple(b'{"msgid":%d%s' % (m, end) for m in self._by_msgid
                            for end in (b",", b"}"))
        names = [b'"' + re.escape(n.encode()) + b'":' for n in self._by_field]
        self.fields = re.compile(b"|".join(names)) if names else None
        self.last_plain = None

    def original(self, data: bytes) -> bytes | None:
        """`data` (one encoded frame with its line end) as an original-dialect session gets
        it; None when it gets nothing."""
        if self.plain(data):
            return data
        frame: dict[str, Any] | None = decode(data)
        if type(frame) is not dict:
            return data
        converted = self.convert(frame)
        return None if converted is None else encode(converted)

    def plain(self, data: bytes) -> bool:
        """True when `data` names nothing registered (Inbox._write has this test inline)."""
        fields = self.fields
        return not data.startswith(self.heads) and (fields is None or fields.search(data) is None)

    def original_text(self, text: str) -> str | None:
        """`original` for a kept frame as text (the login reply's `offlinemsg` strings)."""
        data = self.original(text.encode())
        return None if data is None else data.decode().rstrip("\n")

    def convert(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        """The decoded form of `original`. A converter may change the frame it is given."""
        by_msgid = self._by_msgid.get(frame.get("msgid"))  # type: ignore[arg-type]
        if by_msgid is not None:
            return by_msgid(frame)
        for name, convert in self._by_field.items():
            if name in frame:
                converted = convert(frame)
                if converted is None:
                    return None
                frame = converted
        return frame
