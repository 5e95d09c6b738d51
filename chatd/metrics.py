"""What a node counts: plain numbers bumped on the message path, turned into Prometheus metric
families only when /metrics is scraped.

A `Counter.labels(...).inc()` per message costs a dictionary lookup, a lock and a method call;
the hot path here is a list index and an integer add. The collector reads these numbers (and
the node's live sizes: sessions, pools, queues) on the reactor thread at scrape time.
"""

import gc
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# Seconds; from a loopback round trip to a database having a bad day.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
MAX_MSGID = 128  # above every msgid of messages.py (reserved up to 89); counters by msgid
ROUTES = ("local", "remote", "offline")
LOCAL, REMOTE, OFFLINE = range(3)

# The LOGIN reply's errno to the outcome label; an errno not listed counts as "error".
LOGIN_OUTCOMES: dict[int, str] = {
    0: "ok",
    1: "bad_password",
    2: "already_online",
    130: "unavailable",
    141: "busy",
    142: "throttled",
    150: "banned",
}


class Histogram:
    """Observations counted into fixed buckets: one bisect and two adds per value."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count of observations <= le) as Prometheus wants them, +Inf last."""
        out, running = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class Stats:
    """The counters of one node, shared by protocol, handlers, delivery, store and hasher."""

    def __init__(self) -> None:
        self.frames_in = [0] * MAX_MSGID
        self.errors: dict[int, int] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.logins: dict[int, int] = {}
        self.registrations = 0
        self.routes = [0, 0, 0]
        self.send_ack = Histogram()
        self.store_calls: dict[str, Histogram] = {}
        self.store_failures: dict[str, int] = {}
        self.hash_time = Histogram()

    def error(self, errno: int) -> None:
        self.errors[errno] = self.errors.get(errno, 0) + 1

    def login(self, errno: int) -> None:
        self.logins[errno] = self.logins.get(errno, 0) + 1

    def store_call(self, kind: str, seconds: float, failed: bool) -> None:
        histogram = self.store_calls.get(kind)
        if histogram is None:
            histogram = self.store_calls[kind] = Histogram()
        histogram.observe(seconds)
        if failed:
            self.store_failures[kind] = self.store_failures.get(kind, 0) + 1


def _counter(name: str, doc: str, label: str, values: dict[Any, float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([str(key)], value)
    return family


def _histogram(name: str, doc: str, label: str | None,
               histograms: dict[str, Histogram]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else None)
    for key, histogram in sorted(histograms.items()):
        family.add_metric([key] if label else [], histogram.cumulative(), histogram.total)
    return family


class NodeCollector(Collector):
    """Evaluated at each scrape: the node's Stats plus its live sizes. `node` is a ChatNode
    (store, hasher, router, factory)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        stats: Stats = node.stats
        yield from self._traffic(stats)
        yield from self._accounts(stats)
        yield from self._parts(node, stats)

    def _traffic(self, stats: Stats) -> Iterator[Metric]:
        sessions = self.node.router.sessions_by_proto()
        gauge = GaugeMetricFamily("chatd_sessions", "Logged-in sessions on this node, by "
                                  "dialect (proto 1: original, 2: chatd)", labels=["proto"])
        for proto in (1, 2):
            gauge.add_metric([str(proto)], sessions.get(proto, 0))
        yield gauge
        yield GaugeMetricFamily("chatd_connections", "Open client connections on this node, "
                                "logged in or not", value=len(self.node.factory.sessions))
        yield from self._listeners(self.node.factory.connections)
        yield _counter("chatd_frames_received", "Valid request frames received, by msgid",
                       "msgid", {m: n for m, n in enumerate(stats.frames_in) if n})
        yield _counter("chatd_errors_sent", "Errors sent to clients (ERROR_MSG or a reply "
                       "with a non-zero errno), by errno", "errno", stats.errors)
        yield _counter("chatd_chat_copies", "Copies of chat messages delivered, by route: "
                       "local session, other node through the bus, offline store", "route",
                       dict(zip(ROUTES, stats.routes, strict=True)))
        yield _histogram("chatd_send_ack_seconds", "From a chat message's arrival to its "
                         "SEND_ACK (proto 2 senders)", None, {"": stats.send_ack})
        yield CounterMetricFamily("chatd_received_bytes", "Bytes received from clients",
                                  value=stats.bytes_in)
        yield CounterMetricFamily("chatd_sent_bytes", "Bytes sent to clients (a chat frame "
                                  "counts when it is handed to the session)",
                                  value=stats.bytes_out)

    def _listeners(self, connections: Any) -> Iterator[Metric]:
        """`connections` is the node's chatd.connections.Connections."""
        gauge = GaugeMetricFamily("chatd_listener_connections", "Open connections by "
                                  "listener (chat port, web listener, admin listener), "
                                  "WebSocket sessions under web", labels=["listener"])
        for listener, count in sorted(connections.open.items()):
            gauge.add_metric([listener], count)
        yield gauge
        yield GaugeMetricFamily("chatd_max_connections", "--max-connections: the ceiling of "
                                "the chat and web listeners' connections together",
                                value=connections.max_connections)
        refused = CounterMetricFamily("chatd_connections_refused", "Connections refused or "
                                      "closed by a defence, by listener and reason",
                                      labels=["listener", "reason"])
        for (listener, reason), count in sorted(connections.refused.items()):
            refused.add_metric([listener, reason], count)
        yield refused

    def _accounts(self, stats: Stats) -> Iterator[Metric]:
        outcomes: dict[str, int] = dict.fromkeys([*LOGIN_OUTCOMES.values(), "error"], 0)
        for errno, n in stats.logins.items():
            outcome = LOGIN_OUTCOMES.get(errno, "error")
            outcomes[outcome] += n
        yield _counter("chatd_logins", "LOGIN requests answered, by outcome", "outcome",
                       outcomes)
        yield CounterMetricFamily("chatd_registrations", "Accounts registered",
                                  value=stats.registrations)

    def _parts(self, node: Any, stats: Stats) -> Iterator[Metric]:
        yield _histogram("chatd_store_seconds", "Store interactions by kind and their "
                         "latency", "kind", stats.store_calls)
        yield _counter("chatd_store_failures", "Store interactions that failed (database "
                       "unreachable)", "kind", stats.store_failures)
        yield GaugeMetricFamily("chatd_store_connections_in_use", "Database pool "
                                "connections running an interaction",
                                value=node.store.connections_in_use())
        yield GaugeMetricFamily("chatd_password_hash_queue", "Password hashes waiting for "
                                "a hashing thread", value=node.hasher.queued())
        yield _histogram("chatd_password_hash_seconds", "Time to hash or check a password "
                         "on a hashing thread", None, {"": stats.hash_time})
        yield GaugeMetricFamily("chatd_bus_up", "1 when the bus (Redis, or the single "
                                "node's local bus) is connected, else 0",
                                value=1 if node.router.bus.up else 0)
        yield CounterMetricFamily("chatd_bus_publishes", "Messages published on the bus",
                                  value=node.router.bus.publishes)
        yield CounterMetricFamily("chatd_bus_reconnects", "Times the bus came back after "
                                  "losing Redis (a failover, a restart, the network)",
                                  value=node.router.bus.reconnects)
        yield from self._collector(node)
        agreement = node.router.bus.agreement
        yield GaugeMetricFamily("chatd_cluster_conflicts", "Differences between this node's "
                                "settings and those of other nodes of the cluster (each should "
                                "be 0)", value=len(agreement.conflicts()) if agreement else 0)
        yield GaugeMetricFamily("chatd_bus_reports_pending", "Copies handed to other nodes "
                                "whose delivery report has not come yet",
                                value=node.router.relay.pending())
        yield GaugeMetricFamily("chatd_offline_pending", "Frames waiting to be stored "
                                "offline (written now, or retried while the database is away)",
                                value=node.context.offline.pending())
        yield GaugeMetricFamily("chatd_group_cache_groups", "Groups whose members this "
                                "node holds in its cache",
                                value=node.context.members.cached())


    def _collector(self, node: Any) -> Iterator[Metric]:
        """The garbage collector's pauses (node.pauses, a chatd.gcpauses.Pauses)."""
        yield _histogram("chatd_gc_pause_seconds", "Garbage collections, which stop every "
                         "session, by generation (2: full) and their duration", "generation",
                         {str(g): h for g, h in enumerate(node.pauses.by_generation)})
        yield GaugeMetricFamily("chatd_gc_frozen_objects", "Objects of the node's set-up "
                                "that collections no longer walk (gc.freeze at start)",
                                value=gc.get_freeze_count())


def node_registry(node: Any) -> CollectorRegistry:
    """A registry of this node alone (not the process-global one): its metrics and the
    process's CPU, memory and file descriptors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    ProcessCollector(registry=registry)
    return registry
