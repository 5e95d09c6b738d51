"""What every node of a cluster must share, and how a node finds out that another does not.

Some settings work only when every node has the same, and nothing in Redis or the database
notices a difference: the Redis database number (publish/subscribe ignores it, so one-to-one
chat passes while the session keys that group copies need live in another database), the key
prefix, the database of users and groups (--db), --history-days (a node keeping fewer days
deletes what the others still serve) and --max-devices (each login is counted against its own
node's limit); and no two nodes may share a node id (it is part of every message id). So the
nodes say what they use, on a channel of their own:

- a node joining (at its first connection to the bus) publishes a Hello with its settings,
  and every node of the cluster answers with a Present (a node joining at the same time
  counts its Hello as its answer). A newcomer that hears a difference
  refuses to start (`on_refused`), with one sentence per difference naming both nodes. It
  waits for as many answers as PUBLISH counted listeners, at most JOIN_SECONDS (a frozen node
  does not answer);
- a node of the cluster announces itself every ANNOUNCE_SECONDS. One that hears another node
  of the cluster differ (a difference that appears later: a newcomer that did not hear a
  frozen node, nodes started while Redis was unreachable) logs an error and reports it in
  `conflicts()` (/health, a metric) until it has not heard that node for FORGET_SECONDS.

The channel's name does not use the key prefix, and publish/subscribe ignores the database
number: nodes that differ in either still hear each other there.
"""

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd.cluster.envelope import Hello, Present, Setting, decode_agreement

log = Logger()

ANNOUNCE_SECONDS = 5.0
FORGET_SECONDS = 3 * ANNOUNCE_SECONDS
JOIN_SECONDS = 2.0

# The settings every node must share, by the name they have in the letters, as the
# messages call them.
SETTINGS: dict[str, str] = {
    "redis-db": "Redis database number (--redis URL's /DB)",
    "key-prefix": "Redis key prefix",
    "database": "database (--db; its identity in the table ServerSecret)",
    "history-days": "--history-days",
    "max-devices": "--max-devices",
}


def differences(me: bytes, node_id: int, settings: dict[str, Setting],
                other: Hello | Present) -> list[str]:
    """What this node (`me`, number `node_id`) and the one that sent `other` disagree on:
    one sentence each, naming both nodes. A setting one of them does not name is not
    compared."""
    mine, theirs = me.decode(), other.origin.decode(errors="replace")
    found = []
    if other.node_id == node_id:
        found.append(f"node id {node_id} (--node-id) is used by both node {mine} and node "
                     f"{theirs}")
    for name, what in SETTINGS.items():
        ours, their = settings.get(name), other.settings.get(name)
        if ours is not None and their is not None and ours != their:
            found.append(f"{what} is {ours} on node {mine} but {their} on node {theirs}")
    return found


class Agreement:
    """This node's side of the comparison; see the module docstring. The bus calls
    `connected`, `disconnected` and `heard`; the node calls `known` for a setting learnt
    after start and sets `on_refused`."""

    def __init__(self, incarnation: bytes, node_id: int, settings: dict[str, Setting],
                 clock: IReactorTime) -> None:
        self.incarnation = incarnation
        self.node_id = node_id
        self.settings = settings
        self.joined = False
        # called when joining found differences (their sentences, logged already): the
        # node stops (chatd/tap.py)
        self.on_refused: Callable[[list[str]], None] | None = None
        self._clock = clock
        self._publish: Callable[[bytes], Deferred[int]] | None = None
        self._heard: dict[bytes, float] = {}  # node -> when it last said it is there
        self._conflicts: dict[bytes, list[str]] = {}  # node of the cluster -> differences
        # while joining: the nodes that answered, the differences heard, the answers awaited
        self._answers: set[bytes] = set()
        self._refusals: dict[bytes, list[str]] = {}
        self._expected: int | None = None
        self._join_timer: IDelayedCall | None = None
        self._announcer = LoopingCall(self._announce)
        self._announcer.clock = clock

    def known(self, name: str, value: Setting) -> None:
        """A setting learnt after start (the database's identity, once the store answers):
        joining waits for it."""
        self.settings[name] = value
        self._go()

    def connected(self, publish: Callable[[bytes], Deferred[int]]) -> None:
        """The bus listens to the agreement channel and can publish on it."""
        self._publish = publish
        self._go()

    def disconnected(self) -> None:
        """The bus went away (or the node stops): joining starts over at the next
        connection, announcements pause."""
        self._publish = None
        if self._announcer.running:
            self._announcer.stop()
        if self._join_timer is not None and self._join_timer.active():
            self._join_timer.cancel()
        self._join_timer = None

    def peers(self) -> set[bytes]:
        """The other nodes of the cluster heard lately (whose sessions a reconnecting bus
        waits for, chatd/cluster/redis.py)."""
        self._forget()
        return set(self._heard)

    def conflicts(self) -> list[str]:
        """The differences with the nodes of the cluster heard lately."""
        self._forget()
        return [line for lines in self._conflicts.values() for line in lines]

    def _forget(self) -> None:
        """Nodes not heard for FORGET_SECONDS have gone, and their differences with them."""
        gone = self._clock.seconds() - FORGET_SECONDS
        for node in [n for n, heard in self._heard.items() if heard < gone]:
            del self._heard[node]
            self._conflicts.pop(node, None)

    def heard(self, payload: bytes) -> None:
        """A letter from the agreement channel (this node's own come back too)."""
        letter = decode_agreement(payload)
        if letter is None or letter.origin == self.incarnation:
            return
        found = differences(self.incarnation, self.node_id, self.settings, letter)
        if not self.joined:  # a newcomer joining at the same time answers with its Hello
            if found:
                self._refusals[letter.origin] = found
            if type(letter) is Present:
                self._heard[letter.origin] = self._clock.seconds()
            self._answers.add(letter.origin)
            self._answered()
            return
        if type(letter) is Hello:
            if found:
                log.warn("node {node} is joining with other settings and will refuse to "
                         "start: {what}", node=letter.origin.decode(errors="replace"),
                         what="; ".join(found))
            self._announce()
            return
        self._heard[letter.origin] = self._clock.seconds()
        self._compare(letter.origin, found)

    def _compare(self, node: bytes, found: list[str]) -> None:
        """A node of the cluster announced itself: keep what differs, log what changed."""
        if not found:
            if self._conflicts.pop(node, None) is not None:
                log.info("node {node} shares this node's settings again",
                         node=node.decode(errors="replace"))
            return
        if self._conflicts.get(node) == found:
            return
        first = node not in self._conflicts
        self._conflicts[node] = found
        log.error("the cluster is misconfigured: {what}; every node needs the same "
                  "(docs/deploy.md)", what="; ".join(found))
        if first:
            self._announce()  # the other node hears the difference at once too

    def _go(self) -> None:
        """Join, or announce again after a reconnection, once connected and every setting
        is known."""
        if self._publish is None or any(name not in self.settings for name in SETTINGS):
            return
        if self.joined:
            if not self._announcer.running:
                self._announcer.start(ANNOUNCE_SECONDS)
            return
        if self._join_timer is not None:
            return
        self._answers, self._refusals, self._expected = set(), {}, None
        self._join_timer = self._clock.callLater(JOIN_SECONDS, self._join)
        hello = Hello(self.incarnation, self.node_id, self.settings).encode()
        self._publish(hello).addCallbacks(self._counted, lambda f: None)

    def _counted(self, receivers: int) -> None:
        """PUBLISH counted the Hello's listeners: each but this node answers."""
        self._expected = receivers - 1
        self._answered()

    def _answered(self) -> None:
        if self._expected is not None and len(self._answers) >= self._expected:
            self._join()

    def _join(self) -> None:
        """Every listener answered, or JOIN_SECONDS passed: refuse, or be in."""
        if self._join_timer is None:
            return
        if self._join_timer.active():
            self._join_timer.cancel()
        self._join_timer = None
        if self._refusals:
            found = [line for lines in self._refusals.values() for line in lines]
            log.critical("refusing to join the cluster: {what}; every node needs the same "
                         "(docs/deploy.md)", what="; ".join(found))
            if self.on_refused is not None:
                self.on_refused(found)
            return
        self.joined = True
        log.info("joined the cluster: {answered} other node(s) answered with the same "
                 "settings{missing}", answered=len(self._answers),
                 missing="" if self._expected is None or len(self._answers) >= self._expected
                 else f" ({self._expected - len(self._answers)} did not answer in time)")
        self._announcer.start(ANNOUNCE_SECONDS)

    def _announce(self) -> None:
        self._forget()
        if self._publish is not None:
            present = Present(self.incarnation, self.node_id, self.settings).encode()
            self._publish(present).addErrback(_ignore)


def _ignore(failure: Any) -> None:
    """An announcement that did not go out: the next one will."""
