"""Makes `twistd chatd` available once the chatd package is installed."""

from twisted.application.service import ServiceMaker

chatd = ServiceMaker(
    "chatd", "chatd.tap", "A cluster chat server: JSON frames over TCP (docs/protocol.md).",
    "chatd")
