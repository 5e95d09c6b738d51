"""JSON frames on the wire: compact UTF-8 objects, one per LF-terminated line."""

from typing import Any

import ujson

# ujson.dumps(obj, ensure_ascii, encode_html_chars, escape_forward_slashes) is called with its
# options by position: parsing them as keywords cost more (0.4 µs) than encoding a chat
# frame's fields. UTF-8 as it is, "<>&" and "/" unescaped (tests.test_units pins this).
_dumps = ujson.dumps
_ASCII, _HTML, _SLASHES = False, False, False


def encode(frame: dict[str, Any]) -> bytes:
    """One server frame, terminator included. Text that has no UTF-8 form (a lone surrogate
    echoed from a refused request) becomes "?" rather than invalid bytes on the wire."""
    text = _dumps(frame, _ASCII, _HTML, _SLASHES) + "\n"
    try:
        return text.encode()  # no codec lookup, unlike an explicit "utf-8", "replace"
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def encode_text(value: Any) -> str:
    """Compact JSON text, for the original dialect's lists of JSON-encoded strings."""
    return _dumps(value, _ASCII, _HTML, _SLASHES)


decode = ujson.loads
