"""RFC 6455 frames (section 5): built for the server's side, cut and checked for a client's.

The node reads a client's frames itself rather than through wsproto: its parser makes an
event object and several generator steps of every frame, a third of the node's CPU for a
WebSocket chat message (docs/performance.md). Here a read's frames are cut in one loop and
each whole message comes out as the bytes the chat protocol takes.
"""

from collections.abc import Iterator

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA = frozenset((TEXT, BINARY))
CONTROL = frozenset((CLOSE, PING, PONG))
NORMAL, PROTOCOL_ERROR, INVALID_DATA = 1000, 1002, 1007
NO_ZERO = b"\0\0\0\0"

# Close codes a peer may send (RFC 6455 7.4.1; 1004-1006 and 1015 are never sent on the wire).
VALID_CLOSE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                         1014))


class ProtocolViolation(Exception):
    """The peer broke RFC 6455: the connection ends with a Close frame carrying `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class MessageTooLarge(Exception):
    """A message (all its fragments together) would be longer than the limit."""


def frame(payload: bytes, opcode: int = TEXT, masked: bool = False, final: bool = True
          ) -> bytes:
    """One frame (RFC 6455 5.2). A server's is unmasked; a client's (chatd-bench, tests) has
    the mask key 0, a value a random key may take, which leaves the payload as it is."""
    size = len(payload)
    first = (0x80 if final else 0) | opcode
    mask = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask | size))
    elif size < 65536:
        head = bytes((first, mask | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, mask | 127)) + size.to_bytes(8, "big")
    return head + NO_ZERO + payload if masked else head + payload


def close_frame(code: int | None) -> bytes:
    """A Close frame with a status code, or none (the answer to a Close that named none)."""
    return frame(b"" if code is None else code.to_bytes(2, "big"), CLOSE)


def unmask(key: bytes, payload: bytes) -> bytes:
    """XOR with the repeated 4-byte key, as one big integer: a C loop, not a Python one."""
    if key == NO_ZERO or not payload:
        return payload
    size = len(payload)
    keys = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(size, "big")


def close_code(payload: bytes) -> int | None:
    """The status code of a peer's Close (None when it named none); its reason must be UTF-8."""
    if not payload:
        return None
    if len(payload) == 1:
        raise ProtocolViolation(PROTOCOL_ERROR, "close frame of one byte")
    code = int.from_bytes(payload[:2], "big")
    if code not in VALID_CLOSE and not 3000 <= code <= 4999:
        raise ProtocolViolation(PROTOCOL_ERROR, f"close code {code}")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(INVALID_DATA, "close reason is not UTF-8") from None
    return code


class FrameReader:
    """A client's side of one connection: bytes in, (opcode, payload) out for each whole
    message (TEXT or BINARY, fragments gathered) and each control frame, unmasked.

    A message longer than `limit` raises MessageTooLarge as soon as a frame header says so,
    before its bytes arrive; anything RFC 6455 forbids raises ProtocolViolation."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = b""
        self._opcode: int | None = None  # of the message whose fragments are being gathered
        # A bytearray, not a list of parts: a flood of empty or one-byte fragments then
        # holds no more memory than the message it spells.
        self._gathered = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """The messages and control frames complete with this read; a partial frame is kept
        for the next one. Stop iterating once the connection is closing."""
        buf = self._buffer + data if self._buffer else data
        pos, end = 0, len(buf)
        while end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            size, start = second & 0x7F, pos + 2
            if size >= 126:
                size, start = self._length(buf, start, size)
                if start < 0:
                    break
            opcode = first & 0x0F
            self._check(first, second, opcode, size)
            if start + 4 + size > end:
                break
            key = buf[start:start + 4]
            pos = start + 4 + size
            payload = unmask(key, buf[start + 4:pos])
            if opcode >= CLOSE:
                yield opcode, payload
            elif first & 0x80:
                yield self._whole(opcode, payload)
            else:
                self._gather(opcode, payload)
        self._buffer = buf[pos:]

    def _length(self, buf: bytes, start: int, size: int) -> tuple[int, int]:
        """A 16-bit (126) or 64-bit (127) length from `start`, and where the mask key starts;
        start -1 when the header is not all here yet."""
        wide = 2 if size == 126 else 8
        if len(buf) < start + wide:
            return 0, -1
        size = int.from_bytes(buf[start:start + wide], "big")
        if size < (126 if wide == 2 else 65536) or size >> 63:
            raise ProtocolViolation(PROTOCOL_ERROR, "length not in its shortest form")
        return size, start + wide

    def _check(self, first: int, second: int, opcode: int, size: int) -> None:
        if first & 0x70:
            raise ProtocolViolation(PROTOCOL_ERROR, "reserved bits set")
        if not second & 0x80:
            raise ProtocolViolation(PROTOCOL_ERROR, "client frame not masked")
        if opcode in CONTROL:
            if not first & 0x80 or size > 125:
                raise ProtocolViolation(PROTOCOL_ERROR, "fragmented or long control frame")
            return
        if opcode == CONTINUATION:
            if self._opcode is None:
                raise ProtocolViolation(PROTOCOL_ERROR, "continuation of no message")
        elif opcode not in DATA:
            raise ProtocolViolation(PROTOCOL_ERROR, f"opcode {opcode}")
        elif self._opcode is not None:
            raise ProtocolViolation(PROTOCOL_ERROR, "new message inside a fragmented one")
        if len(self._gathered) + size > self.limit:
            raise MessageTooLarge()

    def _gather(self, opcode: int, payload: bytes) -> None:
        if opcode != CONTINUATION:
            self._opcode = opcode
        self._gathered += payload

    def _whole(self, opcode: int, payload: bytes) -> tuple[int, bytes]:
        """The message this final frame ends, its fragments joined; a text one must be UTF-8
        (a chat frame is checked again only when it is not ASCII, as here)."""
        if opcode == CONTINUATION:
            opcode = self._opcode
            self._gathered += payload
            payload = bytes(self._gathered)
            self._opcode, self._gathered = None, bytearray()
        if opcode == TEXT and not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation(INVALID_DATA, "text message is not UTF-8") from None
        return opcode, payload
