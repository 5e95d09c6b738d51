"""What the handlers and delivery need from a connection, whatever carries it (TCP, WebSocket)."""

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chatd.delivery.inbox import Inbox


class Session(Protocol):
    """One client connection. `user_id` is None until a login succeeds; `address` is the
    client's address (the real one behind nginx's proxy protocol), for per-address limits."""

    user_id: int | None
    address: str
    name: str
    proto: int
    device: str
    since: int  # when the login succeeded, ms since the epoch
    connected: bool
    paused: bool  # the client is not reading: its transport's buffer is over its mark
    inbox: "Inbox | None"

    def login(self, user_id: int, name: str, proto: int) -> None:
        """The connection now speaks for this user, in this dialect."""

    def logout(self) -> None:
        """The connection speaks for nobody again (it stays open)."""

    def write(self, data: bytes) -> None:
        """Write one already-encoded frame, terminator included."""

    def send(self, frame: dict[str, Any]) -> None:
        """Encode and write one frame, counted in the bytes sent to clients."""

    def send_data(self, data: bytes) -> None:
        """`send` for a frame already encoded (a template filled in): written and counted
        only while the connection is open."""

    def hold(self, size: int) -> None:
        """Count `size` bytes held back for this client while paused; past the session's
        send-buffer limit the connection is closed."""

    def close(self) -> None:
        """End the connection (what it had in flight is handled by connection loss)."""

    def end(self) -> None:
        """Stop being its user's at once, then close the connection once its device's claim
        is released: a client that saw the close never finds the session still listed."""
