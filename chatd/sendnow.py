"""Send a frame in the reactor turn that made it, when the socket can take it.

Twisted's `transport.write` only queues: it registers the socket for writing (an epoll_ctl),
sends in the next reactor turn and unregisters it again (another epoll_ctl), some twenty
Python calls for every frame. Profiles of the message path (docs/performance.md, round
three) put that at a quarter of the node's CPU per message. A chat frame is small and the
socket of a reading client is almost always writable, so when nothing is queued ahead of
it the frame goes to the kernel at once; what the kernel does not take, and every frame
behind a queue, takes Twisted's path, so order and back-pressure stay Twisted's.
"""

from typing import Any

from twisted.internet.tcp import Server


def write_now(transport: Any, data: bytes) -> None:
    """Write `data` to a TCP transport, sending directly when its queue is empty.

    Anything other than a plain (not TLS) connected `tcp.Server` with an empty queue, and
    any error from the socket, is left to `transport.write`, which reports a lost
    connection the usual way."""
    if (type(transport) is not Server or transport.TLS or transport.disconnecting
            or transport._tempDataLen or transport.dataBuffer or not transport.connected):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:
        sent = 0
    if sent < len(data):
        transport.write(data[sent:])
