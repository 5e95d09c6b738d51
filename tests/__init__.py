"""chatd's trial suite: unit tests on memory transports, integration tests on real servers."""
