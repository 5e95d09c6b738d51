"""chatd-bench: the load generator that measures a chatd node or cluster (docs/bench.md)."""
