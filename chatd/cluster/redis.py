"""The bus of a cluster: Redis publish/subscribe on txredisapi, one channel per user.

Two connections, as Redis requires: a subscriber connection holding the channels of this
node's users (plus the node's own channel and the control channel), and a command connection
for PUBLISH, presence (PUBSUB NUMSUB), session claims and the node's liveness key. Both go to
one server (`redis://`) or to the master Redis Sentinel names (`sentinel://`,
chatd/cluster/sentinel.py), and reconnect with back-off.

After a reconnect the node asserts again what it holds: every local channel is subscribed and
every session claimed again, which puts back the session keys (where users are) and the device
hashes, and its liveness key names the server it asserted them on (its run id). The server may
be a replica promoted by a failover, which lacks the last writes of the old master
(replication is asynchronous): until every node heard before the outage has asserted its
sessions on it (or SETTLE_SECONDS have passed), logins here wait, so that a claim lost with the
old master cannot let a second login of an account in while the first is still online on its
node.
"""

import os
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, succeed
from twisted.internet.defer import TimeoutError as Late
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from chatd.cluster.agreement import Agreement
from chatd.cluster.cids import Remembered
from chatd.cluster.claim import CLAIMED, HELD, Claim
from chatd.cluster.envelope import Setting
from chatd.cluster.locations import Locations
from chatd.cluster.sentinel import SentinelWatch
from chatd.messages import ServiceUnavailable

log = Logger()

KEY_PREFIX = "chatd:"  # of every key and channel but AGREEMENT; the nodes compare it
USER_PREFIX = f"{KEY_PREFIX}user:".encode()
DEVICE_PREFIX = f"{KEY_PREFIX}device:"  # <prefix>device:<user>:<device>, held by its node
DEVICES_PREFIX = f"{KEY_PREFIX}devices:"  # hash per user: device -> "<node> <since>"
NODE_PREFIX = f"{KEY_PREFIX}node:".encode()
CONTROL = f"{KEY_PREFIX}control".encode()
LOCATIONS = f"{KEY_PREFIX}located".encode()  # every change of a session key (locations.py)
SESSION_PREFIX = f"{KEY_PREFIX}session:"
SESSION_KEY = SESSION_PREFIX.encode()
ALIVE_PREFIX = f"{KEY_PREFIX}alive:"
CID_PREFIX = f"{KEY_PREFIX}cid:".encode()
COUNTER_PREFIX = f"{KEY_PREFIX}count:"
# Where nodes compare their settings (chatd/cluster/agreement.py): a name that never follows
# KEY_PREFIX, so that nodes differing in it still hear each other.
AGREEMENT = b"chatd-agreement"
CID_MS = b"600000"  # PX of a (sender, cid) entry: ten minutes
ALIVE_MS = 3000
# A holder whose lease has less than this left has missed its beats (a live node renews it
# every ALIVE_MS / 3): a login refused because of it claims again once the lease has run out.
LAPSING_MS = ALIVE_MS // 2
LEASE_MARGIN_MS = 50  # past the lease's end before claiming again (Redis expires keys lazily)
PING_SECONDS = 30.0
REPLY_TIMEOUT = 5
SETTLE_SECONDS = 5.0  # at most, after a reconnect, for the other nodes to claim again
SETTLE_POLL = 0.1
FIRST_CONNECT_SECONDS = 5.0  # at most, for a login that comes before the first connection
NOT_ASSERTED = b"-"  # the liveness key's value until the node has claimed again
# Reconnecting to a master named by Sentinel: at once, then quickly (the sentinels are asked
# each time, so there is no server to spare from a storm of attempts).
SENTINEL_FIRST_DELAY = 0.1
SENTINEL_MAX_DELAY = 1.0

# Set the session key (KEYS[1], chatd:session:<user>) to a node, or delete it (false), and
# announce the change to every node as "<user> <node>" ("<user> " when deleted).
LOCATE = f"""
local function locate(value)
  if redis.call('GET', KEYS[1]) == value then return end
  if value then redis.call('SET', KEYS[1], value) else redis.call('DEL', KEYS[1]) end
  local user = string.match(KEYS[1], '[^:]+$')
  redis.call('PUBLISH', '{LOCATIONS.decode()}', user .. ' ' .. (value or ''))
end
"""

# Claim a session of a user for this node. The session key names the node holding the user
# (proto 1, or all of the user's devices), or "*" when the devices are on several nodes; the
# devices hash says which node holds which device. A holder counts while it is alive and
# subscribed (as today's single-session rule): to the user's channel for an original-dialect
# session, to the device's own channel for a device (the claimant has subscribed to both, hence
# "more than one" where it is one of them). Dead holders' devices are deleted on the way.
# A refusal names the milliseconds left of the holder's lease when it is lapsing (0 when not).
# ARGV: node, user channel, alive prefix, device ('' = proto 1), max devices, device channel
# prefix, since, mode ('login', 'takeover' or 'reclaim'), lapsing ms.
# Returns {result, taken from, spread, ms left of a lapsing holder}.
CLAIM = LOCATE + """
local node, device = ARGV[1], ARGV[4]
local function alive(holder) return redis.call('EXISTS', ARGV[3] .. holder) == 1 end
local function lapsing(holder)
  local left = redis.call('PTTL', ARGV[3] .. holder)
  if left < tonumber(ARGV[9]) then return math.max(left, 1) end
  return 0
end
local function subscribed(channel, least)
  return tonumber(redis.call('PUBSUB', 'NUMSUB', channel)[2]) >= least
end
local live, nodes, previous = 0, {}, ''
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  local name, holder = entries[i], string.match(entries[i + 1], '^%S+')
  if name == device then
    if holder ~= node and alive(holder) and subscribed(ARGV[6] .. name, 2) then
      previous = holder
    end
  elseif alive(holder) and subscribed(ARGV[6] .. name, 1) then
    live = live + 1
    nodes[holder] = true
  else
    redis.call('HDEL', KEYS[2], name)
  end
end
if live == 0 and previous == '' then
  local holder = redis.call('GET', KEYS[1])
  if holder and holder ~= node and holder ~= '*' and alive(holder)
     and subscribed(ARGV[2], 2) then return {0, '', 0, lapsing(holder)} end
end
if device == '' then
  if live > 0 then return {0, '', 0, 0} end
  locate(node)
  return {1, '', 0, 0}
end
if previous ~= '' and ARGV[8] ~= 'takeover' then return {0, '', 0, lapsing(previous)} end
if live >= tonumber(ARGV[5]) then return {2, '', 0, 0} end
redis.call('HSET', KEYS[2], device, node .. ' ' .. ARGV[7])
nodes[node] = true
local count, only = 0, node
for holder in pairs(nodes) do
  count = count + 1
  only = holder
end
locate(count == 1 and only or '*')
return {1, previous, count > 1 and 1 or 0, 0}
"""
CLAIM_SCRIPT = CLAIM.encode()
# The milliseconds each counter (KEYS) has left, as PTTL gives them: every login asks for
# two, and one command is one reply and one Deferred where two PTTLs were three.
PTTLS = b"""
local left = {}
for i, key in ipairs(KEYS) do left[i] = redis.call('PTTL', key) end
return left
"""
INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""
RELEASE = LOCATE + """
if redis.call('GET', KEYS[1]) == ARGV[1] then locate(false) end
return 1
"""
# Release a device held by this node (ARGV: node, device) and name the node(s) left holding the
# user's devices in the session key.
RELEASE_DEVICE = LOCATE + """
local value = redis.call('HGET', KEYS[2], ARGV[2])
if value and string.match(value, '^%S+') == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
local nodes, count, only = {}, 0, ''
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local holder = string.match(v, '^%S+')
  if not nodes[holder] then
    nodes[holder] = true
    count = count + 1
    only = holder
  end
end
local holder = redis.call('GET', KEYS[1])
if count == 0 then
  if holder == ARGV[1] or holder == '*' then locate(false) end
else locate(count == 1 and only or '*') end
return 1
"""

# The devices of a user whose node is alive and subscribed to the device's channel
# (ARGV: alive prefix, device channel prefix), as HGETALL gives them.
DEVICES = """
local out = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local holder = string.match(entries[i + 1], '^%S+')
  if redis.call('EXISTS', ARGV[1] .. holder) == 1
     and tonumber(redis.call('PUBSUB', 'NUMSUB', ARGV[2] .. entries[i])[2]) > 0 then
    table.insert(out, entries[i])
    table.insert(out, entries[i + 1])
  end
end
return out
"""


class BusListener(Protocol):
    """Who gets what arrives on the bus (chatd/delivery/inbound.py)."""

    def from_user_channel(self, user_id: int, payload: bytes) -> None: ...

    def from_node_channel(self, payload: bytes) -> None: ...

    def from_control(self, payload: bytes) -> None: ...

    def bus_reconnected(self) -> None: ...


class BusDown(ServiceUnavailable):
    """Redis cannot be reached right now."""


def user_channel(user_id: int) -> bytes:
    return USER_PREFIX + str(user_id).encode()


def device_channel(user_id: int, device: str) -> bytes:
    return f"{DEVICE_PREFIX}{user_id}:{device}".encode()


def _keys(user_id: int) -> list[str]:
    return [SESSION_PREFIX + str(user_id), DEVICES_PREFIX + str(user_id)]


class RedisTarget(NamedTuple):
    """Where the bus connects: one server (`host`, `port`), or the master that the
    `sentinels` name for `service`."""

    host: str
    port: int
    db: int
    password: str | None
    sentinels: list[tuple[str, int]]  # empty for redis://
    service: str

    def __str__(self) -> str:
        if self.sentinels:
            return f"sentinel service {self.service!r}"
        return f"redis {self.host}:{self.port}"


def parse_redis_url(url: str) -> RedisTarget:
    """`redis://[:password@]host[:port][/db]`, or
    `sentinel://[:password@]host:port[,host:port...]/service[/db]` (the password is the
    master's); raises ValueError naming what is wrong."""
    if url.startswith("sentinel://"):
        return _parse_sentinel_url(url)
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"not a redis://host:port/db or sentinel://host:port,.../service/db "
                         f"URL: {url}")
    try:
        db = int(parts.path.lstrip("/") or 0)
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"not a redis://host:port/db URL: {url}") from None
    password = unquote(parts.password) if parts.password else None
    return RedisTarget(parts.hostname or "127.0.0.1", port, db, password, [], "")


def _parse_sentinel_url(url: str) -> RedisTarget:
    rest = url[len("sentinel://"):]
    userinfo, at, rest = rest.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) or None if at else None
    hosts, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    sentinels = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"sentinel://: {address!r} is not host:port, in {url}")
        sentinels.append((host, int(port)))
    if not service or "/" in db or (db and not db.isdigit()):
        raise ValueError(f"not a sentinel://host:port,.../service[/db] URL: {url}")
    return RedisTarget("", 0, int(db or 0), password, sentinels, service)


class _LeanReplies:
    """Replies from hiredis's reader go straight to `replyReceived`.

    txredisapi's own loop walks every reply again to convert numbers and text and to track
    MULTI transactions; this bus asks for neither (charset None, convertNumbers False, no
    MULTI), so the walk changes nothing, and under cross-node chat it was a tenth of the
    receiving node's Redis time (a message is a list of three).
    """

    _reader: Any

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        reader = self._reader
        reader.feed(data)
        reply = reader.gets()
        while reply is not False:
            self.replyReceived(reply)  # type: ignore[attr-defined]
            reply = reader.gets()


class _MasterOnly:
    """Behind Sentinel, a connection is used only once the server says it is the master
    (ROLE) and the sentinels, asked again at that moment, name it too.

    The sentinels may have named a server a moment before a failover turned it into a
    replica; and a frozen master's kernel still accepts connections, so a ROLE sent to it
    waits, and is answered "master" when it wakes after the failover, before the sentinels
    have told it that it is a replica now. Until then the connection waits in the factory's
    `pending`, where the sentinels' events can abort it (RedisBus._leave). ROLE is compared
    as bytes: txredisapi's SentinelRedisProtocol compares it with text and so drops every
    connection made without a charset, as the bus's are."""

    factory: "_Factory"
    password: str | None
    username: str | None
    transport: Any

    def connectionMade(self) -> Any:
        watch = self.factory.watch
        if watch is None:
            return super().connectionMade()  # type: ignore[misc]
        self.factory.pending.add(self)
        if self.password is not None:
            self.auth(self.password, self.username)  # type: ignore[attr-defined]
        return Deferred.fromCoroutine(self._confirm(watch))

    async def _confirm(self, watch: SentinelWatch) -> Any:
        peer = _address(self.transport.getPeer())
        try:
            role = await self.role()  # type: ignore[attr-defined]
            named = role[:1] == [b"master"] and await watch.names(peer)
        except Exception:  # the connection was lost or timed out: it reconnects
            named = False
        if self not in self.factory.pending:
            return None  # aborted meanwhile
        self.factory.pending.discard(self)
        if named:
            return super().connectionMade()  # type: ignore[misc]
        log.info("{peer} is no longer the master; asking the sentinels again", peer=peer)
        self.transport.loseConnection()
        return None

    def connectionLost(self, reason: Any) -> None:
        self.factory.pending.discard(self)
        super().connectionLost(reason)  # type: ignore[misc]


class _Subscriber(_MasterOnly, _LeanReplies, txredisapi.SubscriberProtocol):
    """Hands messages and subscription confirmations to the bus as they arrive.

    txredisapi matches SUBSCRIBE confirmations to callers by queue position, which breaks
    when several subscriptions are in flight; this protocol routes them by channel instead
    and writes SUBSCRIBE/UNSUBSCRIBE without queueing a reply.
    """

    def replyReceived(self, reply: object) -> None:
        if isinstance(reply, list) and len(reply) == 3:
            kind = reply[0]
            if kind == b"message":
                self.factory.bus.received(reply[1], reply[2])
                return
            if kind == b"subscribe":
                self.factory.bus.confirmed(reply[1])
                return
            if kind == b"unsubscribe":
                return
        super().replyReceived(reply)

    def send_command(self, *args: bytes) -> None:
        self.transport.write(self._build_command(*args))


class _Commands(_MasterOnly, _LeanReplies, txredisapi.RedisProtocol):
    """The command connection, with a lean path for the commands of every cross-node message
    (PUBLISH, and MGET for group fan-out).

    txredisapi's execute_command builds each request piece by piece and chains three Deferreds
    and a time-out per call: a third of a node's time under cross-node chat. `send` is one
    write and one Deferred from the same reply queue, so it stays in order with the other
    commands, and `publish` (a copy's PUBLISH, encoded in one format) and `ask` (the cid
    registry's SETs) one write and a plain callback; a dead link is still found by the PINGs,
    which keep their time-out.
    """

    def send(self, *args: bytes) -> Deferred[Any]:
        """One command; BusDown when the connection is down or is lost before the reply."""
        if not self.connected:
            raise BusDown("redis is not connected")
        self.transport.write(_request(args))
        return self.replyQueue.get().addCallback(_lean_reply)

    def ask(self, answer: "_Reply", *args: bytes) -> None:
        """One command, its reply (or the error that replaced it) going to `answer.callback`
        in the queue's order, without a Deferred (the caller has checked that the
        connection is up)."""
        self.transport.write(_request(args))
        self.replyQueue.waiting.append(answer)

    def publish(self, channel: bytes, payload: bytes, answer: "_Answer") -> None:
        """`ask` for PUBLISH, the command of every cross-node copy, in one format."""
        self.transport.write(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n"
                             % (len(channel), channel, len(payload), payload))
        self.replyQueue.waiting.append(answer)


class _Answer:
    """A copy's PUBLISH waiting for its receiver count in txredisapi's reply queue, beside the
    Deferreds there and fired the same way (`callback`), without a Deferred's machinery (a
    quarter of the sending node's cost of a cross-node copy): `answered(receivers, token)`,
    0 receivers when the reply is an error (connection lost, time-out)."""

    __slots__ = ("answered", "token")

    def __init__(self, answered: Callable[[int, int], None], token: int) -> None:
        self.answered, self.token = answered, token

    def callback(self, reply: object) -> None:
        if type(reply) is int:
            self.answered(reply, self.token)
            return
        if not isinstance(reply, txredisapi.ConnectionError):
            log.warn("publish failed: {error}", error=reply)
        self.answered(0, self.token)


class _Reply(Protocol):
    """What waits for a reply of `_Commands.ask` in txredisapi's reply queue, fired the way
    a Deferred there is: with the reply, or with the error that replaced it."""

    def callback(self, reply: object) -> None: ...


class _CidEntry:
    """A (sender, cid) SET ... GET waiting for its reply: `then` gets the earlier (mid, safe),
    or None for a new cid, and also when the command failed (the message counts as new, as
    with the bus down)."""

    __slots__ = ("then",)

    def __init__(self, then: Remembered) -> None:
        self.then = then

    def callback(self, reply: object) -> None:
        self.then(_parse_cid_entry(reply) if type(reply) is bytes else None)


class _Ignored:
    """A reply no one waits for (settling a cid: a lost SET XX only makes a repeat count
    as in flight)."""

    __slots__ = ()

    def callback(self, reply: object) -> None:
        return None


_IGNORED = _Ignored()


class _Factory(txredisapi.RedisFactory):
    """Tells the bus when a connection becomes usable or goes away."""

    def __init__(self, bus: "RedisBus", protocol: type, db: int | None,
                 password: str | None, watch: SentinelWatch | None) -> None:
        super().__init__(None, db, 1, isLazy=True, charset=None, password=password,
                         replyTimeout=REPLY_TIMEOUT, convertNumbers=False)
        self.protocol = protocol
        self.bus = bus
        self.watch = watch  # behind Sentinel
        self.pending: set[_MasterOnly] = set()  # connections not confirmed as the master's
        if watch is not None:
            self.initialDelay, self.maxDelay = SENTINEL_FIRST_DELAY, SENTINEL_MAX_DELAY

    def addConnection(self, conn: txredisapi.BaseRedisProtocol) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self.bus.connected(self, conn)

    def delConnection(self, conn: txredisapi.BaseRedisProtocol) -> None:
        super().delConnection(conn)
        self.bus.disconnected(self)


class RedisBus:
    """Channels and claims of this node's users on Redis; see the module docstring."""

    def __init__(self, url: str, node_id: int, reactor: IReactorTCP | IReactorTime,
                 settings: dict[str, Setting]) -> None:
        """`settings`: those every node must share besides the Redis database and the key
        prefix (chatd/cluster/agreement.py)."""
        self.target = target = parse_redis_url(url)
        self.incarnation = f"{node_id}.{os.urandom(4).hex()}".encode()
        self.agreement = Agreement(self.incarnation, node_id, {
            "redis-db": target.db, "key-prefix": KEY_PREFIX, **settings}, reactor)
        self._agreement_heard = False  # the subscription to AGREEMENT is confirmed
        self.node_channel = NODE_PREFIX + self.incarnation
        self.listener: BusListener | None = None
        self._reactor = reactor
        self._watch = SentinelWatch(target.sentinels, target.service, reactor,
                                    self.master_down, self.master_switched
                                    ) if target.sentinels else None
        self._subscriber_factory = _Factory(self, _Subscriber, None, target.password,
                                            self._watch)
        self._command_factory = _Factory(self, _Commands, target.db, target.password,
                                         self._watch)
        self._asserted = NOT_ASSERTED  # the run id of the server this node claimed again on
        self._peers_before: set[bytes] = set()  # nodes heard before the bus went away
        self._settled: Deferred[None] | None = None
        self._first: list[Deferred[None]] = []  # logins waiting for the first connection
        self._sub: _Subscriber | None = None
        self._cmd: _Commands | None = None
        self._held: dict[int, set[str]] = {}  # user -> sessions held here ("" = proto 1)
        self._confirm: dict[bytes, list[Deferred[None]]] = {}
        self.locations = Locations()
        self._down_logged = False
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = reactor
        self._started = False
        self._connected_before = False
        self.publishes = 0
        self.reconnects = 0  # times the bus came back (a failover, a restart, the network)

    # lifecycle

    def start(self) -> None:
        self._started = True
        target = self.target
        endpoint = (self._watch.start() if self._watch is not None
                    else TCP4ClientEndpoint(self._reactor, target.host, target.port, timeout=5))
        for factory in (self._subscriber_factory, self._command_factory):
            factory.startConnecting(endpoint)
        self._heartbeat.start(ALIVE_MS / 3000, now=False)
        self._pinger.start(PING_SECONDS, now=False)

    async def stop(self) -> None:
        self.agreement.disconnected()
        for loop in (self._heartbeat, self._pinger):
            if loop.running:
                loop.stop()
        if self._cmd is not None:
            self._release_all()
        for factory in (self._subscriber_factory, self._command_factory):
            await factory.disconnect()
        if self._watch is not None:
            await self._watch.stop()

    @property
    def up(self) -> bool:
        return self._sub is not None and self._cmd is not None

    def connected(self, factory: _Factory, conn: txredisapi.BaseRedisProtocol) -> None:
        if factory is self._subscriber_factory:
            self._sub = conn
            channels = [self.node_channel, CONTROL, LOCATIONS, AGREEMENT]
            channels += [user_channel(u) for u in self._held]
            channels += [device_channel(u, d) for u, ds in self._held.items() for d in ds if d]
            conn.send_command(b"SUBSCRIBE", *channels)
        else:
            self._cmd = conn
            self._beat()
            self._agree()
        if self.up:
            log.info("{target}: connected{server} as {inc}", target=self.target,
                     server=f" to {_address(conn.transport.getPeer())}" if self._watch else "",
                     inc=self.incarnation.decode())
            self._down_logged = False
            if self._connected_before:
                self.reconnects += 1
            self._connected_before = True
            first, self._first = self._first, []
            for d in first:
                d.callback(None)
            self._settled = Deferred.fromCoroutine(self._settle(self._peers_before))
            if self.listener is not None:
                self.listener.bus_reconnected()

    def disconnected(self, factory: _Factory) -> None:
        self.agreement.disconnected()
        if self.up:
            self._peers_before = self.agreement.peers()
        self._asserted = NOT_ASSERTED
        if factory is self._subscriber_factory:
            self._sub = None
            self._agreement_heard = False
            self.locations.forget()
            for waiters in self._confirm.values():
                for d in waiters:
                    d.errback(BusDown("redis connection lost"))
            self._confirm.clear()
        else:
            self._cmd = None
        if not self._down_logged and self._started:
            self._down_logged = True
            log.warn("{target}: connection lost; serving local users only and storing "
                     "messages for others until it returns", target=self.target)

    def master_down(self, host: str, port: int) -> None:
        """The sentinels agree that the master is down: leave it if it is this one (frozen,
        it holds the connections open and every request waits), and serve as when Redis is
        unreachable until they name another."""
        self._leave(lambda server: server == f"{host}:{port}",
                    f"the sentinels find the master {host}:{port} down")

    def master_switched(self, host: str, port: int) -> None:
        """The sentinels promoted another server: leave the old one at once, even if it
        still seems to answer (frozen, it never will; demoted, it is a replica)."""
        self._leave(lambda server: server != f"{host}:{port}",
                    f"the sentinels moved the master to {host}:{port}")

    def _leave(self, which: Callable[[str], bool], why: str) -> None:
        """Abort the connections to the servers `which` names, those still waiting to be
        confirmed as the master's included."""
        conns = [self._sub, self._cmd, *self._subscriber_factory.pending,
                 *self._command_factory.pending]
        for conn in conns:
            if conn is not None and which(_address(conn.transport.getPeer())):
                log.warn("{target}: {why}; reconnecting", target=self.target, why=why)
                conn.transport.abortConnection()

    async def _run_id(self, cmd: "_Commands") -> bytes:
        """The server's run id, which a restart or another server changes."""
        info = await cmd.send(b"INFO", b"server")
        for line in info.splitlines():
            if line.startswith(b"run_id:"):
                return line[len(b"run_id:"):].strip()
        raise BusDown("the server's INFO has no run_id")

    async def _settle(self, peers: set[bytes]) -> None:
        """Wait until every node in `peers` has claimed its sessions again on this server
        (its liveness key names it), at most SETTLE_SECONDS; see the module docstring."""
        deadline = self._reactor.seconds() + SETTLE_SECONDS
        waiting = sorted(peers)
        try:
            run_id = await self._run_id(self._command())
            while waiting:
                asserted = await self._command().send(
                    b"MGET", *[ALIVE_PREFIX.encode() + p for p in waiting])
                waiting = [p for p, v in zip(waiting, asserted, strict=True) if v != run_id]
                if not waiting or self._reactor.seconds() >= deadline:
                    break
                await deferLater(self._reactor, SETTLE_POLL, lambda: None)
        except BusDown:
            return  # gone again: logins are refused until it is back
        if waiting:
            log.warn("{target}: nodes {nodes} did not claim their sessions again within "
                     "{seconds:.0f} s; logging users in anyway", target=self.target,
                     nodes=", ".join(p.decode(errors="replace") for p in waiting),
                     seconds=SETTLE_SECONDS)

    # incoming

    def received(self, channel: bytes, payload: bytes) -> None:
        listener = self.listener
        if listener is None:
            return
        if channel.startswith(USER_PREFIX):
            listener.from_user_channel(int(channel[len(USER_PREFIX):]), payload)
        elif channel == self.node_channel:
            listener.from_node_channel(payload)
        elif channel == LOCATIONS:
            self.locations.heard(payload)
        elif channel == CONTROL:
            listener.from_control(payload)
        elif channel == AGREEMENT:
            self.agreement.heard(payload)

    def confirmed(self, channel: bytes) -> None:
        if channel == LOCATIONS:
            self.locations.listen()
        elif channel == AGREEMENT:
            self._agreement_heard = True
            self._agree()
        for d in self._confirm.pop(channel, []):
            d.callback(None)

    def _agree(self) -> None:
        """The agreement can publish and hears its channel once both connections are up."""
        if self._cmd is not None and self._agreement_heard:
            self.agreement.connected(lambda letter: self.publish_raw(AGREEMENT, letter))

    # outgoing

    def _command(self) -> _Commands:
        if self._cmd is None:
            raise BusDown("redis is not connected")
        return self._cmd

    def _lean(self) -> _Commands | None:
        """The command connection for `ask`, or None while it is down."""
        cmd = self._cmd
        return cmd if cmd is not None and cmd.connected else None

    def publish(self, user_id: int, payload: bytes) -> Deferred[int]:
        """PUBLISH on the user's channel; fires with the number of nodes that got it."""
        return self.publish_raw(user_channel(user_id), payload)

    def publish_node(self, incarnation: bytes, payload: bytes) -> Deferred[int]:
        return self.publish_raw(NODE_PREFIX + incarnation, payload)

    def publish_control(self, payload: bytes) -> Deferred[int]:
        return self.publish_raw(CONTROL, payload)

    def carry(self, user_id: int, payload: bytes, answered: Callable[[int, int], None],
              token: int) -> None:
        self._carry(user_channel(user_id), payload, answered, token)

    def carry_node(self, incarnation: bytes, payload: bytes,
                   answered: Callable[[int, int], None], token: int) -> None:
        self._carry(NODE_PREFIX + incarnation, payload, answered, token)

    def _carry(self, channel: bytes, payload: bytes, answered: Callable[[int, int], None],
               token: int) -> None:
        self.publishes += 1
        cmd = self._lean()
        if cmd is None:
            answered(0, token)
            return
        cmd.publish(channel, payload, _Answer(answered, token))

    def publish_raw(self, channel: bytes, payload: bytes) -> Deferred[int]:
        self.publishes += 1
        try:
            return self._command().send(b"PUBLISH", channel, payload)
        except BusDown as e:
            return fail(e)

    async def subscribe(self, user_id: int, device: str, since: int, max_devices: int,
                        takeover: bool) -> Claim:
        """Subscribe to the user's channel (and the device's), then claim the session."""
        if not self._connected_before:
            await self._first_connection()
        sub, cmd = self._sub, self._command()
        if sub is None:
            raise BusDown("redis is not connected")
        channels = [user_channel(user_id)] + ([device_channel(user_id, device)] if device else [])
        self._held.setdefault(user_id, set()).add(device)
        try:
            confirmed = []
            for channel in channels:
                confirmed.append(Deferred())
                self._confirm.setdefault(channel, []).append(confirmed[-1])
            sub.send_command(b"SUBSCRIBE", *channels)
            try:
                await gatherResults(confirmed, consumeErrors=True)
            except FirstError as e:
                e.subFailure.raiseException()
            if self._settled is not None:
                await self._settled
            mode = "takeover" if takeover else "login"
            claim = await self._claim(cmd, user_id, device, since, max_devices, mode)
            if claim.result == HELD and claim.lapsing_ms:
                claim = await self._claim_after_lease(user_id, device, since, max_devices,
                                                      mode, claim.lapsing_ms)
        except BaseException:
            self._drop(user_id, device)
            raise
        if claim.result != CLAIMED:
            self._drop(user_id, device)
        return claim

    async def _first_connection(self) -> None:
        """Wait, FIRST_CONNECT_SECONDS at most, for the node's first connection to Redis: a
        node listens before it has one, and nginx sends it clients at once, whose logins and
        registrations (claims, throttle counters) would otherwise be told to try again
        (errno 130) in its first moments."""
        d: Deferred[None] = Deferred()
        self._first.append(d)
        d.addTimeout(FIRST_CONNECT_SECONDS, self._reactor)
        try:
            await d
        except Late:
            pass  # not connected yet: the login's answer is errno 130
        finally:
            if d in self._first:
                self._first.remove(d)

    async def _claim_after_lease(self, user_id: int, device: str, since: int,
                                 max_devices: int, mode: str, lapsing_ms: int) -> Claim:
        """The account is held by a node that stopped renewing its lease (killed, or frozen
        with its connections still open): wait for the lease to run out, then claim again.
        A holder that beats meanwhile is alive after all, and the answer is errno 2."""
        await deferLater(self._reactor, (lapsing_ms + LEASE_MARGIN_MS) / 1000, lambda: None)
        return await self._claim(self._command(), user_id, device, since, max_devices, mode)

    async def _claim(self, cmd: _Commands, user_id: int, device: str, since: int,
                     max_devices: int, mode: str) -> Claim:
        args = [self.incarnation, user_channel(user_id), ALIVE_PREFIX, device, max_devices,
                f"{DEVICE_PREFIX}{user_id}:", since, mode, LAPSING_MS]
        result, taken_from, spread, lapsing_ms = await cmd.send(
            b"EVAL", CLAIM_SCRIPT, b"2", *[_bytes(a) for a in _keys(user_id) + args])
        return Claim(int(result), taken_from or b"", int(spread) == 1, int(lapsing_ms))

    def unsubscribe(self, user_id: int, device: str) -> Deferred[None]:
        if not self._drop(user_id, device) or self._cmd is None:
            return succeed(None)
        script, args = (RELEASE_DEVICE, [self.incarnation, device]) if device else (
            RELEASE, [self.incarnation])
        return self._cmd.eval(script, _keys(user_id), args).addBoth(lambda _: None)

    def _drop(self, user_id: int, device: str) -> bool:
        """Forget a session held here and leave its channels; False if it was not held."""
        held = self._held.get(user_id)
        if held is None or device not in held:
            return False
        held.discard(device)
        if device:
            self._unsubscribe_channel(device_channel(user_id, device))
        if not held:
            del self._held[user_id]
            self._unsubscribe_channel(user_channel(user_id))
        return True

    def _unsubscribe_channel(self, channel: bytes) -> None:
        if self._sub is not None:
            self._sub.send_command(b"UNSUBSCRIBE", channel)

    async def reclaim(self, held: list[tuple[int, str, int]], max_devices: int
                      ) -> list[tuple[int, str]]:
        """After a reconnect: claim the local sessions again; return the ones lost meanwhile.
        Then the liveness key names the server, for the other nodes' logins to go on."""
        lost = []
        cmd = self._command()
        for user_id, device, since in held:
            claim = await self._claim(cmd, user_id, device, since, max_devices, "reclaim")
            if claim.result != CLAIMED:
                lost.append((user_id, device))
                self._drop(user_id, device)
        run_id = await self._run_id(cmd)
        if cmd is self._cmd:  # still the connection it claimed on
            self._asserted = run_id
            self._beat()
        return lost

    def devices(self, user_id: int) -> Deferred[dict[str, int]]:
        """The user's devices that are held (node alive and subscribed), one script."""
        try:
            d = self._command().eval(DEVICES, [DEVICES_PREFIX + str(user_id)],
                                     [ALIVE_PREFIX, f"{DEVICE_PREFIX}{user_id}:"])
        except BusDown as e:
            return fail(e)
        return d.addCallbacks(_parse_devices, _down)

    def online(self, user_ids: list[int]) -> Deferred[set[int]]:
        """Users some node is subscribed for, in one PUBSUB NUMSUB round trip."""
        if not user_ids:
            return succeed(set())
        try:
            cmd = self._command()
        except BusDown as e:
            return fail(e)
        d = cmd.execute_command(b"PUBSUB", b"NUMSUB", *[user_channel(u) for u in user_ids])
        return d.addCallback(
            lambda r: {int(r[i][len(USER_PREFIX):]) for i in range(0, len(r), 2) if r[i + 1]})

    def remember(self, sender: int, cid: str, mid: int, then: Remembered) -> None:
        """SET NX GET: one round trip both records our mid and returns an earlier one. On
        the lean path: two commands of every proto-2 message in a cluster went through
        txredisapi's execute_command, a third of the node's time under cross-node chat."""
        cmd = self._lean()
        if cmd is None:
            then(None)
            return
        cmd.ask(_CidEntry(then), b"SET", _cid_key(sender, cid), b"%d" % mid, b"NX", b"PX", CID_MS,
                b"GET")

    def settle(self, sender: int, cid: str, mid: int) -> None:
        cmd = self._lean()
        if cmd is not None:
            cmd.ask(_IGNORED, b"SET", _cid_key(sender, cid), b"%d s" % mid, b"XX", b"PX", CID_MS)

    def locate(self, user_ids: list[int]) -> Deferred[dict[int, bytes]]:
        """Which node incarnation holds each user (users held by none are left out): from
        the locations heard, with one MGET for the users not heard of."""
        where, unknown = self.locations.split(user_ids)
        if not unknown:
            return succeed(where)
        try:
            d = self._command().send(b"MGET", *[b"%s%d" % (SESSION_KEY, u) for u in unknown])
        except BusDown as e:
            return fail(e)
        return d.addCallback(self._located, self.locations.epoch, unknown, where)

    def _located(self, nodes: list[bytes | None], epoch: int, user_ids: list[int],
                 where: dict[int, bytes]) -> dict[int, bytes]:
        self.locations.learned(epoch, user_ids, nodes)
        where.update((u, node) for u, node in zip(user_ids, nodes, strict=True) if node)
        return where

    def incr(self, key: str, ttl: float) -> Deferred[int]:
        """INCR, and PEXPIRE when the counter is new: one script, one round trip."""
        return self._counter(lambda cmd: cmd.eval(INCR, [COUNTER_PREFIX + key],
                                                  [int(ttl * 1000)]))

    def expire(self, key: str, ttl: float) -> Deferred[None]:
        return self._counter(lambda cmd: cmd.execute_command(
            b"PEXPIRE", COUNTER_PREFIX + key, int(ttl * 1000)))

    def remaining(self, keys: list[str]) -> Deferred[list[float]]:
        """Seconds each counter has left (0 for none), in one script."""
        def ask(cmd: _Commands) -> Deferred[list[float]]:
            return cmd.send(b"EVAL", PTTLS, b"%d" % len(keys),
                            *[(COUNTER_PREFIX + k).encode() for k in keys]).addCallback(
                lambda ms: [max(0, int(m)) / 1000 for m in ms])
        return self._counter(ask)

    def _counter(self, call: Any) -> Deferred[Any]:
        if not self._connected_before:
            return Deferred.fromCoroutine(self._first_connection()).addCallback(
                lambda _: self._count(call))
        return self._count(call)

    def _count(self, call: Any) -> Deferred[Any]:
        try:
            return call(self._command()).addErrback(_down)
        except (BusDown, txredisapi.ConnectionError) as e:
            return fail(BusDown(str(e)))

    def _release_all(self) -> None:
        for user_id, devices in list(self._held.items()):
            for device in list(devices):
                self.unsubscribe(user_id, device)

    def _beat(self) -> None:
        if self._cmd is not None:
            self._cmd.execute_command(
                b"SET", ALIVE_PREFIX.encode() + self.incarnation, self._asserted, b"PX",
                ALIVE_MS).addErrback(lambda f: None)

    def ping(self) -> Deferred[Any]:
        """One PING on the command link (the health check)."""
        try:
            return self._command().ping()
        except BusDown as e:
            return fail(e)

    def _ping(self) -> None:
        """A PING on each link; a reply timeout aborts the connection, which reconnects."""
        for conn in (self._sub, self._cmd):
            if conn is not None:
                conn.ping().addErrback(lambda f: None)


def _address(peer: Any) -> str:
    return f"{peer.host}:{peer.port}"


def _bytes(value: str | bytes | int) -> bytes:
    """An argument of a lean command (`_Commands.send`)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _lean_reply(reply: object) -> object:
    """A reply to `_Commands.send`: an error reply raised; a command lost with its
    connection is the bus being down, which callers expect."""
    if isinstance(reply, Exception):
        if isinstance(reply, txredisapi.ConnectionError):
            raise BusDown(str(reply))
        raise reply
    return reply


def _down(failure: Any) -> None:
    """A command lost with its connection is the bus being down, which callers expect."""
    failure.trap(txredisapi.ConnectionError)
    raise BusDown(str(failure.value))


def _parse_devices(reply: list[bytes]) -> dict[str, int]:
    """[device, b"<node> <since>", ...] to device -> since."""
    return {name.decode(): int(value.split(b" ")[1])
            for name, value in zip(reply[::2], reply[1::2], strict=True)}


def _request(args: tuple[bytes, ...]) -> bytes:
    """A command in RESP, as redis-server reads it."""
    request = [b"*%d\r\n" % len(args)]
    request += [b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args]
    return b"".join(request)


def _cid_key(sender: int, cid: str) -> bytes:
    """Any text a client sent as its cid makes a key (surrogatepass: a lone surrogate too)."""
    return b"%s%d:%s" % (CID_PREFIX, sender, cid.encode("utf-8", "surrogatepass"))


def _parse_cid_entry(value: bytes | None) -> tuple[int, bool] | None:
    """b"<mid>" while in flight, b"<mid> s" once safe."""
    if value is None:
        return None
    mid, _, state = value.partition(b" ")
    return int(mid), state == b"s"
