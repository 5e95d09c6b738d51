"""JSON frames on the wire: compact UTF-8 objects, one per LF-terminated line."""

from typing import Any

import ujson


def encode(frame: dict[str, Any]) -> bytes:
    """One server frame, terminator included. Text that has no UTF-8 form (a lone surrogate
    echoed from a refused request) becomes "?" rather than invalid bytes on the wire."""
    text = ujson.dumps(frame, ensure_ascii=False, escape_forward_slashes=False)
    try:
        return text.encode() + b"\n"  # no codec lookup, unlike an explicit "utf-8", "replace"
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace") + b"\n"


def encode_text(value: Any) -> str:
    """Compact JSON text, for the original dialect's lists of JSON-encoded strings."""
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)


decode = ujson.loads
