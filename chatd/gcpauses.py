"""The cyclic garbage collector's pauses: kept short, and timed for /metrics.

A full collection walks every object the collector tracks and stops every session meanwhile.
About 65,000 of them are the node's code and set-up (functions, classes, modules, the parts
build_node made), which no collection ever frees: walking them cost 35 ms of CPU per full
collection, and a loaded node runs one every few seconds (six in a chatload run of 2,000
users: 30-59 ms each, on the 1:1 p99). `freeze()`, once the node runs, moves them out of the
collector's reach (gc.freeze); a full collection then walks only what was made since, mostly
sessions and messages in flight (about 4 ms for 60,000 objects). Memory is not held longer:
what is frozen lives as long as the process.

`Pauses` times each collection by generation (gc.callbacks), for chatd_gc_pause_seconds.
"""

import gc
import time
from typing import Any

from chatd.metrics import Histogram

# Seconds: from a young collection (tens of microseconds) to a full one on a big heap.
PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


def freeze() -> int:
    """Collect once, then move every object that survives out of later collections' walk;
    the number of objects frozen. Call it once the node is built and running."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


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
