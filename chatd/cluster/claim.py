"""What a login's claim on the bus can get (shared by both buses and the router)."""

from typing import NamedTuple

HELD, CLAIMED, FULL = 0, 1, 2  # a claim's result: errno 2, yes, errno 166
SEVERAL = b"*"  # `locate`'s answer for a user whose devices are on several nodes


class Claim(NamedTuple):
    """What a login's claim got: `result`; `taken_from`, the node whose session of the same
    device it took over (b"" for none); `spread`, whether the user's devices are now on more
    than one node; `lapsing_ms`, for a refusal (HELD) because of a node that has stopped
    renewing its liveness lease, the milliseconds the lease has left (0 otherwise)."""

    result: int
    taken_from: bytes = b""
    spread: bool = False
    lapsing_ms: int = 0
