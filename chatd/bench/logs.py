"""Twisted's warnings and errors on stderr, in the parent and in every worker."""

import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)


def log_problems_to_stderr() -> None:
    """An exception in a protocol callback is only a log event to Twisted (and the connection
    is dropped); with no observer it would vanish and pass for a lost connection."""
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr),
                                    [LogLevelFilterPredicate(LogLevel.warn)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
