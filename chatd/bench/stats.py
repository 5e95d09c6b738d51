"""Latency histograms, per-phase results, and the table and JSON the run ends with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXACT = 256
"""Latencies below this many microseconds get a bucket each."""
SUB_BITS = 7
"""Above EXACT, each power of two is cut into 2**SUB_BITS buckets: under 0.8 % error."""
BUCKETS = (64 - SUB_BITS) << SUB_BITS


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest latency (µs) that fall into bucket `index`."""
    if index < EXACT:
        return index, index
    shift = (index >> SUB_BITS) - 1
    mantissa = index - (shift << SUB_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class Histogram:
    """Log-linear latency histogram in microseconds.

    Workers record hundreds of thousands of samples each; a fixed bucket list keeps `add`
    cheap and lets them ship a small sparse dict that the parent merges exactly, where sorted
    sample lists (chatload's way) would be megabytes of JSON per worker.
    """

    __slots__ = ("counts", "count", "max_us")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.count = 0
        self.max_us = 0

    def add(self, us: int) -> None:
        """Count one latency in microseconds (a negative one, from clock skew, as 0)."""
        self.add_many([us])

    def add_many(self, latencies: list[int]) -> None:
        """Count latencies in microseconds: one call for all the deliveries of a read."""
        if not latencies:
            return
        counts = self.counts
        for us in latencies:
            if us < EXACT:
                counts[us if us > 0 else 0] += 1
            else:
                shift = us.bit_length() - SUB_BITS - 1
                counts[(shift << SUB_BITS) + (us >> shift)] += 1
        self.count += len(latencies)
        self.max_us = max(self.max_us, max(latencies))

    def merge(self, other: Histogram) -> None:
        for index, n in enumerate(other.counts):
            if n:
                self.counts[index] += n
        self.count += other.count
        self.max_us = max(self.max_us, other.max_us)

    def percentile(self, p: float) -> float:
        """The latency (µs) at rank floor((count-1)*p), chatload's definition, as the middle
        of its bucket (never above the largest sample); 0 when empty."""
        if not self.count:
            return 0.0
        rank = int((self.count - 1) * p)
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen > rank:
                low, high = bucket_bounds(index)
                return min((low + high) / 2, float(self.max_us))
        return float(self.max_us)

    def to_json(self) -> dict[str, Any]:
        return {"buckets": {str(i): n for i, n in enumerate(self.counts) if n},
                "max_us": self.max_us}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        hist = cls()
        for index, n in data["buckets"].items():
            hist.counts[int(index)] += n
            hist.count += n
        hist.max_us = data["max_us"]
        return hist


@dataclass
class PhaseResult:
    """One phase's outcome, as a worker reports it and as the parent merges them.

    `ok` counts what succeeded: requests answered without error, connections made, messages
    or group deliveries received, connections still held. `t0`/`t1` are time.monotonic_ns
    values, one clock for every process on the machine, so the parent can take the earliest
    start and the latest end across workers.
    """

    name: str
    unit: str
    ok: int = 0
    fail: int = 0
    lost: int = 0
    dup: int = 0
    sent: int = 0
    t0: int = 0
    t1: int = 0
    hist: Histogram = field(default_factory=Histogram)
    first_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def error(self, text: str, count: int = 1) -> None:
        """Count failures, keeping the first one's text for the report."""
        self.fail += count
        if not self.first_error:
            self.first_error = text[:200]

    @property
    def secs(self) -> float:
        return max(self.t1 - self.t0, 0) / 1e9

    @property
    def rate(self) -> float:
        """Successes per second; none for a phase that is not about a rate (idle)."""
        if not self.unit.endswith("/s") or self.secs <= 0:
            return 0.0
        return self.ok / self.secs

    def to_wire(self) -> dict[str, Any]:
        """What a worker sends to the parent: raw counters and the histogram."""
        return {"name": self.name, "unit": self.unit, "ok": self.ok, "fail": self.fail,
                "lost": self.lost, "dup": self.dup, "sent": self.sent, "t0": self.t0,
                "t1": self.t1, "hist": self.hist.to_json(), "first_error": self.first_error,
                "extra": self.extra}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PhaseResult:
        fields = dict(data, hist=Histogram.from_json(data["hist"]))
        return cls(**fields)

    def merge(self, other: PhaseResult) -> None:
        """Add another worker's share of the same phase."""
        for name in ("ok", "fail", "lost", "dup", "sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        starts = [t for t in (self.t0, other.t0) if t]
        self.t0 = min(starts, default=0)
        self.t1 = max(self.t1, other.t1)
        self.hist.merge(other.hist)
        self.first_error = self.first_error or other.first_error
        for key, value in other.extra.items():
            self.extra[key] = self.extra.get(key, 0) + value

    def summary(self) -> dict[str, Any]:
        """The published figures: counters, seconds, rate and latencies in milliseconds."""
        out: dict[str, Any] = {
            "ok": self.ok, "fail": self.fail, "lost": self.lost, "dup": self.dup,
            "sent": self.sent, "secs": round(self.secs, 3), "rate": round(self.rate, 1),
            "unit": self.unit, "samples": self.hist.count}
        for key, p in (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999)):
            out[key] = round(self.hist.percentile(p) / 1000, 3)
        out["max_ms"] = round(self.hist.max_us / 1000, 3)
        if self.first_error:
            out["first_error"] = self.first_error
        out.update(self.extra)
        return out


def merge_results(name: str, unit: str, parts: list[dict[str, Any]]) -> PhaseResult:
    """One PhaseResult from the workers' wire dicts."""
    total = PhaseResult(name, unit)
    for part in parts:
        total.merge(PhaseResult.from_wire(part))
    return total


HEADER = (f"{'phase':<10}{'ok':>9}{'fail':>7}{'lost':>7}{'dup':>6}{'secs':>8}{'rate':>10}"
          f"  {'unit':<13}{'p50ms':>8}{'p99ms':>8}{'p99.9ms':>9}{'maxms':>9}")


def table_row(name: str, s: dict[str, Any]) -> str:
    if not s["samples"]:
        latencies = f"{'-':>8}{'-':>8}{'-':>9}{'-':>9}"
    else:
        latencies = (f"{s['p50_ms']:>8.2f}{s['p99_ms']:>8.2f}{s['p999_ms']:>9.2f}"
                     f"{s['max_ms']:>9.2f}")
    rate = f"{s['rate']:>10.0f}" if s["rate"] else f"{'-':>10}"
    return (f"{name:<10}{s['ok']:>9}{s['fail']:>7}{s['lost']:>7}{s['dup']:>6}{s['secs']:>8.2f}"
            f"{rate}  {s['unit']:<13}{latencies}")


def render_table(report: dict[str, Any]) -> str:
    """The human-readable form of the JSON report: parameters, one row per phase, RSS."""
    p = report["params"]
    lines = [f"chatd-bench: targets={','.join(p['targets'])} users={p['users']} "
             f"processes={p['processes']} proto={p['proto']} run={p['run_id'] or '-'}",
             HEADER]
    lines += [table_row(name, s) for name, s in report["phases"].items()]
    for name, s in report["phases"].items():
        if s.get("first_error"):
            lines.append(f"{name}: first error: {s['first_error']}")
    rss = report.get("rss")
    if rss:
        samples = " ".join(f"{key[:-4]}={rss[key]} KiB" for key in
                           ("before_kib", "after_login_kib", "after_idle_kib") if key in rss)
        per = rss.get("kib_per_idle_conn")
        lines.append(f"server rss: {samples}"
                     + (f" -> {per:.2f} KiB per idle connection" if per is not None else ""))
    if report.get("max_time_reached"):
        lines.append("!! --max-time reached: later phases were cut short or skipped")
    return "\n".join(lines)
