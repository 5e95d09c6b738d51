"""The cyclic garbage collector's pauses: kept short, and timed for /metrics.

A full collection walks every object the collector tracks and stops every session meanwhile.
About 65,000 of them are the node's code and set-up (functions, classes, modules, the parts
build_node made), which no collection ever frees: walking them cost 35 ms of CPU per full
collection, and a loaded node runs one every few seconds (six in a chatload run of 2,000
users: 30-59 ms each, on the 1:1 p99). `freeze()`, once the node runs, moves them out of the
collector's reach (gc.freeze); a full collection then walks only what was made since, mostly
sessions and messages in flight (about 4 ms for 60,000 objects). Memory is not held longer:
what is frozen lives as long as the process.

Young collections wait for YOUNG_THRESHOLD new objects instead of Python's 700: at 700, what a
burst has in flight (logins waiting for the database and Redis, messages waiting for their
acks) is still alive at each young collection, is promoted, and brings the next full
collection closer. In the reconnect storm (10,000 users of a killed node back through two
others) each surviving node ran 7-8 full collections of 150-190 ms, 1.2-1.4 s of a 5-7 s storm;
at 5,000 it runs one, and a young collection takes about 1 ms. docs/performance.md has the
runs, the chat path's figures beside them, and why not higher (20,000 made the middle
generation's collections 100 ms long).

`Pauses` times each collection by generation (gc.callbacks), for chatd_gc_pause_seconds.
"""

import gc
import time
from typing import Any

from chatd.metrics import Histogram

YOUNG_THRESHOLD = 5000  # new container objects between two young collections

# Seconds: from a young collection (tens of microseconds) to a full one on a big heap.
PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


def freeze() -> int:
    """Collect once, then move every object that survives out of later collections' walk;
    the number of objects frozen. Call it once the node is built and running."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def widen_young_generation() -> int:
    """Let young collections wait for YOUNG_THRESHOLD new objects (the older generations keep
    Python's thresholds); the new threshold."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return YOUNG_THRESHOLD


class Pauses:
    """Each collection's duration by generation (0 young ... 2 full), in `by_generation`."""

    def __init__(self) -> None:
        self.by_generation = [Histogram(PAUSE_BUCKETS) for _ in range(3)]
        self._started = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._heard)

    def stop(self) -> None:
        if self._heard in gc.callbacks:
            gc.callbacks.remove(self._heard)

    def _heard(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.by_generation[info["generation"]].observe(time.perf_counter() - self._started)
