"""Resume tokens (docs/protocol.md): a login without the password hash, for clients coming back
after their node went away. A token is `<user id>.<issued, ms since the epoch>.<signature>`,
signed with HMAC-SHA256 under a secret every node of the cluster reads from the database."""

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

DEFAULT_LIFETIME = 7 * 24 * 3600.0
# Nodes' clocks differ a little: a logout revokes what was issued up to this much after it
# on any node, and a token dated further than this in the future is refused.
CLOCK_SKEW_MS = 2000
_SIG_BYTES = 24


class TokenSigner:
    """Issues and checks the tokens of one cluster (one secret, one lifetime)."""

    def __init__(self, secret: bytes, lifetime: float = DEFAULT_LIFETIME,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._lifetime_ms = int(lifetime * 1000)
        self._clock = clock

    def issue(self, user_id: int, after_ms: int = 0) -> str:
        """A token of the user dated now, or just after `after_ms` (a revocation that runs
        ahead of the clock by CLOCK_SKEW_MS) when that is later."""
        issued = max(self._now_ms(), after_ms + 1)
        return f"{user_id}.{issued}.{self._sign(user_id, issued)}"

    def valid(self, token: str, user_id: int, revoked_until_ms: int) -> bool:
        """True for an unexpired, unrevoked token of this user with a good signature."""
        parts = token.split(".")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
            return False
        if int(parts[0]) != user_id:
            return False
        issued = int(parts[1])
        now = self._now_ms()
        if not revoked_until_ms < issued <= now + CLOCK_SKEW_MS:
            return False
        if now - issued >= self._lifetime_ms:
            return False
        return hmac.compare_digest(parts[2], self._sign(user_id, issued))

    def revocation_ms(self) -> int:
        """What a logout now stores: tokens issued up to this time are revoked."""
        return self._now_ms() + CLOCK_SKEW_MS

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _sign(self, user_id: int, issued: int) -> str:
        return sign(self._secret, b"chatd-token|%d|%d" % (user_id, issued))


def sign(secret: bytes, message: bytes) -> str:
    """The cluster's signature of `message` (HMAC-SHA256, URL-safe base64): resume tokens,
    and the upload slots and download URLs of attachments."""
    mac = hmac.new(secret, message, hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:_SIG_BYTES]).decode("ascii")


def signed(secret: bytes, message: bytes, signature: str) -> bool:
    """Whether `signature` is `sign(secret, message)`, compared in constant time."""
    return hmac.compare_digest(signature.encode("ascii", "replace"), sign(secret, message).encode())
