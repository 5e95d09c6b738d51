"""Message ids: unique across the cluster, increasing per node, with no database round trip."""

import time
from collections.abc import Callable

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
_SEQ_MASK = (1 << SEQ_BITS) - 1


class MidGenerator:
    """64-bit ids laid out as milliseconds since 2026 | node id | sequence.

    The node id keeps two nodes from ever issuing the same id; the sequence allows 4,096 ids
    per millisecond, after which the generator borrows from the next millisecond rather than
    waiting, so ids stay strictly increasing even if the wall clock steps back.
    """

    def __init__(self, node_id: int, clock: Callable[[], float] = time.time) -> None:
        if not 0 <= node_id <= MAX_NODE:
            raise ValueError(f"node id must be 0..{MAX_NODE}")
        self._node = node_id << SEQ_BITS
        self._clock = clock
        self._last_ms = 0
        self._seq = 0

    def next(self) -> int:
        ms = int(self._clock() * 1000) - EPOCH_MS
        if ms > self._last_ms:
            self._last_ms, self._seq = ms, 0
        elif self._seq < _SEQ_MASK:
            self._seq += 1
        else:
            self._last_ms, self._seq = self._last_ms + 1, 0
        return (self._last_ms << (NODE_BITS + SEQ_BITS)) | self._node | self._seq


def mid_floor(seconds: float) -> int:
    """The lowest mid any node can give a message at this time (seconds since the epoch):
    mids order and date messages, so a time bound on them is a mid bound."""
    ms = max(int(seconds * 1000) - EPOCH_MS, 0)
    return ms << (NODE_BITS + SEQ_BITS)
