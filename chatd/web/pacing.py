"""How many media bytes (upload bodies read, download bodies sent) the node moves per reactor
turn and, while the chat path is busy, per short window: one core carries both, and the chat
frames must not queue behind files (docs/performance.md, *Attachments*)."""

from typing import Any, Protocol

from chatd.metrics import Stats

# Media bytes, over all uploads and downloads, in one reactor turn: past it, uploads stop
# being read and downloads stop being sent until the next turn, so a turn busy with chat
# frames carries at most this much of the files, and an idle node still moves them as fast
# as turns go by.
TURN_BYTES = 256 * 1024

# While the chat path is busy, media bytes per second at most, counted per WINDOW seconds:
# what one core moves of files beside a full chat load and still gives the chat 0.8 of its
# rate alone (measured on loopback, docs/performance.md).
BUSY_RATE = 40_000_000
WINDOW = 0.05

# The chat path counts as busy when the chat connections brought more than this many bytes
# a second over the last window: above the heartbeats of idle sessions and the few frames
# that come with the uploads themselves, below any real conversation load.
CHAT_BUSY_RATE = 20_000

# The largest piece one download sends at a time: downloads take turns within the budget.
SEND_CHUNK = 128 * 1024


class Sender(Protocol):
    """A download body that sends when the pacer lets it."""

    def send(self, allowance: int) -> int:
        """Send at most `allowance` bytes now; the number sent. A sender that has more to
        send asks again (`MediaPacer.want`)."""


class MediaPacer:
    """The media bytes of one web listener, paced by reactor turn and, while chat frames
    arrive (the node's `Stats.bytes_in` grows), by window."""

    def __init__(self, reactor: Any, stats: Stats, per_turn: int = TURN_BYTES,
                 busy_rate: int = BUSY_RATE, window: float = WINDOW) -> None:
        self.reactor = reactor
        self.stats = stats
        self.per_turn = per_turn
        self.per_busy_window = int(busy_rate * window)
        self.window = window
        self.spent = 0  # this turn
        self.allowed = per_turn  # this turn
        self.busy = False
        self.window_start = reactor.seconds()
        self.window_spent = 0
        self.chat_bytes = stats.bytes_in
        self.paused: list[Any] = []  # upload transports, read again next turn
        self.senders: list[Sender] = []  # downloads waiting for their next piece
        self._next_turn: Any = None

    def spend(self, count: int, transport: Any) -> None:
        """An upload read `count` bytes: past this turn's allowance its transport stops
        being read until a turn has some to spare."""
        self._count(count)
        if self.spent >= self.allowed:
            transport.pauseProducing()
            self.paused.append(transport)
        self._schedule()

    def want(self, sender: Sender) -> None:
        """`sender` has bytes to send: it gets its turn (`Sender.send`) after those
        waiting before it."""
        self.senders.append(sender)
        self._schedule()

    def drop(self, sender: Sender) -> None:
        """`sender` has gone (its connection lost): it waits no more."""
        if sender in self.senders:
            self.senders.remove(sender)

    def _count(self, count: int) -> None:
        self.spent += count
        self.window_spent += count

    def _schedule(self) -> None:
        if self._next_turn is None:
            self._next_turn = self.reactor.callLater(self._wait(), self._turn)

    def _wait(self) -> float:
        """0 for the next turn; while the chat is busy and the window is spent, the time
        to its end."""
        if self.busy and self.window_spent >= self.per_busy_window:
            return max(0.0, self.window_start + self.window - self.reactor.seconds())
        return 0.0

    def _turn(self) -> None:
        self._next_turn = None
        self._roll_window()
        self.spent = 0
        self.allowed = self.per_turn
        if self.busy:
            self.allowed = min(self.allowed, self.per_busy_window - self.window_spent)
        if self.allowed <= 0:
            self._schedule()
            return
        self._send()
        self._resume_uploads()
        if self.senders:
            self._schedule()

    def _roll_window(self) -> None:
        """A new window once the last one has passed: busy if the chat brought more than
        CHAT_BUSY_RATE over it."""
        now = self.reactor.seconds()
        elapsed = now - self.window_start
        if elapsed < self.window:
            return
        chat_bytes = self.stats.bytes_in
        self.busy = chat_bytes - self.chat_bytes > CHAT_BUSY_RATE * elapsed
        self.chat_bytes = chat_bytes
        self.window_start = now
        self.window_spent = 0

    def _send(self) -> None:
        """The waiting downloads in turn, a piece each, until the allowance is spent; the
        ones left over go first next turn."""
        waiting, self.senders = self.senders, []
        for i, sender in enumerate(waiting):
            left = self.allowed - self.spent
            if left <= 0:
                self.senders[:0] = waiting[i:]
                return
            self._count(sender.send(min(left, SEND_CHUNK)))

    def _resume_uploads(self) -> None:
        paused, self.paused = self.paused, []
        for transport in paused:
            if transport.connected:
                transport.resumeProducing()
