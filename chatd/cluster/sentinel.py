"""Redis behind Sentinel: where the master is, and word the moment it moves.

With `--redis sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]` the bus connects to whatever
server the sentinels name as the master of SERVICE, asked again (txredisapi's
`Sentinel.discover_master`: every sentinel, the first that names a master it does not think
down; again every DISCOVERY_ROUND while none does) before each connection attempt; a server
that does not say it is the master (ROLE) when the bus reaches it, or that the sentinels asked
again at that moment no longer name, is dropped and asked for again (chatd/cluster/redis.py).

A killed master drops the bus's connections at once, but a frozen one (SIGSTOP, a machine
that stopped answering) keeps them open and just never replies: every request waits (a proto-2
message waits for the cid registry, so even chat between a node's own users stalls), and the
bus would only notice when a reply times out. So the watch also subscribes to two events of
every sentinel: `+odown`, published once a quorum of sentinels agrees that the master is down
(`down` is told its address: the bus leaves it, and serves as when Redis is unreachable), and
`+switch-master`, published when a failover (or a planned switchover, SENTINEL FAILOVER) has
promoted a replica (`switched` is told the new master's address: the bus leaves any other).
"""

from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

CONNECT_TIMEOUT = 2  # seconds to reach a sentinel or a master
DISCOVERY_TIMEOUT = 5  # seconds for the sentinels to name a master before the attempt fails
# While none does (the master is down, the failover under way) they are asked again this
# often: the new master is used within this much of its promotion.
DISCOVERY_ROUND = 0.25
SWITCH_MASTER = "+switch-master"  # <service> <old host> <old port> <new host> <new port>
DOWN = "+odown"  # master <service> <host> <port> #quorum <n>/<quorum>


@implementer(IStreamClientEndpoint)
class MasterEndpoint:
    """Connects to the master the sentinels name at the time of each attempt."""

    def __init__(self, sentinel: txredisapi.Sentinel, service: str, reactor: Any) -> None:
        self.sentinel, self.service, self.reactor = sentinel, service, reactor

    def connect(self, factory: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: Any) -> Any:
        deadline = self.reactor.seconds() + DISCOVERY_TIMEOUT
        while True:
            try:
                host, port = await self.sentinel.discover_master(self.service)
                break
            except txredisapi.MasterNotFoundError:
                if self.reactor.seconds() >= deadline:
                    raise
        endpoint = TCP4ClientEndpoint(self.reactor, host, port, timeout=CONNECT_TIMEOUT)
        return await endpoint.connect(factory)


class _Events(txredisapi.SubscriberProtocol):
    """One sentinel's `+odown` and `+switch-master` events."""

    def connectionMade(self) -> Deferred[Any]:
        d = super().connectionMade()
        return d.addCallback(
            lambda _: self.subscribe([DOWN, SWITCH_MASTER]) if self.connected else None)

    def messageReceived(self, pattern: Any, channel: str, message: str) -> None:
        self.factory.watch.heard(channel, message)


class SentinelWatch:
    """A connection to every sentinel for asking where the master is (`endpoint`), and one
    for hearing it go down (`down(host, port)`) or move (`switched(host, port)`). Both
    reconnect by themselves."""

    def __init__(self, sentinels: list[tuple[str, int]], service: str, reactor: Any,
                 down: Callable[[str, int], None],
                 switched: Callable[[str, int], None]) -> None:
        self.sentinels = sentinels
        self.service = service
        self.down = down
        self.switched = switched
        self._reactor = reactor
        self._asking: txredisapi.Sentinel | None = None
        self._listening: list[txredisapi.SubscriberFactory] = []

    def start(self) -> MasterEndpoint:
        """Connect to the sentinels; the endpoint of the master."""
        self._asking = txredisapi.Sentinel(self.sentinels, connectTimeout=CONNECT_TIMEOUT,
                                           replyTimeout=DISCOVERY_TIMEOUT)
        self._asking.discovery_timeout = DISCOVERY_ROUND
        for host, port in self.sentinels:
            factory = txredisapi.SubscriberFactory(isLazy=True)
            factory.protocol = _Events
            factory.watch = self
            factory.startConnecting(TCP4ClientEndpoint(self._reactor, host, port,
                                                       timeout=CONNECT_TIMEOUT))
            self._listening.append(factory)
        return MasterEndpoint(self._asking, self.service, self._reactor)

    async def stop(self) -> None:
        for factory in self._listening:
            await factory.disconnect()
        if self._asking is not None:
            await self._asking.disconnect()

    async def names(self, address: str) -> bool:
        """Whether the sentinels, asked now, name the server at `address` ("host:port") as
        the master."""
        assert self._asking is not None
        try:
            host, port = await self._asking.discover_master(self.service)
        except txredisapi.MasterNotFoundError:
            return False
        return f"{host}:{port}" == address

    def heard(self, event: str, message: str) -> None:
        """An event of the service's master (DOWN, SWITCH_MASTER); every sentinel sends
        it, so the same one comes several times. Those of other services are ignored."""
        fields = message.split()
        if (event == SWITCH_MASTER and len(fields) == 5 and fields[0] == self.service
                and fields[4].isdigit()):
            self.switched(fields[3], int(fields[4]))
        elif (event == DOWN and len(fields) >= 4 and fields[:2] == ["master", self.service]
              and fields[3].isdigit()):
            self.down(fields[2], int(fields[3]))
