"""Throttles keyed by client address: failed logins (per account and address, and per
address) and registrations per address.

The counters live on the bus, so in a cluster a client moving to another node keeps its
count (Redis keys with expiry); a node alone keeps them in memory. A guesser is locked out
per (account, address): the owner logging in from another address is not.
"""

import math
from dataclasses import dataclass

from twisted.logger import Logger

from chatd.cluster import Bus
from chatd.messages import ChatError, Errno, ServiceUnavailable

log = Logger()

WINDOW = 60.0
MAX_BACKOFF = 3600.0
DEFAULT_LOGIN_FAILURES = 5
DEFAULT_ADDRESS_FAILURES = 30
DEFAULT_LOGIN_BACKOFF = 60.0
DEFAULT_REGISTRATIONS = 20


@dataclass(frozen=True)
class ThrottleLimits:
    """The thresholds; each is a `twistd chatd` option."""

    login_failures: int = DEFAULT_LOGIN_FAILURES  # per (account, address) in WINDOW
    address_failures: int = DEFAULT_ADDRESS_FAILURES  # per address, any account, in WINDOW
    login_backoff: float = DEFAULT_LOGIN_BACKOFF  # first lock-out; doubles with each failure
    registrations: int = DEFAULT_REGISTRATIONS  # per address in WINDOW


class Throttle:
    """Synapse-style back-off: after `threshold` failures within WINDOW a key is locked for
    `login_backoff` seconds, doubling (up to an hour) with each failure after the lock lifts,
    until the key has had no failure for WINDOW seconds past its last lock."""

    def __init__(self, bus: Bus, limits: ThrottleLimits = ThrottleLimits()) -> None:
        self._bus = bus
        self.limits = limits

    def _login_keys(self, user_id: int, address: str) -> list[tuple[str, int]]:
        return [(f"fail:{user_id}:{address}", self.limits.login_failures),
                (f"fail:{address}", self.limits.address_failures)]

    async def check_login(self, user_id: int, address: str) -> None:
        """Raise errno 142 with `retry_after` while the account or the address is locked."""
        keys = [f"lock:{key}" for key, _ in self._login_keys(user_id, address)]
        wait = max(await self._bus.remaining(keys))
        if wait > 0:
            raise ChatError(Errno.THROTTLED, retry_after=math.ceil(wait))

    async def login_failed(self, user_id: int, address: str) -> None:
        """Count a failure; lock the keys that reached their threshold."""
        for key, threshold in self._login_keys(user_id, address):
            failures = await self._bus.incr(key, WINDOW)
            if failures >= threshold:
                lock = min(MAX_BACKOFF, self.limits.login_backoff * 2 ** (failures - threshold))
                await self._bus.incr(f"lock:{key}", lock)
                await self._bus.expire(key, lock + WINDOW)
                log.info("login throttled for {lock}s: {key} ({n} failures)", lock=lock,
                         key=key, n=failures)

    async def check_registration(self, address: str) -> None:
        """Count a registration; raise errno 144 beyond the rate of the address. While the
        bus is down registrations go on uncounted: they need only the database."""
        key = f"reg:{address}"
        try:
            if await self._bus.incr(key, WINDOW) <= self.limits.registrations:
                return
            wait = (await self._bus.remaining([key]))[0]
        except ServiceUnavailable:
            return
        raise ChatError(Errno.REGISTRATION_RATE, retry_after=max(1, math.ceil(wait)))
