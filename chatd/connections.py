"""The node's open connections, counted once for all its listeners: per client address (the
chat port and the web listener share one count) and per listener under a node-wide ceiling
kept below the process's file limit, so that a flood on one port cannot take the descriptors
the other ports, the store, Redis and the logs need."""

import resource
from collections import Counter
from typing import Any

DEFAULT_MAX_CONNS_PER_ADDRESS = 500
# Descriptors kept out of --max-connections: the database pool, Redis (two links), the log
# files, the listening sockets, the reactor's own, the admin listener's operators, and the
# connections being refused (each is accepted, answered and closed).
RESERVED_FDS = 128

# Connections refused as they open that may be being answered (an error frame, a 429 or a
# 503) at once: each holds a descriptor until its answer is written, and a listener accepts
# a hundred or more in one turn. Past this a connection that would be refused is closed at
# accept without an answer, so that a flood of refusals costs no descriptors.
ANSWERING = 32

CHAT, WEB, ADMIN = "chat", "web", "admin"
LISTENERS = (CHAT, WEB, ADMIN)
# The admin listener is counted, never refused: operators must reach a node under attack,
# and its connections come out of RESERVED_FDS.
CLIENT_LISTENERS = (CHAT, WEB)


def host(address: Any) -> str:
    """A client's address (an IAddress) as the per-address limits and the logs name it."""
    return str(getattr(address, "host", None) or address)


class AddressCount:
    """How many of something each client address holds, against one limit. `admit` counts
    even when it refuses and `release` always uncounts, so that a caller pairs the two
    without remembering which way the first one went."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        """Count one more for `address`; False when that takes it past the limit."""
        self._held[address] += 1
        return self._held[address] <= self.limit

    def full(self, address: str) -> bool:
        """Whether one more for `address` would be refused (nothing is counted)."""
        return self._held.get(address, 0) >= self.limit

    def release(self, address: str) -> None:
        left = self._held[address] - 1
        if left > 0:
            self._held[address] = left
        else:
            del self._held[address]


class Connections:
    """Every client connection of the node: `per_address` across the chat port and the web
    listener (before and after a WebSocket upgrade: one connection, one count), `open` by
    listener, the refusals by listener and reason for /metrics, and `answering`: the
    connections refused as they opened whose answer may not be out yet."""

    def __init__(self, max_per_address: int, max_connections: int) -> None:
        self.per_address = AddressCount(max_per_address)
        self.max_connections = max_connections
        self.open: Counter[str] = Counter(dict.fromkeys(LISTENERS, 0))
        self.refused: Counter[tuple[str, str]] = Counter()
        self.answering = 0

    def opened(self, listener: str) -> bool:
        """Count a connection a listener accepted; False when the client listeners hold more
        than --max-connections with it (an admin connection is never refused). Pair with
        `closed` whatever the answer."""
        self.open[listener] += 1
        if listener == ADMIN:
            return True
        return self._clients() <= self.max_connections

    def _clients(self) -> int:
        return sum(self.open[name] for name in CLIENT_LISTENERS)

    def closed(self, listener: str, refused_at_open: bool = False) -> None:
        self.open[listener] -= 1
        if refused_at_open:
            self.answering -= 1

    def refuse(self, listener: str, reason: str, at_open: bool = False) -> None:
        """Count a connection closed by a defence (reason: a short fixed word); `at_open`:
        refused as it opened, answered now (pass it to `closed` too)."""
        self.refused[listener, reason] += 1
        if at_open:
            self.answering += 1

    def drop(self, listener: str, address: str | None) -> bool:
        """Whether to close a connection at accept, unanswered: it would be refused (the
        node is full, or `address`, when it is known yet, holds its limit) while ANSWERING
        refused connections are being answered already."""
        if self.answering < ANSWERING:
            return False
        if self._clients() < self.max_connections and (
                address is None or not self.per_address.full(address)):
            return False
        self.refuse(listener, "dropped")
        return True


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard limit where the system allows it (a
    systemd unit or `ulimit -Hn` sets the hard one), and return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def default_max_connections(file_limit: int) -> int:
    """--max-connections when none is given: the file limit less RESERVED_FDS (less half
    of a very small limit)."""
    return file_limit - min(RESERVED_FDS, file_limit // 2)
