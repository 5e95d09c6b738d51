"""`--log-format json`: one JSON object per log event and line, for Loki or Elasticsearch.

twistd builds its log observer after the plugin's options are parsed and before the service
starts; the plugin points twistd's own `--logger` option at `json_observer`, which writes where
`--logfile` says (standard output by default).
"""

import sys
from datetime import UTC, datetime
from typing import IO, Any

import ujson
from twisted.logger import FileLogObserver, formatEvent
from twisted.python.logfile import LogFile

FORMATS = ("text", "json")

_destination: dict[str, str] = {}


def use_json_logs(twistd_options: Any) -> None:
    """Make twistd log through `json_observer` (called while its options are parsed)."""
    _destination["logfile"] = twistd_options.get("logfile") or "-"
    twistd_options["logger"] = f"{__name__}.json_observer"


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


def json_observer() -> FileLogObserver:
    """twistd's `--logger` factory: JSON lines to the --logfile of the command line."""
    path = _destination.get("logfile", "-")
    out: IO[str] = sys.stdout if path == "-" else LogFile.fromFullPath(path)
    return json_file_observer(out)
