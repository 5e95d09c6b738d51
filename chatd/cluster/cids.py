"""The answer of the (sender, cid) registry that makes a resent proto-2 message keep its mid."""

from collections.abc import Callable

# Called with the (mid, safe) recorded earlier for the same (sender, cid), or None.
Remembered = Callable[[tuple[int, bool] | None], None]
