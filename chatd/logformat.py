"""chatd's log observers, which twistd uses in place of its own.

`--log-format text` (the default) writes the lines twistd's observer would, and `--log-format
json` one JSON object per event and line, for Loki or Elasticsearch. Both gather the lines of
one reactor turn and write and flush them together at its end: twistd's observer formats the
time afresh and flushes the file for every event, which was a fifth of a node's reactor time
in a login storm (three events per connection). A node killed outright loses the lines of its
last turn at most.

twistd builds its log observer after the plugin's options are parsed and before the service
starts; the plugin points twistd's own `--logger` option at `text_observer` or `json_observer`
(unless `--logger` or `--syslog` was given for text), which write where `--logfile` says
(standard output by default).
"""

import signal
import sys
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

import ujson
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.python.logfile import LogFile
from twisted.python.threadable import isInIOThread
from zope.interface import implementer

FORMATS = ("text", "json")

_destination: dict[str, str] = {}


def use_chatd_logs(twistd_options: Any, log_format: str) -> None:
    """Make twistd log through chatd's observer of `log_format` (called while its options
    are parsed); text logs keep an observer the command line chose itself."""
    chosen = twistd_options.get("logger") or twistd_options.get("syslog")
    if log_format == "text" and chosen:
        return
    _destination["logfile"] = twistd_options.get("logfile") or "-"
    twistd_options["logger"] = f"{__name__}.{log_format}_observer"


class TurnWriter:
    """Lines written and flushed once per reactor turn (at once while the reactor is not
    running: before it starts and after it stops)."""

    def __init__(self, out: IO[str], reactor: Any) -> None:
        self._out = out
        self._reactor = reactor
        self._lines: deque[str] = deque()
        self._pending = False
        reactor.addSystemEventTrigger("after", "shutdown", self.flush)

    def add(self, line: str) -> None:
        self._lines.append(line)
        if not self._reactor.running:
            self.flush()
        elif not self._pending:
            self._pending = True
            if isInIOThread():
                self._reactor.callLater(0, self.flush)
            else:
                self._reactor.callFromThread(self.flush)

    def flush(self) -> None:
        self._pending = False
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
        if lines:
            self._out.write("".join(lines))
            self._out.flush()


ROLLBACK_QUIET_SECONDS = 60.0


class Rollbacks:
    """adbapi logs a traceback ("Rollback failed") for every transaction that fails while the
    database is unreachable: dozens per outage, each saying the same. The first of an outage
    becomes one warning line; the rest are dropped until the database has been quiet for
    ROLLBACK_QUIET_SECONDS (the store logs each failed call, and its recovery, itself)."""

    def __init__(self) -> None:
        self._last: float | None = None

    def __call__(self, event: dict[str, Any]) -> dict[str, Any] | None:
        if event.get("why") != "Rollback failed":
            return event
        now = event.get("log_time", 0.0)
        first = self._last is None or now - self._last > ROLLBACK_QUIET_SECONDS
        self._last = now
        if not first:
            return None
        failure = event.get("log_failure") or event.get("failure")
        return {"log_time": now, "log_level": LogLevel.warn,
                "log_namespace": "chatd.store", "log_system": event.get("log_system", "-"),
                "error": str(failure.value) if failure is not None else "?",
                "log_format": "database unreachable: a transaction could not be rolled back "
                              "({error}); further ones are not logged until it has been "
                              "quiet for a minute"}


@implementer(ILogObserver)
class LineObserver:
    """Formats each event into a line for a TurnWriter."""

    def __init__(self, line: Callable[[dict[str, Any]], str | None], writer: TurnWriter) -> None:
        self._line = line
        self._writer = writer
        self._rollbacks = Rollbacks()

    def __call__(self, event: dict[str, Any]) -> None:
        kept = self._rollbacks(event)
        text = self._line(kept) if kept is not None else None
        if text:
            self._writer.add(text)


class SecondClock:
    """twistd's timestamps, formatted once per second instead of once per event."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._text = "-"

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(None)
        second = int(when)
        if second != self._second:
            self._second, self._text = second, formatTime(second)
        return self._text


def event_record(event: dict[str, Any]) -> dict[str, Any]:
    """The event's own fields plus time, level, namespace and the formatted text; values
    JSON cannot hold become their repr, a failure its traceback."""
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), UTC).isoformat(
            timespec="milliseconds"),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "text": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in record or key in ("format", "message", "isError",
                                                                "system", "time"):
            continue
        record[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["failure"] = failure.getTraceback()
    return record


def _line(event: dict[str, Any]) -> str:
    return ujson.dumps(event_record(event), ensure_ascii=False, escape_forward_slashes=False
                       ) + "\n"


def json_file_observer(out: IO[str]) -> FileLogObserver:
    return FileLogObserver(out, _line)


def classic_line(clock: SecondClock) -> Callable[[dict[str, Any]], str | None]:
    """twistd's own text lines (`TIME [namespace#level] text`), with `clock`'s timestamps."""
    return lambda event: formatEventAsClassicLogText(event, formatTime=clock)


def text_observer() -> LineObserver:
    """twistd's `--logger` factory for text lines to the --logfile of the command line."""
    return LineObserver(classic_line(SecondClock()), _writer())


def json_observer() -> LineObserver:
    """twistd's `--logger` factory: JSON lines to the --logfile of the command line."""
    return LineObserver(_line, _writer())


def _writer() -> TurnWriter:
    """To standard output, or to the log file (rotated by size, and on SIGUSR1 as twistd
    does for its own)."""
    from twisted.internet import reactor
    path = _destination.get("logfile", "-")
    if path == "-":
        return TurnWriter(sys.stdout, reactor)
    logfile = LogFile.fromFullPath(path)
    if not signal.getsignal(signal.SIGUSR1):
        signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(logfile.rotate))
    return TurnWriter(logfile, reactor)
