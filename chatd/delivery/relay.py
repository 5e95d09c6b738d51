"""Copies handed to other nodes, and the reports that settle them.

A copy for a user held by another node travels in a letter (chatd/cluster/envelope.py) with
a token; the receiving node reports the token once its copies are safe (acknowledged,
written to an original-dialect session, or stored). A copy nobody received, or whose report
does not come within `report_timeout`, is stored offline here instead. Reports to one node
are gathered for a reactor turn and go in one letter: under load that halves the bus traffic
of cross-node chat.
"""

from itertools import count

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from chatd.cluster import SEVERAL, Bus
from chatd.cluster.envelope import encode_copy, encode_group_copy, encode_reports
from chatd.delivery.offline import Offline
from chatd.delivery.receipts import Fanout
from chatd.metrics import REMOTE, Stats


class _Remote:
    """Copies handed to another node, waiting for its report."""

    __slots__ = ("fan", "user_ids", "mid", "frame", "deadline")

    def __init__(self, fan: Fanout, user_ids: list[int], mid: int, frame: bytes,
                 deadline: float) -> None:
        self.fan, self.user_ids, self.mid, self.frame, self.deadline = (
            fan, user_ids, mid, frame, deadline)


class Report:
    """The receipt of copies from another node: once they are safe, report to it (whether
    or not the users exist here; the sending node answers its sender)."""

    __slots__ = ("relay", "report_to", "token")

    def __init__(self, relay: "Relay", report_to: bytes, token: int) -> None:
        self.relay, self.report_to, self.token = relay, report_to, token

    def delivered(self, missing: object, full: object) -> None:
        self.relay.report(self.report_to, self.token)

    def failed(self, failure: Failure) -> None:
        """Not reported: the sending node stores the copies itself when no report comes."""


class Relay:
    """This node's copies in flight to other nodes, and its reports to them."""

    def __init__(self, bus: Bus, clock: IReactorTime, offline: Offline, stats: Stats,
                 report_timeout: float) -> None:
        self.bus = bus
        self.offline = offline
        self.stats = stats
        self.report_timeout = report_timeout
        self._clock = clock
        self._pending: dict[int, _Remote] = {}
        self._tokens = count(1)
        self._reports: dict[bytes, list[int]] = {}  # node -> tokens to report this turn

    def pending(self) -> int:
        """Copies waiting for another node's report (a metric)."""
        return len(self._pending)

    def send(self, user_ids: list[int], mid: int, frame: bytes, fan: Fanout) -> None:
        """Copies for users not held here: through the user's channel for one, through the
        nodes' channels (one letter per node) for several."""
        if len(user_ids) == 1:
            self._to_user(user_ids[0], mid, frame, fan)
            return
        self.bus.locate(user_ids).addCallbacks(
            self._to_nodes, lambda f: self.offline.store_new(user_ids, mid, frame, fan),
            callbackArgs=(user_ids, mid, frame, fan))

    def _expect_report(self, fan: Fanout, user_ids: list[int], mid: int, frame: bytes) -> int:
        token = next(self._tokens)
        deadline = self._clock.seconds() + self.report_timeout
        self._pending[token] = _Remote(fan, user_ids, mid, frame, deadline)
        return token

    def _to_user(self, user_id: int, mid: int, frame: bytes, fan: Fanout) -> None:
        token = self._expect_report(fan, [user_id], mid, frame)
        letter = encode_copy(mid, self.bus.incarnation, token, frame)
        self.bus.carry(user_id, letter, self._answered, token)

    def _to_nodes(self, where: dict[int, bytes], user_ids: list[int], mid: int, frame: bytes,
                  fan: Fanout) -> None:
        by_node: dict[bytes, list[int]] = {}
        nowhere = []
        for user_id in user_ids:
            node = where.get(user_id)
            if node is None or node == self.bus.incarnation:
                nowhere.append(user_id)
            elif node == SEVERAL:
                self._to_user(user_id, mid, frame, fan)
            else:
                by_node.setdefault(node, []).append(user_id)
        if nowhere:
            self.offline.store_new(nowhere, mid, frame, fan)
        for node, users in by_node.items():
            token = self._expect_report(fan, users, mid, frame)
            letter = encode_group_copy(mid, self.bus.incarnation, token, users, frame)
            self.bus.carry_node(node, letter, self._answered, token)

    def _answered(self, receivers: int, token: int) -> None:
        """The bus says how many nodes got copy `token`: none (or the bus is down) means
        nobody will report it, so it is stored here."""
        if not receivers:
            self._give_up(token)
            return
        remote = self._pending.get(token)
        if remote is not None:
            self.stats.routes[REMOTE] += len(remote.user_ids)

    def _give_up(self, token: int) -> None:
        """No node took the copies (or none reported in time): store them here."""
        remote = self._pending.pop(token, None)
        if remote is not None:
            self.offline.store_new(remote.user_ids, remote.mid, remote.frame, remote.fan)

    def settled(self, tokens: list[int]) -> None:
        """Another node reports these copies safe."""
        for token in tokens:
            remote = self._pending.pop(token, None)
            if remote is not None:
                remote.fan.done(len(remote.user_ids))

    def expire(self, now: float) -> None:
        """Store the copies whose report is overdue."""
        for token in [t for t, r in self._pending.items() if r.deadline < now]:
            self._give_up(token)

    def report(self, report_to: bytes, token: int) -> None:
        """Copies from the node `report_to` are safe: tell it, with this turn's others."""
        if not self._reports:
            self._clock.callLater(0, self.send_reports)
        self._reports.setdefault(report_to, []).append(token)

    def send_reports(self) -> None:
        """One letter per node for all the reports of this reactor turn."""
        reports, self._reports = self._reports, {}
        for node, tokens in reports.items():
            self.bus.publish_node(node, encode_reports(tokens)).addErrback(lambda f: None)

    def stop(self) -> None:
        """Store what other nodes never confirmed, and send the reports owed."""
        for token in list(self._pending):
            self._give_up(token)
        self.send_reports()
